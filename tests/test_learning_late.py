"""A server close noticed late teaches a timeout no longer than the real one.

The server closed an idle connection after it was last seen open and
before the pool noticed: the age when last seen open is learned, never the
age at notice (``PooledConnection.learn_close``). After a long gap with
nothing looking, the age at notice is only an upper bound: it may shorten
``keepalive_expiry``, never lengthen it, and the watching goes on.

Pure bookkeeping: times are plain floats given as ``now``; "the server
hung up" is the ``hung_up`` set of ``test_state.Pool``.
"""

from __future__ import annotations

from typing import Any

import pytest

from hintpool._hints import KeepAlive
from hintpool._multiplex import first_stream, stream_done, stream_lost
from hintpool._origin import RELEARN_AFTER, SEEN_OPEN_SLACK
from hintpool._policy import WATCH_INTERVAL, LifetimePolicy, State
from hintpool._state import OriginState, PooledConnection
from hintpool._stats import origin_statistics

from .test_state import A, Pool

#: The server's idle timeout in these tests.
SERVER_IDLE = 5.0


def _watch(pool: Pool, start: float, end: float) -> None:
    """Reaper passes every WATCH_INTERVAL from ``start`` up to ``end``."""
    now = start
    while now <= end + 1e-9:
        pool.state.watch_idle(now, [])
        now += WATCH_INTERVAL


def _idle(pool: Pool, now: float = 0.0) -> PooledConnection:
    conn = pool.open(A, now)
    pool.release(conn, now)
    return conn


def _origin(pool: Pool) -> OriginState:
    return pool.state.origin(A)


def test_a_late_reaper_pass_learns_the_age_last_seen_open() -> None:
    pool = Pool()
    conn = _idle(pool)
    assert conn in pool.state.watched
    _watch(pool, WATCH_INTERVAL, SERVER_IDLE - WATCH_INTERVAL)
    pool.hung_up.add(conn.connection)  # the server closes at 5.0 s
    to_close: list[PooledConnection] = []
    pool.state.watch_idle(SERVER_IDLE + 0.6, to_close)  # a pass 0.6 s late
    assert to_close == [conn]
    origin = _origin(pool)
    assert origin.learned_timeout == pytest.approx(SERVER_IDLE - WATCH_INTERVAL)
    assert not origin_statistics(origin).learned_provisional
    # Expires the margin before the real close, not 0.6 s after it.
    fresh = _idle(pool, now=100.0)
    assert fresh.lifetime.idle_deadline == pytest.approx(100.0 + 3.95)
    assert fresh not in pool.state.watched  # learned: no more watching


def test_a_close_seen_at_the_first_pass_teaches_from_zero() -> None:
    """The connection was open when it turned idle: with no pass between,
    the close may have come at once. Such a young close needs confirming."""
    pool = Pool()
    conn = _idle(pool, now=10.0)
    pool.hung_up.add(conn.connection)
    pool.state.watch_idle(10.0 + WATCH_INTERVAL, [])
    assert pool.state.origin(A).closed_by_server == 1
    assert _origin(pool).learned_timeout is None  # young: only noted


def test_a_checkout_long_after_the_close_learns_an_upper_bound() -> None:
    """No reaper (an async pool used without ``async with``): the close is
    found by the next request, 10 s after the last, 5 s after the server
    closed. All that says is "at most 10 s": it is learned as that, and the
    watching goes on."""
    pool = Pool(policy=LifetimePolicy(margin=1.0, keepalive_expiry=30.0))
    conn = _idle(pool)
    pool.hung_up.add(conn.connection)
    _, to_close = pool.checkout(A, now=10.0)
    assert to_close == [conn]
    origin = _origin(pool)
    assert origin.learned_timeout == 10.0
    assert origin.learned_upper
    assert origin_statistics(origin).learned_provisional
    fresh = PooledConnection(origin, object())
    pool.state.connection_opened(fresh)
    pool.release(fresh, now=10.0)
    assert fresh.lifetime.idle_deadline == 19.0  # shorter than 30 s
    assert fresh in pool.state.watched  # still watched for a safe estimate


def test_a_smaller_upper_bound_shortens_the_window() -> None:
    pool = Pool(policy=LifetimePolicy(margin=1.0, keepalive_expiry=5.0))
    conn = _idle(pool)
    pool.hung_up.add(conn.connection)  # the server's timeout: 3 s
    pool.checkout(A, now=4.5)
    assert _origin(pool).learned_timeout == 4.5
    fresh = _idle(pool, now=20.0)
    assert fresh.lifetime.idle_deadline == 23.5


def test_the_watch_replaces_an_upper_bound_with_a_safe_estimate() -> None:
    pool = Pool()
    conn = _idle(pool)
    pool.hung_up.add(conn.connection)
    pool.checkout(A, now=4.5)  # the server's timeout is 3 s
    assert _origin(pool).learned_upper
    watched = _idle(pool, now=100.0)
    assert watched in pool.state.watched
    _watch(pool, 100.0 + WATCH_INTERVAL, 102.95)
    pool.hung_up.add(watched.connection)
    pool.state.watch_idle(103.0, [])
    origin = _origin(pool)
    assert origin.learned_timeout == pytest.approx(2.95)
    assert not origin.learned_upper
    assert _idle(pool, now=200.0) not in pool.state.watched


def test_a_watched_connection_open_at_its_deadline_settles_an_upper_bound() -> None:
    """The server's timeout is 4.5 s; a checkout found a connection closed
    at 4.8 s. The window (3.8 s) ends before the server's close, so the
    reaper never sees one: a watched connection still open at its deadline
    shows the window is safe, and the watching stops."""
    pool = Pool()
    conn = _idle(pool)
    pool.hung_up.add(conn.connection)
    pool.checkout(A, now=4.8)
    watched = _idle(pool, now=100.0)
    assert watched.lifetime.idle_deadline == pytest.approx(103.8)
    _watch(pool, 100.0 + WATCH_INTERVAL, 103.75)
    to_close: list[PooledConnection] = []
    pool.state.evict_expired(103.8, to_close)
    assert to_close == [watched]
    origin = _origin(pool)
    assert origin.learned_timeout == pytest.approx(4.75)
    assert not origin.learned_upper
    assert _idle(pool, now=200.0) not in pool.state.watched


def test_a_deadline_long_after_the_last_look_settles_nothing() -> None:
    pool = Pool()
    conn = _idle(pool)
    pool.hung_up.add(conn.connection)
    pool.checkout(A, now=4.8)
    watched = _idle(pool, now=100.0)
    pool.state.watch_idle(101.0, [])  # then the reaper stalled
    pool.state.evict_expired(103.8, [])
    assert watched.lifetime.state is State.EXPIRED
    assert _origin(pool).learned_upper


def test_an_upper_bound_does_not_replace_a_safe_estimate() -> None:
    origin = OriginState(A)
    origin.learn_idle_close(3.0, now=10.0, floor=1.0)
    origin.learn_idle_close(7.0, now=20.0, floor=1.0, upper=True)
    assert (origin.learned_timeout, origin.learned_upper) == (3.0, False)
    # One below it says the server now closes earlier (or reloaded): it
    # counts, provisionally, and the watching starts again.
    origin.learn_idle_close(2.0, now=30.0, floor=1.0, upper=True)
    assert (origin.learned_timeout, origin.learned_upper) == (2.0, True)
    assert origin.needs_watching(31.0)


def test_an_upper_bound_is_forgotten_with_the_estimate() -> None:
    origin = OriginState(A)
    origin.learn_idle_close(7.0, now=10.0, floor=1.0, upper=True)
    assert origin.needs_watching(11.0 + RELEARN_AFTER)
    assert origin.learned_timeout is None
    assert not origin_statistics(origin).learned_provisional


def test_a_checkout_that_finds_it_open_bounds_a_failure_on_reuse() -> None:
    """The stale check passed at 3.0 s, the request failed at 3.02 s: the
    server closed in between, and 3.0 s is learned."""
    pool = Pool()
    conn = _idle(pool)
    result, _ = pool.checkout(A, now=3.0)
    assert result is conn
    pool.state.failed_on_reuse(conn, 3.02, [])
    origin = _origin(pool)
    assert (origin.learned_timeout, origin.learned_upper) == (3.0, False)


def test_a_failure_long_after_the_checkout_is_an_upper_bound() -> None:
    pool = Pool()
    conn = _idle(pool)
    pool.checkout(A, now=3.0)
    pool.state.failed_on_reuse(conn, 3.0 + SEEN_OPEN_SLACK + 2.0, [])
    assert _origin(pool).learned_upper


def test_a_young_close_seen_late_is_confirmed_by_a_later_connection() -> None:
    """A server with a 0.3 s idle timeout: both closes are seen at the pass
    after, 0.05 s late; the second, on a connection opened after the first
    close, confirms it."""
    pool = Pool()
    first = _idle(pool)
    _watch(pool, WATCH_INTERVAL, 0.3)
    pool.hung_up.add(first.connection)
    pool.state.watch_idle(0.35, [])
    assert _origin(pool).learned_timeout is None  # noted only
    second = _idle(pool, now=1.0)
    assert second.serial > first.serial
    _watch(pool, 1.0 + WATCH_INTERVAL, 1.3)
    pool.hung_up.add(second.connection)
    pool.state.watch_idle(1.35, [])
    assert _origin(pool).learned_timeout == pytest.approx(0.3)


def test_a_starved_reaper_does_not_make_a_timeout_look_young() -> None:
    """Seen open at 0.4 s, then no pass until 1.1 s, when it is closed: the
    server's timeout may be 1 s, and two such closes in a row must not
    confirm a "young" timeout that would stop reuse. Either side of the
    margin: only an upper bound is learned."""
    pool = Pool()
    for start in (0.0, 10.0):
        conn = _idle(pool, now=start)
        pool.state.watch_idle(start + 0.4, [])
        pool.hung_up.add(conn.connection)
        pool.state.watch_idle(start + 1.1, [])
    origin = _origin(pool)
    assert origin.learned_timeout == pytest.approx(1.1)
    assert origin.learned_upper


def test_a_reload_seen_late_still_teaches_nothing() -> None:
    pool = Pool()
    conns = [pool.open(A) for _ in range(3)]
    for conn in conns:
        pool.release(conn, now=1.0)
    pool.hung_up.update(conn.connection for conn in conns)
    _, to_close = pool.checkout(A, now=1.5)
    assert len(to_close) == 3
    assert _origin(pool).learned_timeout is None


def test_hinted_origins_learn_an_early_close_as_before() -> None:
    """Hinted origins are not watched: a close before the hint's timeout is
    found at checkout, and caps the hint as it did."""
    pool = Pool()
    conn = pool.open(A)
    _origin(pool).last_hint = KeepAlive(5.0, None)  # as the pool records it
    pool.release(conn, now=0.0, hint=KeepAlive(5.0, None))
    assert conn not in pool.state.watched
    pool.hung_up.add(conn.connection)
    pool.checkout(A, now=2.5)
    origin = _origin(pool)
    assert (origin.learned_timeout, origin.learned_hinted) == (2.5, True)
    window = pool.state.policy.idle_window(
        KeepAlive(5.0, None), 2.5, learned_hinted=True, learned_upper=True
    )
    assert window == 1.5
    # A close younger than the margin is a reload: nothing learned.
    other = OriginState(A)
    other.last_hint = KeepAlive(5.0, None)
    other.learn_idle_close(0.5, now=1.0, floor=1.0, upper=True)
    assert other.learned_timeout is None


@pytest.mark.parametrize(
    ("expiry", "learned", "expected"),
    [(5.0, 10.0, 5.0), (5.0, 3.5, 2.5), (None, 10.0, 9.0), (5.0, 0.5, 0.0)],
)
def test_an_upper_bound_only_shortens_the_window(
    expiry: float | None, learned: float, expected: float
) -> None:
    policy = LifetimePolicy(margin=1.0, keepalive_expiry=expiry)
    assert policy.idle_window(None, learned, learned_upper=True) == expected


class _FakeH2:
    max_streams = 10
    announced_streams = 10
    assumed_streams = None
    goaway = None

    def __init__(self) -> None:
        self.close_counted = False

    def is_available(self) -> bool:
        return True


def test_an_http2_stream_lost_on_reuse_learns_the_checkout_age() -> None:
    pool = Pool()
    origin = _origin(pool)
    pool.checkout(A, now=0.0)
    conn = PooledConnection(origin, _FakeH2())
    pool.state.connection_opened(conn)
    first_stream(pool.state, conn)
    to_close: list[Any] = []
    stream_done(pool.state, conn, 0.0, to_close)  # idle from 0 s
    assert conn in pool.state.watched
    assert pool.checkout(A, now=3.0)[0] is conn
    first_stream(pool.state, conn)
    stream_lost(pool.state, conn, 3.01, to_close)
    assert (origin.learned_timeout, origin.learned_upper) == (3.0, False)
