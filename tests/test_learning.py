"""Learning a hint-less origin's idle timeout from the server's closes,
and not learning a reload's or a shutdown's (``OriginState.learn_idle_close``).

Pure logic: ages and times are given, no clock runs.
"""

from __future__ import annotations

from hintpool._origin import RELEARN_AFTER
from hintpool._state import OriginState, PooledConnection

from .test_state import A, Pool

MARGIN = 1.0


def _origin(opened: int = 0) -> OriginState:
    origin = OriginState(A)
    origin.connections_opened = opened
    return origin


def test_the_first_real_idle_close_teaches() -> None:
    origin = _origin(opened=1)
    origin.learn_idle_close(3.0, now=10.0, floor=MARGIN, serial=1)
    assert origin.learned_timeout == 3.0
    assert not origin.learned_hinted


def test_a_young_close_alone_teaches_nothing() -> None:
    """Hypercorn closes its idle connections 0.1 s after use when told to
    shut down; learned, that would stop reuse for ten minutes."""
    origin = _origin(opened=1)
    origin.learn_idle_close(0.097, now=10.0, floor=MARGIN, serial=1)
    assert origin.learned_timeout is None


def test_a_young_close_does_not_lower_a_learned_timeout() -> None:
    origin = _origin(opened=2)
    origin.learn_idle_close(5.0, now=10.0, floor=MARGIN, serial=1)
    origin.learn_idle_close(0.0002, now=20.0, floor=MARGIN, serial=2)  # reload
    assert origin.learned_timeout == 5.0


def test_a_reload_closing_every_idle_connection_teaches_nothing() -> None:
    origin = _origin(opened=8)
    for serial in range(1, 9):
        origin.learn_idle_close(0.01 * serial, now=30.0, floor=MARGIN, serial=serial)
    assert origin.learned_timeout is None


def test_a_young_close_of_a_later_connection_confirms() -> None:
    """A server whose idle timeout is below the margin closes the new
    connections young too: the second such close teaches."""
    origin = _origin(opened=3)
    origin.learn_idle_close(0.3, now=10.0, floor=MARGIN, serial=3)
    origin.connections_opened = 4
    origin.learn_idle_close(0.5, now=12.0, floor=MARGIN, serial=4)
    assert origin.learned_timeout == 0.5
    # Confirmed, younger closes lower it as any estimate, unconfirmed.
    origin.connections_opened = 5
    origin.learn_idle_close(0.4, now=14.0, floor=MARGIN, serial=5)
    assert origin.learned_timeout == 0.4


def test_a_stale_young_estimate_needs_confirming_again() -> None:
    origin = _origin(opened=1)
    origin.learn_idle_close(0.3, now=10.0, floor=MARGIN, serial=1)
    origin.connections_opened = 2
    origin.learn_idle_close(0.3, now=11.0, floor=MARGIN, serial=2)
    assert origin.learned_timeout == 0.3
    origin.connections_opened = 3
    later = 11.0 + RELEARN_AFTER + 1.0
    origin.learn_idle_close(0.05, now=later, floor=MARGIN, serial=3)  # a reload
    assert origin.learned_timeout == 0.3  # noted, not learned


def test_a_young_close_is_forgotten_after_the_relearn_period() -> None:
    origin = _origin(opened=1)
    origin.learn_idle_close(0.05, now=10.0, floor=MARGIN, serial=1)
    origin.connections_opened = 2
    later = 10.0 + RELEARN_AFTER + 1.0
    origin.learn_idle_close(0.05, now=later, floor=MARGIN, serial=2)  # noted
    assert origin.learned_timeout is None
    origin.connections_opened = 3
    origin.learn_idle_close(0.05, now=later + 1.0, floor=MARGIN, serial=3)
    assert origin.learned_timeout == 0.05


def test_without_a_margin_every_close_teaches() -> None:
    origin = _origin(opened=1)
    origin.learn_idle_close(0.05, now=10.0, floor=0.0, serial=1)
    assert origin.learned_timeout == 0.05


def test_connections_are_numbered_as_they_open() -> None:
    pool = Pool()
    first, second = pool.open(A), pool.open(A)
    assert (first.serial, second.serial) == (1, 2)


def test_a_reload_found_at_checkout_keeps_reuse() -> None:
    """Every idle connection closed at once, seen at the next checkout a
    moment after: no timeout is learned, and the next connection is kept
    idle for ``keepalive_expiry`` as before."""
    pool = Pool()
    conns = [pool.open(A) for _ in range(3)]
    for conn in conns:
        pool.release(conn, now=1.0)
    pool.hung_up.update(conn.connection for conn in conns)
    _, to_close = pool.checkout(A, now=1.1)
    assert len(to_close) == 3
    assert pool.state.origin(A).learned_timeout is None
    fresh = PooledConnection(pool.state.origin(A), object())
    pool.state.connection_opened(fresh)
    pool.release(fresh, now=2.0)
    assert fresh.lifetime.idle_deadline == 7.0
