"""Pre-warmed replacements: the bookkeeping (``hintpool._prewarm``).

Pure and synchronous, with the driver helpers of ``tests/test_state.py``:
when a slot is reserved for a pre-warm, when not, and what happens to the
connection or the slot afterwards. The I/O half is in
``tests/test_prewarm_io.py``.
"""

from __future__ import annotations

import math

from hintpool import _prewarm
from hintpool._hints import KeepAlive
from hintpool._policy import State
from hintpool._state import RESERVED, PooledConnection

from .test_state import A, B, FakeWaiter, Pool

HINT = KeepAlive(timeout=5.0, max=None)


def warm_pool(**kwargs: float) -> Pool:
    """Pre-warming on, and A already had a request at 0 s."""
    pool = Pool(**kwargs)
    pool.state.prewarm_enabled = True
    pool.state.origin(A).last_request = 0.0
    return pool


def acquire(pool: Pool, now: float) -> PooledConnection:
    """A request to A takes an idle connection or opens one at ``now``."""
    result, _ = pool.checkout(A, now)
    if result is not RESERVED:
        return result
    conn = PooledConnection(pool.state.origin(A), object())
    pool.state.connection_opened(conn)
    return conn


def serve(pool: Pool, now: float, hint: KeepAlive = HINT) -> PooledConnection:
    """A request to A, answered with ``hint``, released at ``now``."""
    conn = acquire(pool, now)
    conn.origin.last_hint = hint
    pool.release(conn, now, hint=hint)
    return conn


def due(pool: Pool) -> list[object]:
    origins, pool.state.prewarm_due = pool.state.prewarm_due, []
    return [o.key for o in origins]


def test_last_response_of_a_busy_origin_reserves_a_replacement() -> None:
    pool = warm_pool(max_connections=2)
    serve(pool, 0.0)
    conn = serve(pool, 1.0, KeepAlive(timeout=5.0, max=0))
    assert conn.lifetime.state is State.RETIRED
    assert due(pool) == [A]
    origin = pool.state.origin(A)
    assert (origin.open, origin.prewarming, pool.state.open_count) == (1, 1, 1)


def test_nothing_is_reserved_when_off_or_idle_or_at_a_limit() -> None:
    # Turned off (the default of the bookkeeping; the pool turns it on).
    pool = Pool()
    serve(pool, 0.0, KeepAlive(timeout=5.0, max=0))
    assert due(pool) == []
    # The pool is full: an active connection to B holds the only slot.
    pool = warm_pool(max_connections=1)
    serve(pool, 0.0)
    conn_b = pool.open(B)
    origin = pool.state.origin(A)
    _prewarm.consider(pool.state, origin, 0.5)
    assert due(pool) == []
    # The origin is at its cap.
    pool = warm_pool(max_connections=5, max_per_origin=1)
    pool.open(A)
    _prewarm.consider(pool.state, pool.state.origin(A), 0.0)
    assert due(pool) == []
    # Somebody waits: a free slot is theirs.
    pool = warm_pool(max_connections=1)
    conn_b = pool.open(B)
    pool.wait(B)
    pool.state.origin(A).last_request = 0.0
    _prewarm.consider(pool.state, pool.state.origin(A), 0.0)
    assert due(pool) == []
    del conn_b


def test_an_idle_connection_with_requests_left_is_spare_enough() -> None:
    pool = warm_pool()
    first = pool.open(A)
    second = pool.open(A)
    pool.release(first, 0.0, hint=KeepAlive(timeout=5.0, max=5))
    pool.release(second, 0.0, hint=KeepAlive(timeout=5.0, max=0))
    assert due(pool) == []
    # With only one request left on the idle one, a replacement starts.
    third = pool.checkout(A, 0.5)[0]
    assert third is first
    pool.release(first, 0.5, hint=KeepAlive(timeout=5.0, max=1))
    _prewarm.consider(pool.state, pool.state.origin(A), 0.5)
    assert due(pool) == [A]


def test_an_idle_connection_about_to_expire_is_not_spare() -> None:
    pool = warm_pool()
    spare, busy = pool.open(A), pool.open(A)
    pool.state.origin(A).last_hint = HINT
    pool.release(spare, 0.0, hint=HINT)  # deadline 4, idle window 4
    busy.lifetime.response_headers(KeepAlive(timeout=5.0, max=1), False)
    _prewarm.consider(pool.state, pool.state.origin(A), 1.9)
    assert due(pool) == []  # fresh for more than half its window
    _prewarm.consider(pool.state, pool.state.origin(A), 2.1)
    assert due(pool) == [A]


def test_an_origin_nobody_uses_is_never_prewarmed() -> None:
    pool = warm_pool()
    serve(pool, 0.0)
    # 5 s announced: a request 6 s ago does not make the origin busy.
    _prewarm.consider(pool.state, pool.state.origin(A), 6.0)
    assert due(pool) == []
    assert _prewarm.busy(pool.state, pool.state.origin(A), 5.0)
    # One request alone does not make an origin busy.
    origin = pool.state.origin(B)
    origin.last_request = 0.0
    assert not _prewarm.busy(pool.state, origin, 1.0)
    # Requests 5 s apart: busy for 5 s after the last (without any hint the
    # window is keepalive_expiry, 5 s here).
    origin.previous_request, origin.last_request = 0.0, 5.0
    assert _prewarm.busy(pool.state, origin, 10.0)
    assert not _prewarm.busy(pool.state, origin, 10.5)
    origin.previous_request = -0.5
    assert not _prewarm.busy(pool.state, origin, 6.0)


def test_one_prewarm_per_origin_at_a_time() -> None:
    pool = warm_pool()
    serve(pool, 0.0)
    origin = pool.state.origin(A)
    pool.state.take_idle(origin.idle[-1])  # as if in use
    _prewarm.consider(pool.state, origin, 0.5)
    _prewarm.consider(pool.state, origin, 0.6)
    assert due(pool) == [A]


def test_expired_last_idle_connection_of_a_busy_origin_is_replaced() -> None:
    pool = warm_pool()
    conn = serve(pool, 0.0)  # deadline 4 (5 s announced, 1 s margin)
    to_close: list[PooledConnection] = []
    pool.state.evict_expired(4.0, to_close)
    assert to_close == [conn]
    assert due(pool) == [A]  # the last request was 4 s ago, within 5 s
    # The replacement expires unused: the origin is not busy any more.
    replacement = PooledConnection(pool.state.origin(A), object())
    _prewarm.opened(pool.state, replacement, 4.1, to_close)
    assert replacement.lifetime.idle_deadline == 4.1 + 4.0
    pool.state.evict_expired(8.1, to_close)
    assert to_close[-1] is replacement
    assert due(pool) == []
    assert pool.state.open_count == 0


def test_prewarmed_connection_is_used_by_the_next_request() -> None:
    pool = warm_pool()
    serve(pool, 0.0, KeepAlive(timeout=5.0, max=0))
    (origin_key,) = due(pool)
    origin = pool.state.origin(origin_key)  # type: ignore[arg-type]
    conn = PooledConnection(origin, object())
    to_close: list[PooledConnection] = []
    _prewarm.opened(pool.state, conn, 0.2, to_close)
    assert to_close == []
    assert conn.prewarmed and origin.idle == [conn]
    assert conn.lifetime.state is State.IDLE
    assert pool.checkout(A, 0.3)[0] is conn
    stats = pool.stats(A)
    assert (stats.prewarmed, stats.prewarm_used) == (1, 1)
    assert (stats.connections_opened, stats.requests, stats.reused) == (2, 2, 0)
    assert origin.prewarming == 0
    # Its second request is an ordinary reuse.
    pool.release(conn, 0.4, hint=HINT)
    assert pool.checkout(A, 0.5)[0] is conn
    assert pool.stats(A).reused == 1


def test_prewarmed_connection_goes_to_a_waiter_of_its_origin() -> None:
    pool = warm_pool(max_connections=2, max_per_origin=1)
    serve(pool, 0.0, KeepAlive(timeout=5.0, max=0))
    assert due(pool) == [A]
    waiter = pool.wait(A)  # A is at its cap: the pre-warm holds its slot
    conn = PooledConnection(pool.state.origin(A), object())
    _prewarm.opened(pool.state, conn, 0.2, [])
    assert waiter.result is conn
    assert pool.state.claim(conn, 0.3, []) is conn
    assert pool.stats(A).prewarm_used == 1


def test_failed_prewarm_frees_its_slot_for_a_waiter() -> None:
    pool = warm_pool(max_connections=1)
    serve(pool, 0.0, KeepAlive(timeout=5.0, max=0))
    assert due(pool) == [A]
    waiter = pool.wait(B)
    _prewarm.failed(pool.state, pool.state.origin(A))
    assert waiter.result is RESERVED
    assert pool.state.origin(A).open == 0
    assert pool.stats(A).prewarm_failed == 1
    # Cancelled (the pool closing) is not a failure.
    pool = warm_pool()
    serve(pool, 0.0, KeepAlive(timeout=5.0, max=0))
    _prewarm.failed(pool.state, pool.state.origin(A), cancelled=True)
    assert pool.stats(A).prewarm_failed == 0
    assert pool.state.open_count == 0


def test_tiny_timeout_is_never_prewarmed() -> None:
    pool = warm_pool()
    serve(pool, 0.0, KeepAlive(timeout=1.0, max=0))
    assert due(pool) == []
    assert math.isinf(pool.state.max_per_origin)


def take(pool: Pool, now: float) -> PooledConnection:
    """A request to A takes a connection (idle, or a new one) at ``now``,
    and the pool runs the pre-warm bookkeeping of a checkout."""
    conn = acquire(pool, now)
    _prewarm.checked_out(pool.state, conn.origin, now)
    return conn


def test_overlapping_requests_keep_a_spare_connection() -> None:
    pool = warm_pool()
    origin = pool.state.origin(A)
    first = take(pool, 1.0)
    assert due(pool) == []  # one in flight: the replacement triggers suffice
    second = take(pool, 1.01)  # the first is still in flight: a handshake
    assert due(pool) == [A]
    assert (origin.open, origin.prewarming) == (3, 1)
    spare = PooledConnection(origin, object())
    _prewarm.opened(pool.state, spare, 1.05, [])
    pool.release(first, 1.1, hint=HINT)
    pool.release(second, 1.11, hint=HINT)
    # Spare at the bottom: the next lone request takes a busy one, and the
    # idle ones left are spare enough.
    assert origin.idle[0] is spare
    third = take(pool, 1.2)
    assert third is second and due(pool) == []
    pool.release(third, 1.25, hint=HINT)
    # An overlap takes the spare and leaves an idle one: nothing to do.
    a, b = take(pool, 1.3), take(pool, 1.31)
    assert (a, b) == (third, first) and due(pool) == []
    c = take(pool, 1.32)
    assert c is spare and due(pool) == [A]
    assert pool.stats(A).prewarm_used == 1


def test_a_lone_request_taking_the_last_connection_after_an_overlap() -> None:
    pool = warm_pool()
    origin = pool.state.origin(A)
    first, second = take(pool, 1.0), take(pool, 1.01)
    due(pool)
    _prewarm.failed(pool.state, origin)  # (no spare after all)
    pool.release(first, 1.1, hint=HINT)
    pool.release(second, 1.11, hint=KeepAlive(timeout=5.0, max=0))  # retired
    assert due(pool) == []  # the idle one is spare enough
    assert origin.idle == [first]
    assert take(pool, 2.0) is first  # alone in flight, but no spare left
    assert due(pool) == [A]


def test_a_lone_stream_and_an_old_overlap_keep_no_spare() -> None:
    pool = warm_pool()
    for i in range(20):  # never two in flight
        conn = take(pool, 1.0 + i * 0.1)
        assert due(pool) == []
        pool.release(conn, 1.05 + i * 0.1, hint=HINT)
    # An overlap, then a lone request past the memory (2 x 5 s): no spare.
    first, second = take(pool, 10.0), take(pool, 10.01)
    assert due(pool) == [A]
    origin = pool.state.origin(A)
    _prewarm.failed(pool.state, origin)
    pool.release(second, 10.1, hint=HINT)
    pool.release(first, 10.2, hint=HINT)
    late = 10.01 + _prewarm.CONCURRENT_MEMORY * 5.0 + 0.01
    origin.previous_request, origin.last_request = late - 1.0, late - 0.5  # busy
    assert origin.idle and take(pool, late) not in (first, second)  # expired
    assert due(pool) == []


def test_spare_stays_within_the_limits() -> None:
    pool = warm_pool(max_connections=2)
    take(pool, 1.0)
    take(pool, 1.01)
    assert due(pool) == []  # both slots in use
    pool = warm_pool(max_connections=5, max_per_origin=2)
    take(pool, 1.0)
    take(pool, 1.01)
    assert due(pool) == []  # the origin is at its cap
    pool = Pool()  # pre-warming off
    pool.state.origin(A).last_request = 0.0
    take(pool, 1.0)
    take(pool, 1.01)
    assert due(pool) == []


def test_no_spare_beyond_the_idle_limit() -> None:
    """Once the two in flight are done, a spare would push one of them out
    of the idle connections (``max_keepalive_connections=2``)."""
    pool = warm_pool(max_idle=2)
    take(pool, 1.0)
    take(pool, 1.01)
    assert due(pool) == []
    pool = warm_pool(max_idle=3)
    take(pool, 1.0)
    take(pool, 1.01)
    assert due(pool) == [A]


def pending_prewarm(pool: Pool) -> FakeWaiter:
    """A's pre-warm is connecting and a request to A reserved its own slot
    and was promised the pre-warm."""
    serve(pool, 0.0)
    serve(pool, 0.5, KeepAlive(timeout=5.0, max=0))  # retired: pre-warm due
    (origin,) = pool.state.prewarm_due
    pool.state.prewarm_due = []
    assert pool.checkout(A, 0.6)[0] is RESERVED
    taker = FakeWaiter(A)
    assert _prewarm.take_ahead(pool.state, origin, taker)
    assert not _prewarm.take_ahead(pool.state, origin, FakeWaiter(A))  # one only
    assert pool.state.open_count == 2  # the pre-warm's slot and the request's
    return taker


def test_a_request_takes_the_prewarm_in_flight() -> None:
    pool = warm_pool()
    taker = pending_prewarm(pool)
    conn = PooledConnection(pool.state.origin(A), object())
    _prewarm.opened(pool.state, conn, 0.7, [])
    assert taker.result is conn and not conn.origin.idle
    assert pool.state.open_count == 1  # the request's slot went back
    assert _prewarm.took(pool.state, conn.origin, taker, 0.7, []) is conn
    stats = pool.stats(A)
    assert (stats.prewarmed, stats.prewarm_used, stats.requests) == (1, 1, 3)
    assert conn.lifetime.state is State.ACTIVE


def test_a_failed_or_late_prewarm_leaves_the_request_its_slot() -> None:
    pool = warm_pool()
    taker = pending_prewarm(pool)
    _prewarm.failed(pool.state, pool.state.origin(A))
    assert taker.result is RESERVED
    assert _prewarm.took(pool.state, pool.state.origin(A), taker, 0.7, []) is RESERVED
    assert pool.state.open_count == 1  # the request opens its own in it
    # Timed out: the request stops waiting and opens its own; the pre-warm
    # goes idle when it comes.
    pool = warm_pool()
    taker = pending_prewarm(pool)
    origin = pool.state.origin(A)
    assert _prewarm.took(pool.state, origin, taker, 5.0, []) is RESERVED
    assert not origin.prewarm_takers and not taker.assigned
    conn = PooledConnection(origin, object())
    _prewarm.opened(pool.state, conn, 5.1, [])
    assert origin.idle == [conn] and pool.state.open_count == 2


def test_a_cancelled_taker_gives_back_its_slot_or_the_connection() -> None:
    pool = warm_pool()
    taker = pending_prewarm(pool)
    origin = pool.state.origin(A)
    _prewarm.abandon_take(pool.state, origin, taker, [])
    assert pool.state.open_count == 1 and not origin.prewarm_takers
    # Cancelled after the connection was handed over: it goes idle.
    pool = warm_pool()
    taker = pending_prewarm(pool)
    origin = pool.state.origin(A)
    conn = PooledConnection(origin, object())
    _prewarm.opened(pool.state, conn, 0.7, [])
    _prewarm.abandon_take(pool.state, origin, taker, [])
    assert origin.idle == [conn] and pool.state.open_count == 1
    # Cancelled after the pre-warm failed: the slot it held goes back.
    pool = warm_pool()
    taker = pending_prewarm(pool)
    origin = pool.state.origin(A)
    _prewarm.failed(pool.state, origin)
    _prewarm.abandon_take(pool.state, origin, taker, [])
    assert pool.state.open_count == 0
