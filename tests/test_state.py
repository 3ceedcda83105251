"""Unit tests of the pool bookkeeping (``hintpool._state``).

Pure and synchronous: no sockets, no sleeping. The clock is a plain float
passed as ``now``, connections are ``PooledConnection(origin, object())`` and
"the server hung up" is a set the ``server_closed`` callback looks into.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from hintpool._hints import KeepAlive
from hintpool._policy import FINAL_STATES, LifetimePolicy, State
from hintpool._state import (
    FORGET_AFTER,
    RESERVED,
    WAIT,
    OriginKey,
    OriginState,
    PooledConnection,
    PoolState,
    origin_label,
)

A: OriginKey = (b"http", b"a.example", 80)
B: OriginKey = (b"http", b"b.example", 8080)
C: OriginKey = (b"https", b"c.example", 443)


class FakeWaiter:
    """Satisfies ``WaiterLike``; records what it was given."""

    __slots__ = ("assigned", "cancelled", "key", "result", "times_assigned")

    def __init__(self, key: OriginKey) -> None:
        self.key = key
        self.cancelled = False
        self.assigned = False
        self.result: Any = None
        self.times_assigned = 0

    def assign(self, result: Any) -> None:
        assert not self.assigned, "a waiter must be assigned at most once"
        assert not self.cancelled, "a cancelled waiter must not be assigned"
        self.result = result
        self.assigned = True
        self.times_assigned += 1

    def __repr__(self) -> str:
        return f"<FakeWaiter {self.key!r} {self.result!r}>"


class Pool:
    """A PoolState plus the bits of driver code the tests keep repeating."""

    def __init__(
        self,
        max_connections: float = 10,
        max_idle: float = 10,
        policy: LifetimePolicy | None = None,
        max_origins: int = 10_000,
        max_per_origin: float = math.inf,
    ) -> None:
        self.hung_up: set[object] = set()
        self.now = 0.0  # what the state's clock says (vacancy times)
        self.state = PoolState(
            max_connections=max_connections,
            max_idle=max_idle,
            policy=policy or LifetimePolicy(margin=1.0, keepalive_expiry=5.0),
            server_closed=self._server_closed,
            max_origins=max_origins,
            clock=lambda: self.now,
            max_per_origin=max_per_origin,
        )

    def _server_closed(self, conn: Any) -> bool:
        # Accepts the wire object or (newer API) the PooledConnection.
        return conn in self.hung_up or getattr(conn, "connection", None) in self.hung_up

    def checkout(self, key: OriginKey, now: float = 0.0) -> tuple[Any, list[Any]]:
        to_close: list[PooledConnection] = []
        result = self.state.checkout(self.state.origin(key), now, to_close)
        return result, to_close

    def open(self, key: OriginKey, now: float = 0.0) -> PooledConnection:
        result, _ = self.checkout(key, now)
        assert result is RESERVED
        conn = PooledConnection(self.state.origin(key), object())
        self.state.connection_opened(conn)
        return conn

    def release(
        self,
        conn: PooledConnection,
        now: float = 0.0,
        hint: KeepAlive | None = None,
        will_close: bool = False,
        reusable: bool = True,
    ) -> list[PooledConnection]:
        conn.lifetime.response_headers(hint, will_close)
        to_close: list[PooledConnection] = []
        self.state.release(conn, now, reusable, to_close)
        return to_close

    def wait(self, key: OriginKey, now: float = 0.0) -> FakeWaiter:
        result, _ = self.checkout(key, now)
        assert result is WAIT
        waiter = FakeWaiter(key)
        self.state.waiters.append(waiter)
        return waiter

    def stats(self, key: OriginKey) -> Any:
        return self.state.statistics().origins[origin_label(key)]


# -- checkout and release ------------------------------------------------------


def test_checkout_reserves_until_max_connections_then_waits() -> None:
    pool = Pool(max_connections=3)
    for n in range(1, 4):
        result, to_close = pool.checkout(A if n % 2 else B)
        assert result is RESERVED
        assert to_close == []
        assert pool.state.open_count == n
    assert pool.state.origin(A).open == 2
    assert pool.state.origin(B).open == 1
    result, to_close = pool.checkout(A)
    assert result is WAIT
    assert to_close == []
    assert pool.state.open_count == 3
    stats = pool.state.statistics()
    assert (stats.open, stats.idle, stats.active) == (3, 0, 3)
    assert stats.connections_opened == 0  # reserved, not yet opened


def test_checkout_waits_behind_queued_waiters_even_with_free_slots() -> None:
    pool = Pool(max_connections=2)
    waiter = FakeWaiter(B)
    pool.state.waiters.append(waiter)
    result, _ = pool.checkout(A)
    assert result is WAIT  # FIFO: no overtaking
    pool.state.abandon(waiter, [])
    result, _ = pool.checkout(A)
    assert result is RESERVED
    assert not pool.state.waiters  # the cancelled one was pruned


def test_connection_opened_starts_first_request() -> None:
    pool = Pool()
    conn = pool.open(A)
    assert conn.lifetime.state is State.ACTIVE
    assert conn.lifetime.requests_served == 1
    stats = pool.stats(A)
    assert stats.connections_opened == 1
    assert stats.requests == 1
    assert stats.reused == 0
    assert (stats.open, stats.idle, stats.active) == (1, 0, 1)


def test_release_reusable_makes_idle_and_checkout_reuses() -> None:
    pool = Pool()
    conn = pool.open(A)
    assert pool.release(conn, now=10.0, hint=KeepAlive(5.0, None)) == []
    assert conn.lifetime.state is State.IDLE
    assert conn.lifetime.idle_deadline == 14.0
    assert pool.state.idle_count == 1
    assert pool.state.open_count == 1
    assert pool.state.next_deadline() == 14.0
    result, to_close = pool.checkout(A, now=13.9)
    assert result is conn
    assert to_close == []
    assert conn.lifetime.state is State.ACTIVE
    assert conn.lifetime.requests_served == 2
    assert pool.state.idle_count == 0
    assert pool.state.next_deadline() == math.inf
    stats = pool.stats(A)
    assert (stats.requests, stats.reused, stats.connections_opened) == (2, 1, 1)


def test_idle_connection_of_another_origin_is_not_used() -> None:
    pool = Pool()
    pool.release(pool.open(A))
    result, _ = pool.checkout(B)
    assert result is RESERVED
    assert pool.state.idle_count == 1


def test_lifo_most_recently_released_first() -> None:
    pool = Pool()
    conns = [pool.open(A) for _ in range(3)]
    for i, conn in enumerate(conns):
        pool.release(conn, now=float(i))
    for expected in reversed(conns):
        result, to_close = pool.checkout(A, now=3.0)
        assert result is expected
        assert to_close == []


def test_release_not_reusable_closes() -> None:
    pool = Pool()
    conn = pool.open(A)
    assert pool.release(conn, reusable=False) == [conn]
    assert conn.lifetime.state is State.CLOSED
    assert pool.state.open_count == 0
    assert pool.state.idle_count == 0


def test_release_will_close_retires() -> None:
    pool = Pool()
    conn = pool.open(A)
    assert pool.release(conn, hint=KeepAlive(5.0, 10), will_close=True) == [conn]
    assert conn.lifetime.state is State.RETIRED
    assert pool.stats(A).retired_by_max == 0
    assert pool.state.open_count == 0


def test_release_counts_retired_by_max_apache_style() -> None:
    pool = Pool()
    conn = pool.open(A)
    for max_, now in ((2, 0.0), (1, 1.0)):
        assert pool.release(conn, now=now, hint=KeepAlive(5.0, max_)) == []
        result, _ = pool.checkout(A, now=now + 0.5)
        assert result is conn
    assert pool.release(conn, now=2.0, hint=KeepAlive(5.0, 0)) == [conn]
    assert conn.lifetime.retired_by_max
    stats = pool.stats(A)
    assert stats.retired_by_max == 1
    assert (stats.requests, stats.reused, stats.open) == (3, 2, 0)


@pytest.mark.parametrize("timeout", [0.0, 1.0])
def test_tiny_timeout_is_not_pooled(timeout: float) -> None:
    pool = Pool(policy=LifetimePolicy(margin=1.0))
    conn = pool.open(A)
    assert pool.release(conn, hint=KeepAlive(timeout, None)) == [conn]
    assert conn.lifetime.state is State.RETIRED
    assert pool.state.open_count == 0


def test_release_uses_learned_timeout_without_hint() -> None:
    pool = Pool(policy=LifetimePolicy(margin=1.0, keepalive_expiry=5.0))
    pool.state.origin(A).learned_timeout = 3.0
    conn = pool.open(A)
    pool.release(conn, now=100.0)
    assert conn.lifetime.idle_deadline == 102.0
    other = pool.open(B)
    pool.release(other, now=100.0)
    assert other.lifetime.idle_deadline == 105.0


def test_close_before_the_hint_is_learned_and_wins() -> None:
    origin = OriginState(A)
    origin.last_hint = KeepAlive(5.0, None)
    origin.learn_idle_close(6.0, now=10.0)  # after the hint: the hint holds
    assert origin.learned_timeout is None
    origin.learn_idle_close(2.0, now=20.0)  # before it: something closes early
    assert origin.learned_timeout == 2.0
    origin.learn_idle_close(3.0, now=30.0)  # the smallest age stays
    assert origin.learned_timeout == 2.0
    # Younger than the margin: a reload closing every idle connection.
    origin.learn_idle_close(0.05, now=40.0, floor=1.0)
    assert origin.learned_timeout == 2.0
    assert origin.learned_hinted
    policy = LifetimePolicy(margin=0.5)
    window = policy.idle_window(
        origin.last_hint, origin.learned_timeout, origin.learned_hinted
    )
    assert window == 1.5


def test_release_without_expiry_keeps_forever() -> None:
    pool = Pool(policy=LifetimePolicy(keepalive_expiry=None))
    conn = pool.open(A)
    pool.release(conn, now=0.0)
    assert conn.lifetime.idle_deadline == math.inf
    assert pool.state.next_deadline() == math.inf
    result, _ = pool.checkout(A, now=1e12)
    assert result is conn


def test_discard_frees_the_slot() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    to_close: list[PooledConnection] = []
    pool.state.discard(conn, to_close)
    assert to_close == [conn]
    assert conn.lifetime.state is State.CLOSED
    assert pool.state.open_count == 0
    assert pool.checkout(A)[0] is RESERVED


# -- expiry, server close, eviction -----------------------------------------


def test_expired_idle_connection_is_closed_at_checkout() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    pool.release(conn, now=0.0, hint=KeepAlive(5.0, None))  # deadline 4.0
    result, to_close = pool.checkout(A, now=4.0)  # at the deadline: expired
    assert to_close == [conn]
    assert conn.lifetime.state is State.EXPIRED
    assert result is RESERVED  # its slot went to a new connection
    assert pool.state.open_count == 1
    assert pool.state.idle_count == 0
    stats = pool.stats(A)
    assert stats.expired == 1
    assert stats.reused == 0


def test_expired_below_a_usable_one_is_left_alone() -> None:
    pool = Pool()
    old, new = pool.open(A), pool.open(A)
    pool.release(old, now=0.0, hint=KeepAlive(2.0, None))  # deadline 1
    pool.release(new, now=0.0, hint=KeepAlive(10.0, None))  # deadline 9
    result, to_close = pool.checkout(A, now=0.5)
    assert result is new  # LIFO
    assert to_close == []
    # The checkout sweeps expired connections of every origin from the heap.
    result, to_close = pool.checkout(B, now=1.0)
    assert result is RESERVED
    assert to_close == [old]
    assert pool.stats(A).expired == 1


def test_expired_connections_on_top_of_the_stack_are_skipped() -> None:
    pool = Pool()
    good, stale = pool.open(A), pool.open(A)
    pool.release(good, now=0.0, hint=KeepAlive(10.0, None))  # deadline 9
    pool.release(stale, now=0.1, hint=KeepAlive(2.0, None))  # deadline 1.1
    result, to_close = pool.checkout(A, now=5.0)
    assert to_close == [stale]
    assert result is good
    assert pool.state.open_count == 1
    assert pool.stats(A).expired == 1


def test_server_closed_connection_is_replaced() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    pool.release(conn)
    pool.hung_up.add(conn.connection)
    result, to_close = pool.checkout(A, now=1.0)
    assert to_close == [conn]
    assert conn.lifetime.state is State.CLOSED
    assert result is RESERVED
    assert pool.state.open_count == 1
    stats = pool.stats(A)
    assert stats.closed_by_server == 1
    assert stats.expired == 0


def test_server_closed_is_not_asked_when_expired() -> None:
    asked: list[object] = []
    pool = Pool()
    pool.state.server_closed = lambda c: asked.append(c) or False
    conn = pool.open(A)
    pool.release(conn, now=0.0)
    pool.checkout(A, now=100.0)
    assert asked == []
    conn = pool.open(A)
    pool.release(conn, now=100.0)
    assert pool.checkout(A, now=101.0)[0] is conn
    assert len(asked) == 1
    assert asked[0] in (conn, conn.connection)


def test_max_idle_evicts_nearest_deadline_among_proven_origins() -> None:
    pool = Pool(max_idle=2)
    for key in (A, B):  # both origins reused a connection: both proven
        pool.release(pool.open(key))
        conn, _ = pool.checkout(key)
        pool.release(conn, reusable=False)
    a1, b1, a2 = pool.open(A), pool.open(B), pool.open(A)
    pool.release(a1, now=0.0, hint=KeepAlive(10.0, None))  # deadline 9
    pool.release(b1, now=0.0, hint=KeepAlive(3.0, None))  # deadline 2
    to_close = pool.release(a2, now=1.0, hint=KeepAlive(20.0, None))  # 20
    assert to_close == [b1]
    assert b1.lifetime.state is State.CLOSED
    assert pool.stats(B).evicted == 1
    assert pool.state.idle_count == 2
    assert pool.state.open_count == 2
    assert pool.state.origin(A).idle == [a1, a2]
    assert pool.state.next_deadline() == 9.0


def test_max_idle_zero_keeps_nothing_idle() -> None:
    pool = Pool(max_idle=0)
    conn = pool.open(A)
    assert pool.release(conn) == [conn]
    assert pool.state.idle_count == 0
    assert pool.state.open_count == 0
    assert pool.stats(A).evicted == 1


def test_full_pool_evicts_idle_of_another_origin() -> None:
    pool = Pool(max_connections=2)
    b_near, b_far = pool.open(B), pool.open(B)
    pool.release(b_far, now=0.0, hint=KeepAlive(10.0, None))
    pool.release(b_near, now=0.0, hint=KeepAlive(3.0, None))
    result, to_close = pool.checkout(A, now=1.0)
    assert result is RESERVED
    assert to_close == [b_near]
    assert b_near.lifetime.state is State.CLOSED
    assert pool.stats(B).evicted == 1
    assert pool.state.origin(A).open == 1
    assert pool.state.origin(B).open == 1
    assert pool.state.open_count == 2
    assert pool.state.idle_count == 1


def test_evict_expired_and_next_deadline() -> None:
    pool = Pool()
    conns = [pool.open(key) for key in (A, B, C)]
    for conn, timeout in zip(conns, (3.0, 5.0, 7.0)):
        pool.release(conn, now=0.0, hint=KeepAlive(timeout, None))
    assert pool.state.next_deadline() == 2.0
    to_close: list[PooledConnection] = []
    pool.state.evict_expired(1.99, to_close)
    assert to_close == []
    pool.state.evict_expired(4.0, to_close)  # deadlines 2 and 4 have passed
    assert to_close == conns[:2]
    assert all(c.lifetime.state is State.EXPIRED for c in conns[:2])
    assert pool.state.next_deadline() == 6.0
    assert pool.state.idle_count == 1
    assert pool.state.open_count == 1
    stats = pool.state.statistics()
    assert stats.expired == 2
    # A connection taken off the pool leaves a stale heap entry behind.
    assert pool.checkout(C, now=5.0)[0] is conns[2]
    assert pool.state.next_deadline() == math.inf
    to_close = []
    pool.state.evict_expired(100.0, to_close)
    assert to_close == []
    assert conns[2].lifetime.state is State.ACTIVE


# -- waiters -----------------------------------------------------------------


def test_released_connection_goes_to_first_waiter_of_same_origin() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter = pool.wait(A)
    assert pool.state.statistics().waiting == 1
    assert pool.release(conn, now=1.0) == []
    assert waiter.assigned
    assert waiter.result is conn
    assert not pool.state.waiters
    assert pool.state.idle_count == 0  # handed over, not idle
    assert conn.lifetime.state is State.IDLE
    to_close: list[PooledConnection] = []
    assert pool.state.claim(conn, 2.0, to_close) is conn
    assert to_close == []
    assert conn.lifetime.state is State.ACTIVE
    stats = pool.stats(A)
    assert (stats.requests, stats.reused, stats.open) == (2, 1, 1)


def test_claim_of_a_stale_connection_keeps_the_slot() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter = pool.wait(A)
    pool.release(conn, now=0.0, hint=KeepAlive(3.0, None))  # deadline 2
    assert waiter.result is conn
    to_close: list[PooledConnection] = []
    assert pool.state.claim(conn, 2.0, to_close) is RESERVED
    assert to_close == [conn]
    assert conn.lifetime.state is State.EXPIRED
    assert pool.state.open_count == 1  # the waiter keeps the slot
    assert pool.stats(A).expired == 1


def test_claim_of_a_connection_the_server_closed() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter = pool.wait(A)
    pool.release(conn)
    pool.hung_up.add(conn.connection)
    to_close: list[PooledConnection] = []
    assert pool.state.claim(waiter.result, 0.5, to_close) is RESERVED
    assert to_close == [conn]
    assert pool.stats(A).closed_by_server == 1
    assert pool.state.open_count == 1


def test_released_connection_closed_for_first_waiter_of_other_origin() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter_b = pool.wait(B)
    waiter_a = pool.wait(A)
    to_close = pool.release(conn)
    assert to_close == [conn]  # FIFO: B was first
    assert conn.lifetime.state is State.CLOSED
    assert pool.stats(A).evicted == 1
    assert waiter_b.result is RESERVED
    assert not waiter_a.assigned
    assert pool.state.origin(B).open == 1
    assert pool.state.origin(A).open == 0
    assert pool.state.open_count == 1
    assert list(pool.state.waiters) == [waiter_a]


def test_not_reusable_release_passes_slot_to_first_waiter() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter = pool.wait(A)
    assert pool.release(conn, reusable=False) == [conn]
    assert waiter.result is RESERVED
    assert pool.state.open_count == 1


def test_cancelled_waiters_are_skipped() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    w1, w2, w3 = pool.wait(A), pool.wait(B), pool.wait(A)
    for waiter in (w1, w2):
        pool.state.abandon(waiter, [])
        assert waiter.cancelled
    assert pool.state.statistics().waiting == 1
    pool.release(conn)
    assert not w1.assigned
    assert not w2.assigned
    assert w3.result is conn
    assert not pool.state.waiters


def test_all_waiters_cancelled_connection_goes_idle() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter = pool.wait(A)
    pool.state.abandon(waiter, [])
    pool.release(conn)
    assert not waiter.assigned
    assert pool.state.origin(A).idle == [conn]
    assert not pool.state.waiters


def test_abandon_assigned_connection_goes_to_next_waiter() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    w1, w2 = pool.wait(A), pool.wait(A)
    pool.release(conn)
    assert w1.result is conn
    to_close: list[PooledConnection] = []
    pool.state.abandon(w1, to_close)  # timed out before claiming
    assert to_close == []
    assert w1.cancelled
    assert w1.result is None
    assert w2.result is conn
    assert pool.state.open_count == 1


def test_abandon_assigned_connection_to_waiter_of_other_origin() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    w1, w2 = pool.wait(A), pool.wait(B)
    pool.release(conn)
    to_close: list[PooledConnection] = []
    pool.state.abandon(w1, to_close)
    assert to_close == [conn]
    assert w2.result is RESERVED
    assert pool.state.origin(B).open == 1
    assert pool.state.origin(A).open == 0


def test_abandon_assigned_connection_without_other_waiter_goes_idle() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter = pool.wait(A)
    pool.release(conn)
    pool.state.abandon(waiter, [])
    assert pool.state.origin(A).idle == [conn]
    assert pool.state.idle_count == 1
    assert pool.checkout(A, now=0.5)[0] is conn


def test_abandon_assigned_slot_goes_to_next_waiter() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    w1, w2 = pool.wait(B), pool.wait(C)
    pool.release(conn, reusable=False)
    assert w1.result is RESERVED
    pool.state.abandon(w1, [])
    assert w2.result is RESERVED
    assert pool.state.origin(B).open == 0
    assert pool.state.origin(C).open == 1
    assert pool.state.open_count == 1


def test_abandon_assigned_slot_without_waiters_frees_it() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    waiter = pool.wait(B)
    pool.release(conn, reusable=False)
    pool.state.abandon(waiter, [])
    assert pool.state.open_count == 0
    assert pool.state.origin(B).open == 0


def test_abandon_unassigned_waiter_only_marks_it() -> None:
    pool = Pool(max_connections=1)
    pool.open(A)
    waiter = pool.wait(A)
    pool.state.abandon(waiter, [])
    assert waiter.cancelled
    assert pool.state.open_count == 1
    assert pool.state.statistics().waiting == 0


def test_release_slot_passes_slot_to_waiter() -> None:
    pool = Pool(max_connections=1)
    result, _ = pool.checkout(A)
    assert result is RESERVED
    waiter = pool.wait(B)
    pool.state.release_slot(pool.state.origin(A))  # connect failed
    assert waiter.result is RESERVED
    assert pool.state.origin(A).open == 0
    assert pool.state.origin(B).open == 1
    assert pool.state.open_count == 1


def test_release_slot_without_waiters() -> None:
    pool = Pool(max_connections=1)
    pool.checkout(A)
    pool.state.release_slot(pool.state.origin(A))
    assert pool.state.open_count == 0
    assert pool.state.statistics().connections_opened == 0


def test_close_all() -> None:
    pool = Pool(max_connections=3)
    idle_a, idle_b, active = pool.open(A), pool.open(B), pool.open(C)
    pool.release(idle_a)
    pool.release(idle_b)
    # Queued by hand: the bookkeeping does not care how they got there.
    waiter, cancelled = FakeWaiter(C), FakeWaiter(A)
    cancelled.cancelled = True
    pool.state.waiters.append(cancelled)
    pool.state.waiters.append(waiter)
    to_close: list[PooledConnection] = []
    pool.state.close_all(to_close)
    assert sorted(to_close, key=id) == sorted([idle_a, idle_b], key=id)
    assert all(c.lifetime.state is State.CLOSED for c in to_close)
    assert not waiter.assigned  # still queued: the pool stays usable
    assert pool.state.idle_count == 0
    assert pool.state.open_count == 1  # the active one is still out
    assert pool.state.next_deadline() == math.inf
    assert pool.state._heap == []
    assert active.lifetime.state is State.ACTIVE
    stats = pool.state.statistics()
    assert (stats.open, stats.idle, stats.active, stats.waiting) == (1, 0, 1, 1)
    # The connection out at close time is closed when its response ends,
    # never reused, and its slot goes to the waiter.
    assert pool.release(active) == [active]
    assert active.lifetime.state is State.CLOSED
    assert waiter.result is RESERVED
    assert not cancelled.assigned
    # Connections opened after the close are reused as usual.
    conn = PooledConnection(pool.state.origin(C), object())
    pool.state.connection_opened(conn)
    assert pool.release(conn) == []
    assert pool.checkout(C)[0] is conn


# -- heap, origins, statistics -------------------------------------------------


def test_heap_stays_bounded_over_many_cycles() -> None:
    idle = 10
    pool = Pool(max_connections=100, max_idle=idle)
    conns = [pool.open(key) for key in (A, B) for _ in range(idle // 2)]
    now = 0.0
    for conn in conns:
        pool.release(conn, now=now)
    peak = 0
    for i in range(5000):
        now += 0.001
        key = (A, B)[i % 2]
        conn, _ = pool.checkout(key, now=now)
        assert isinstance(conn, PooledConnection)
        pool.release(conn, now=now)
        peak = max(peak, len(pool.state._heap))
        assert len(pool.state._heap) < 2 * idle + 65
    assert peak > idle  # stale entries did pile up and were compacted
    assert pool.state.idle_count == idle
    assert pool.state.next_deadline() == min(c.lifetime.idle_deadline for c in conns)


def test_heap_entries_of_idle_connections_survive_compaction() -> None:
    pool = Pool(max_connections=200, max_idle=200)
    conns = [pool.open(A) for _ in range(100)]
    for i, conn in enumerate(conns):
        pool.release(conn, now=i / 100)
    for _ in range(99):  # leave 99 stale entries
        assert isinstance(pool.checkout(A, now=1.0)[0], PooledConnection)
    survivor = pool.state.origin(A).idle[0]
    pool.state._compact_heap()
    assert [entry[2] for entry in pool.state._heap] == [survivor]
    to_close: list[PooledConnection] = []
    pool.state.evict_expired(1e9, to_close)
    assert to_close == [survivor]


def test_max_origins_forgets_origins_without_connections() -> None:
    pool = Pool(max_origins=2)
    keep = pool.open(A)  # stays active: A must never be forgotten
    for i in range(20):
        key = (b"http", f"h{i}.example".encode(), 80)
        conn = pool.open(key)
        pool.release(conn, hint=KeepAlive(5.0, 0))  # retired by max
    assert len(pool.state.origins) <= 3
    assert A in pool.state.origins
    stats = pool.state.statistics()
    assert stats.connections_opened == 21
    assert stats.requests == 21
    assert stats.retired_by_max == 20
    assert stats.open == 1 == stats.active
    assert stats.open == sum(o.open for o in stats.origins.values())
    pool.release(keep, reusable=False)
    assert pool.state.open_count == 0


def test_max_origins_never_forgets_the_origin_just_created() -> None:
    pool = Pool(max_origins=1)
    pool.open(A)  # A keeps a connection open
    origin_b = pool.state.origin(B)
    assert pool.state.origin(B) is origin_b
    assert B in pool.state.origins


def test_origins_vacant_for_forget_after_are_forgotten() -> None:
    pool = Pool()
    pool.release(pool.open(A), reusable=False)  # A loses its connection at 0
    kept = pool.open(B)
    pool.release(kept, hint=KeepAlive(None, None))  # B keeps an idle one
    pool.now = 10.0
    pool.state.origin(C)  # C never gets a connection
    assert list(pool.state.vacant) == [A, C]
    assert pool.state.next_forget() == FORGET_AFTER
    pool.state.forget_vacant(FORGET_AFTER - 0.5)
    assert set(pool.state.origins) == {A, B, C}
    pool.state.forget_vacant(FORGET_AFTER)
    assert set(pool.state.origins) == {B, C}  # B has a connection: remembered
    assert pool.state.next_forget() == 10.0 + FORGET_AFTER
    pool.state.forget_vacant(1e9)
    assert set(pool.state.origins) == {B}
    assert pool.state.next_forget() == math.inf
    assert pool.state.statistics().connections_opened == 2  # totals keep A


def test_an_origin_in_use_again_is_no_longer_vacant() -> None:
    pool = Pool()
    pool.release(pool.open(A), reusable=False)
    pool.now = 100.0
    conn = pool.open(A)
    assert A not in pool.state.vacant
    pool.state.forget_vacant(1e9)
    assert A in pool.state.origins
    pool.now = 200.0
    pool.release(conn, reusable=False)
    assert pool.state.vacant[A] == 200.0


def test_origins_beyond_max_origins_go_once_their_connections_end() -> None:
    # Four origins busy at once with max_origins=2: all four are kept while
    # they have connections; when they go vacant the oldest vacancies go at
    # the next reaper pass, without waiting for a new origin to arrive.
    pool = Pool(max_origins=2)
    keys = [(b"http", f"h{i}.example".encode(), 80) for i in range(4)]
    conns = [pool.open(key) for key in keys]
    assert len(pool.state.origins) == 4
    for i, conn in enumerate(conns):
        pool.now = float(i)
        pool.release(conn, reusable=False)
    pool.state.forget_vacant(pool.now)
    assert list(pool.state.origins) == keys[2:]


def test_origin_label() -> None:
    assert origin_label(A) == "http://a.example:80"
    assert origin_label(C) == "https://c.example:443"
    assert origin_label((b"http", b"::1", 8000)) == "http://[::1]:8000"
    assert origin_label((b"http", b"\xff", 1)) == "http://\ufffd:1"


def test_statistics_per_origin_and_totals() -> None:
    pool = Pool(max_connections=10)
    hint = KeepAlive(5.0, 7)
    a1, a2, b1 = pool.open(A), pool.open(A), pool.open(B)
    pool.release(a1, hint=hint)
    pool.release(b1, reusable=False)
    pool.checkout(C)  # a reserved slot counts as open and active
    pool.state.origin(A).last_hint = hint  # the pool records it there
    stats = pool.state.statistics()
    assert set(stats.origins) == {
        "http://a.example:80",
        "http://b.example:8080",
        "https://c.example:443",
    }
    a = stats.origins["http://a.example:80"]
    assert (a.open, a.idle, a.active) == (2, 1, 1)
    assert a.last_hint == hint
    assert a.learned_timeout is None
    b = stats.origins["http://b.example:8080"]
    assert (b.open, b.idle, b.active, b.connections_opened) == (0, 0, 0, 1)
    c = stats.origins["https://c.example:443"]
    assert (c.open, c.idle, c.active, c.connections_opened) == (1, 0, 1, 0)
    assert (stats.open, stats.idle, stats.active, stats.waiting) == (3, 1, 2, 0)
    _check_statistics(pool.state)
    assert a2.lifetime.state is State.ACTIVE


_COUNTERS = (
    "connections_opened",
    "requests",
    "reused",
    "retired_by_max",
    "expired",
    "evicted",
    "closed_by_server",
)


def _check_statistics(state: PoolState, forgotten: bool = False) -> None:
    stats = state.statistics()
    assert stats.open == state.open_count
    assert stats.idle == state.idle_count
    assert stats.open == stats.idle + stats.active
    assert stats.waiting == sum(not w.cancelled for w in state.waiters)
    for label, origin in stats.origins.items():
        assert label.count("://") == 1
        assert origin.open == origin.idle + origin.active
        assert origin.idle >= 0
        assert origin.active >= 0
        assert origin.reused <= origin.requests
        assert origin.requests >= origin.connections_opened
    if not forgotten:
        assert stats.open == sum(o.open for o in stats.origins.values())
        assert stats.idle == sum(o.idle for o in stats.origins.values())
        for name in _COUNTERS:
            assert getattr(stats, name) == sum(
                getattr(o, name) for o in stats.origins.values()
            ), name


# -- the state machine ---------------------------------------------------------

# A is drawn twice as often, so that connections get reused.
KEYS = (A, A, B, C)

hints = st.none() | st.builds(
    KeepAlive,
    st.sampled_from([None, None, 0.0, 1.0, 2.0, 5.0, 5.0, 30.0, 1000.0]),
    st.sampled_from([None, None, None, 0, 1, 3, 10]),
)

#: What happens in a slot just reserved: connect (True), connect fails
#: (False), or nothing yet (None: the ``connect`` rule does it later).
connects = st.sampled_from([True, True, True, None, False])


class PoolMachine(RuleBasedStateMachine):
    """Drives PoolState the way the pool does, keeping its own model."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        # Connections in use: a request is in flight on each.
        self.active: list[PooledConnection] = []
        # Slots reserved for a connection not yet opened.
        self.reserved: list[OriginState] = []
        # Waiters queued and not yet assigned, in arrival order.
        self.queued: list[FakeWaiter] = []
        # Waiters assigned something they have not taken yet.
        self.assigned: list[FakeWaiter] = []
        self.closed: set[int] = set()  # ids of connections closed (pinned below)
        self.all_conns: list[PooledConnection] = []
        self.opened = 0
        self.plain_closes = 0
        # Connections out (active or handed to a waiter) when the pool was
        # closed: never to be reused.
        self.doomed: set[int] = set()
        self.reuses = 0

    @initialize(
        max_connections=st.sampled_from([1, 2, 2, 3, 4, 6]),
        max_idle=st.sampled_from([0, 1, 2, 3, 3]),
        expiry=st.sampled_from([None, 0.0, 1.0, 3.0, 5.0, 5.0]),
        margin=st.sampled_from([0.0, 1.0]),
    )
    def setup(
        self, max_connections: int, max_idle: int, expiry: float | None, margin: float
    ) -> None:
        self.pool = Pool(
            max_connections=max_connections,
            max_idle=max_idle,
            policy=LifetimePolicy(
                margin=margin, max_timeout=10.0, keepalive_expiry=expiry
            ),
        )
        self.state = self.pool.state

    # -- helpers ---------------------------------------------------------------

    def idle_conns(self) -> list[PooledConnection]:
        return [c for o in self.state.origins.values() for c in o.idle]

    def run(self, action: Any) -> Any:
        """Call into the state; check what came out and who got assigned."""
        live_before = [w for w in self.queued if not w.cancelled]
        to_close: list[PooledConnection] = []
        result = action(to_close)
        if to_close:
            event(f"closed {len(to_close)} connection(s) in one call")
        for conn in to_close:
            assert conn.lifetime.state in FINAL_STATES, conn
            assert id(conn) not in self.closed, "closed twice"
            self.closed.add(id(conn))
            assert conn not in self.active
        newly = [w for w in self.queued if w.assigned]
        self.check_served(live_before, newly)
        for waiter in newly:
            event(f"waiter assigned {type(waiter.result).__name__}")
            assert waiter.times_assigned == 1
            self.queued.remove(waiter)
            self.assigned.append(waiter)
            if waiter.result is not RESERVED:
                conn = waiter.result
                assert isinstance(conn, PooledConnection)
                assert conn.origin.key == waiter.key
                assert conn.lifetime.state is State.IDLE
        self.queued = [w for w in self.queued if not w.cancelled]
        return result

    def check_served(
        self, live_before: list[FakeWaiter], newly: list[FakeWaiter]
    ) -> None:
        # FIFO: the waiters served are the first live ones, in order.
        assert newly == live_before[: len(newly)]

    def took(self, conn: PooledConnection, before: State, deadline: float) -> None:
        """``conn`` was handed out for a new request."""
        assert before is State.IDLE
        assert id(conn) not in self.doomed, "reused after the pool was closed"
        assert self.now < deadline
        assert conn.lifetime.requests_left != 0
        assert not conn.lifetime.will_close
        assert conn.connection not in self.pool.hung_up
        assert conn.lifetime.state is State.ACTIVE
        assert conn not in self.active
        assert id(conn) not in self.closed
        self.active.append(conn)
        self.reuses += 1

    # -- actions (called by the rules below) ---------------------------------

    def _checkout(self, key: OriginKey, connect: bool | None = None) -> Any:
        """A request arrives. ``connect``: open (True) or fail (False) at once
        in a reserved slot. Returns the checkout result or the queued waiter."""
        origin = self.state.origin(key)
        stack = list(origin.idle)
        snapshot = {id(c): (c.lifetime.state, c.lifetime.idle_deadline) for c in stack}
        result = self.run(
            lambda to_close: self.state.checkout(origin, self.now, to_close)
        )
        event(f"checkout -> {result!r:.16}")
        if isinstance(result, PooledConnection):
            assert id(result) in snapshot
            # LIFO: it was the top usable one; those above it were dropped.
            position = max(i for i, c in enumerate(stack) if c is result)
            assert all(id(c) in self.closed for c in stack[position + 1 :])
            self.took(result, *snapshot[id(result)])
            return result
        if result is RESERVED:
            self.reserved.append(origin)
            if connect is not None:
                self._connect(len(self.reserved) - 1, fail=not connect)
            return result
        assert result is WAIT
        waiter = FakeWaiter(key)
        self.state.waiters.append(waiter)
        self.queued.append(waiter)
        return waiter

    def _connect(self, pick: int, fail: bool) -> None:
        origin = self.reserved.pop(pick % len(self.reserved))
        if fail:
            self.run(lambda to_close: self.state.release_slot(origin))
            return
        conn = PooledConnection(origin, object())
        self.state.connection_opened(conn)
        assert conn.lifetime.state is State.ACTIVE
        self.all_conns.append(conn)
        self.opened += 1
        self.active.append(conn)

    def _release(
        self,
        pick: int,
        hint: KeepAlive | None,
        will_close: bool,
        reusable: bool,
        read_headers: bool,
    ) -> None:
        conn = self.active.pop(pick % len(self.active))
        if read_headers:
            conn.lifetime.response_headers(hint, will_close)
        self.run(
            lambda to_close: self.state.release(conn, self.now, reusable, to_close)
        )
        event(f"release -> {conn.lifetime.state.value}")
        if not reusable:
            assert id(conn) in self.closed
            lifetime = conn.lifetime
            if lifetime.will_close or lifetime.requests_left == 0:
                # The server had announced the end: retired, not just closed.
                assert lifetime.state is State.RETIRED
            else:
                assert lifetime.state is State.CLOSED
                self.plain_closes += 1
        elif id(conn) in self.doomed:
            assert id(conn) in self.closed, "reused after the pool was closed"
            if conn.lifetime.state is State.CLOSED:
                self.plain_closes += 1
        if conn.lifetime.state is State.IDLE:
            assert conn.lifetime.idle_deadline > self.now
            assert conn.lifetime.idle_since == self.now

    def _abandon(self, waiter: FakeWaiter) -> None:
        event(f"abandon a waiter holding {waiter.result!r:.16}")
        if waiter in self.assigned:
            self.assigned.remove(waiter)
        doomed = waiter.assigned and id(waiter.result) in self.doomed
        self.run(lambda to_close: self.state.abandon(waiter, to_close))
        if doomed:
            self.plain_closes += 1
        assert waiter.cancelled
        assert waiter not in self.queued

    # -- rules -----------------------------------------------------------------
    #
    # No preconditions: with them Hypothesis mostly drew the always-enabled
    # rules and the pool hardly ever served a request. A rule with nothing to
    # act on makes a whole request instead (Hypothesis' swarm testing often
    # enables only a few rules per run); ``pick`` chooses by index.

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 11.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(key=st.sampled_from(KEYS), connect=connects)
    def checkout(self, key: OriginKey, connect: bool | None) -> None:
        self._checkout(key, connect)

    @rule(
        key=st.sampled_from(KEYS),
        hint=hints,
        will_close=st.sampled_from([False, False, False, True]),
    )
    def request(self, key: OriginKey, hint: KeepAlive | None, will_close: bool) -> None:
        """The common case in one step: check out, send, read, release."""
        self._request(key, hint, will_close)

    def _request(
        self, key: OriginKey, hint: KeepAlive | None = None, will_close: bool = False
    ) -> None:
        result = self._checkout(key, connect=True)
        if isinstance(result, FakeWaiter):
            # No slot: this request's pool timeout is 0, it gives up at once.
            self._abandon(result)
        elif self.active and self.active[-1].origin.key == key:
            self._release(len(self.active) - 1, hint, will_close, True, True)

    @rule(pick=st.integers(0, 99), fail=st.sampled_from([False, False, True]))
    def connect(self, pick: int, fail: bool) -> None:
        """A reserved slot gets its connection, or the connect fails."""
        if self.reserved:
            self._connect(pick, fail)
        else:
            self._request(KEYS[pick % 4])

    @rule(
        pick=st.integers(0, 99),
        hint=hints,
        will_close=st.sampled_from([False, False, False, True]),
        reusable=st.sampled_from([True, True, True, False]),
        read_headers=st.sampled_from([True, True, False]),
    )
    def release(
        self,
        pick: int,
        hint: KeepAlive | None,
        will_close: bool,
        reusable: bool,
        read_headers: bool,
    ) -> None:
        """The response on an active connection was closed."""
        if self.active:
            self._release(pick, hint, will_close, reusable, read_headers)
        else:
            self._request(KEYS[pick % 4])

    @rule(pick=st.integers(0, 99))
    def discard(self, pick: int) -> None:
        """An active connection failed."""
        if not self.active:
            self._request(KEYS[pick % 4])
            return
        conn = self.active.pop(pick % len(self.active))
        self.run(lambda to_close: self.state.discard(conn, to_close))
        assert id(conn) in self.closed
        self.plain_closes += 1

    @rule(pick=st.integers(0, 99))
    def server_hangs_up(self, pick: int) -> None:
        """The server closes an idle (or handed-over) connection."""
        candidates = self.idle_conns() + [
            w.result for w in self.assigned if isinstance(w.result, PooledConnection)
        ]
        if candidates:
            self.pool.hung_up.add(candidates[pick % len(candidates)].connection)

    @rule(pick=st.integers(0, 99), connect=connects)
    def waiter_wakes(self, pick: int, connect: bool | None) -> None:
        """An assigned waiter takes what it was given."""
        if not self.assigned:
            if self.queued and self.active:
                # Feed the queue: a response ends, on a connection to the
                # first waiter's origin when there is one.
                same = [
                    i
                    for i, c in enumerate(self.active)
                    if c.origin.key == self.queued[0].key
                ]
                self._release(same[0] if same else pick, None, False, True, True)
            else:
                # Fill the pool: a request that holds its connection.
                self._checkout(KEYS[pick % 4], connect=True)
            return
        waiter = self.assigned.pop(pick % len(self.assigned))
        result = waiter.result
        if result is RESERVED:
            self.reserved.append(self.state.origin(waiter.key))
            if connect is not None:
                self._connect(len(self.reserved) - 1, fail=not connect)
        elif isinstance(result, PooledConnection):
            before = (result.lifetime.state, result.lifetime.idle_deadline)
            got = self.run(
                lambda to_close: self.state.claim(result, self.now, to_close)
            )
            event(f"claim -> {got!r:.16}")
            if got is RESERVED:
                assert id(result) in self.closed
                if id(result) in self.doomed:
                    self.plain_closes += 1
                self.reserved.append(self.state.origin(waiter.key))
                if connect is not None:
                    self._connect(len(self.reserved) - 1, fail=not connect)
            else:
                assert got is result
                self.took(result, *before)
        else:
            raise AssertionError(f"a waiter was given {result!r}")

    @rule(pick=st.integers(0, 99))
    def waiter_gives_up(self, pick: int) -> None:
        """A queued or assigned waiter times out or is cancelled."""
        waiters = self.queued + self.assigned
        if waiters:
            self._abandon(waiters[pick % len(waiters)])
        else:
            self._checkout(KEYS[pick % 4], connect=True)

    @rule()
    def reaper(self) -> None:
        deadline = self.state.next_deadline()
        idle = self.idle_conns()
        assert deadline == min(
            (c.lifetime.idle_deadline for c in idle), default=math.inf
        )
        expired = {id(c) for c in idle if c.lifetime.idle_deadline <= self.now}
        self.run(lambda to_close: self.state.evict_expired(self.now, to_close))
        assert expired <= self.closed
        assert all(c.lifetime.idle_deadline > self.now for c in self.idle_conns())

    @rule(dice=st.integers(0, 29))
    def close_all(self, dice: int) -> None:
        """Pool shutdown, now and then (it empties the pool)."""
        if dice != 17:
            return
        # The pool stays usable; queued waiters keep waiting for the slots
        # the connections still out will free.
        idle = {id(c) for c in self.idle_conns()}
        self.run(lambda to_close: self.state.close_all(to_close))
        assert idle <= self.closed
        self.plain_closes += len(idle)
        assert self.state.idle_count == 0
        self.doomed |= {id(c) for c in self.active}
        self.doomed |= {
            id(w.result)
            for w in self.assigned
            if isinstance(w.result, PooledConnection)
        }

    def teardown(self) -> None:
        if hasattr(self, "state"):
            stats = self.state.statistics()
            for name in ("expired", "evicted", "closed_by_server", "retired_by_max"):
                if getattr(stats, name):
                    event(f"statistics: some {name}")

    # -- invariants ------------------------------------------------------------

    @invariant()
    def counts_add_up(self) -> None:
        if not hasattr(self, "state"):
            return
        state = self.state
        origins = state.origins.values()
        assert set(state.vacant) == {o.key for o in origins if not o.open}
        assert state.open_count == sum(o.open for o in origins)
        assert state.idle_count == sum(len(o.idle) for o in origins)
        assert 0 <= state.idle_count <= state.max_idle
        assert 0 <= state.open_count <= state.max_connections
        pending = sum(
            w.result is RESERVED or isinstance(w.result, PooledConnection)
            for w in self.assigned
        )
        assert state.open_count == (
            len(self.active) + len(self.reserved) + state.idle_count + pending
        )
        for origin in origins:
            assert origin.open >= len(origin.idle)
            expected = (
                sum(c.origin is origin for c in self.active)
                + sum(o is origin for o in self.reserved)
                + len(origin.idle)
                + sum(
                    w.key == origin.key
                    and (w.result is RESERVED or isinstance(w.result, PooledConnection))
                    for w in self.assigned
                )
            )
            assert origin.open == expected

    @invariant()
    def idle_connections_are_sane(self) -> None:
        if not hasattr(self, "state"):
            return
        idle = self.idle_conns()
        ids = {id(c) for c in idle}
        assert len(ids) == len(idle)
        handed = {id(c) for c in self.active} | {
            id(w.result)
            for w in self.assigned
            if isinstance(w.result, PooledConnection)
        }
        assert not ids & handed, "a connection both idle and handed out"
        assert not ids & self.closed
        assert not handed & self.closed
        heap = {(seq, id(conn)) for _, seq, conn in self.state._heap}
        for conn in idle:
            assert conn.lifetime.state is State.IDLE
            assert conn.origin.idle.count(conn) == 1
            assert (conn.heap_seq, id(conn)) in heap
            assert conn.lifetime.requests_left != 0
        for conn in self.active:
            assert conn.lifetime.state is State.ACTIVE
        assert len(self.state._heap) <= 2 * self.state.max_idle + 65

    @invariant()
    def no_idle_connection_while_a_live_waiter_is_queued(self) -> None:
        if not hasattr(self, "state"):
            return
        live = [w for w in self.state.waiters if not w.cancelled]
        assert live == [w for w in self.queued if not w.cancelled]
        assert all(not w.assigned for w in live)
        if live:
            assert self.state.idle_count == 0
            # Waiters queue only when the pool is full, and every freed slot
            # goes to the queue first.
            assert self.state.open_count >= self.state.max_connections

    @invariant()
    def statistics_add_up(self) -> None:
        if not hasattr(self, "state"):
            return
        _check_statistics(self.state)
        stats = self.state.statistics()
        assert stats.connections_opened == self.opened
        assert stats.requests == sum(c.lifetime.requests_served for c in self.all_conns)
        assert stats.reused == stats.requests - stats.connections_opened
        retired = sum(
            c.lifetime.retired_by_max for c in self.all_conns if id(c) in self.closed
        )
        assert stats.retired_by_max == retired
        assert stats.expired == sum(
            c.lifetime.state is State.EXPIRED for c in self.all_conns
        )
        # Every CLOSED connection was evicted, found closed by the server, or
        # closed by the driver (not reusable, discarded, pool closed).
        assert sum(c.lifetime.state is State.CLOSED for c in self.all_conns) == (
            stats.evicted + stats.closed_by_server + self.plain_closes
        )


PoolMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolMachine = PoolMachine.TestCase
