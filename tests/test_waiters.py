"""Per-origin caps and fair waiting (``hintpool._waiters``, ``_state``).

Pure: the bookkeeping driven by hand, and the stateful machine of
``tests/test_state.py`` run again with a cap, checking after every step that
no waiter was passed over by one that could not have used what it got, and
that no request waits while it could be served.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant

from hintpool._policy import LifetimePolicy
from hintpool._state import RESERVED, WAIT, OriginKey, PooledConnection

from .test_state import A, B, C, FakeWaiter, Pool, PoolMachine

D: OriginKey = (b"http", b"d.example", 80)


def test_cap_makes_the_origin_wait_but_not_the_others() -> None:
    pool = Pool(max_connections=10, max_per_origin=2)
    pool.open(A)
    pool.open(A)
    waiter = pool.wait(A)  # A is at its cap, the pool is not full
    assert pool.checkout(B)[0] is RESERVED  # B does not queue behind A
    assert pool.state.origin(A).open == 2
    assert pool.state.statistics().waiting == 1
    assert not waiter.assigned


def test_new_request_for_an_origin_with_waiters_queues_behind_them() -> None:
    pool = Pool(max_connections=10, max_per_origin=1)
    conn = pool.open(A)
    first = pool.wait(A)
    second = pool.wait(A)
    pool.release(conn)
    assert first.result is conn
    assert not second.assigned  # FIFO within the origin


def test_freed_slot_goes_to_the_oldest_waiter_that_can_use_it() -> None:
    pool = Pool(max_connections=2, max_per_origin=1)
    conn_a, conn_b = pool.open(A), pool.open(B)
    wait_a = pool.wait(A)  # A at its cap
    wait_c = pool.wait(C)  # the pool is full
    wait_b = pool.wait(B)
    pool.release(conn_b, reusable=False)
    # wait_a is older but A is still at its cap; wait_c is older than wait_b.
    assert wait_c.result is RESERVED
    assert not wait_a.assigned
    assert not wait_b.assigned
    pool.release(conn_a)
    assert wait_a.result is conn_a  # A's own connection, handed over


def test_idle_connection_makes_way_for_an_older_waiter_of_another_origin() -> None:
    pool = Pool(max_connections=2, max_per_origin=1)
    conn_a, conn_b = pool.open(A), pool.open(B)
    wait_c = pool.wait(C)
    wait_a = pool.wait(A)
    to_close = pool.release(conn_a)
    assert to_close == [conn_a]
    assert wait_c.result is RESERVED
    assert not wait_a.assigned
    # A is below its cap now: the next slot is wait_a's, even B's.
    assert pool.release(conn_b) == [conn_b]
    assert wait_a.result is RESERVED
    assert pool.state.origin(A).open == 1


def test_a_parked_waiter_keeps_its_turn() -> None:
    pool = Pool(max_connections=3, max_per_origin=1)
    conn_a = pool.open(A)
    pool.open(B)
    pool.open(C)
    wait_a = pool.wait(A)
    wait_b = pool.wait(B)
    wait_d = pool.wait(D)  # the scan parks wait_a and wait_b (at their caps)
    assert pool.state.statistics().waiting == 3
    pool.release(conn_a, reusable=False)
    assert wait_a.result is RESERVED  # older than wait_d
    assert not wait_b.assigned
    assert not wait_d.assigned


def test_cancelled_waiters_leave_both_queues() -> None:
    pool = Pool(max_connections=2, max_per_origin=1)
    conn_a = pool.open(A)
    pool.open(B)
    gone_a, gone_c = pool.wait(A), pool.wait(C)
    wait_a = pool.wait(A)
    pool.state.abandon(gone_a, [])
    pool.state.abandon(gone_c, [])
    assert pool.state.statistics().waiting == 1
    assert list(pool.state.waiters) == [wait_a]
    pool.release(conn_a)
    assert wait_a.result is conn_a
    assert not gone_a.assigned and not gone_c.assigned
    assert pool.state.statistics().waiting == 0
    # Nothing kept for origins without waiters (a crawler's come and go).
    assert not pool.state.waiters.has_waiter(A)
    assert not pool.state.waiters.has_waiter(C)
    assert pool.state.waiters._by_origin == {}


def test_abandoned_slot_goes_to_the_next_waiter_of_the_origin() -> None:
    pool = Pool(max_connections=5, max_per_origin=1)
    conn = pool.open(A)
    first, second = pool.wait(A), pool.wait(A)
    pool.release(conn, reusable=False)
    assert first.result is RESERVED
    pool.state.abandon(first, [])
    assert second.result is RESERVED
    assert pool.state.origin(A).open == 1


def test_fresh_connection_at_the_cap_replaces_an_idle_one() -> None:
    pool = Pool(max_connections=5, max_per_origin=1)
    conn = pool.open(A)
    pool.release(conn)
    to_close: list[PooledConnection] = []
    origin = pool.state.origin(A)
    assert pool.state.checkout(origin, 0.5, to_close, fresh=True) is RESERVED
    assert to_close == [conn]
    assert origin.open == 1
    assert pool.state.idle_count == 0
    assert pool.stats(A).evicted == 1


def test_queue_counts_waits_per_origin() -> None:
    pool = Pool(max_connections=1)
    pool.open(A)
    for key in (A, B, B):
        assert pool.checkout(key)[0] is WAIT
        pool.state.queue(FakeWaiter(key), pool.state.origin(key))
    assert (pool.stats(A).waited, pool.stats(B).waited) == (1, 2)
    assert pool.state.statistics().waited == 3


def test_without_a_cap_waiting_is_plain_fifo() -> None:
    pool = Pool(max_connections=1)
    conn = pool.open(A)
    wait_b, wait_a = pool.wait(B), pool.wait(A)
    assert pool.release(conn) == [conn]
    assert wait_b.result is RESERVED
    assert not wait_a.assigned


# -- the state machine, with a cap --------------------------------------------


class CappedPoolMachine(PoolMachine):
    @initialize(
        max_connections=st.sampled_from([2, 3, 4, 6]),
        cap=st.sampled_from([1, 1, 2]),
        max_idle=st.sampled_from([0, 1, 2, 3]),
        expiry=st.sampled_from([None, 1.0, 5.0]),
    )
    def setup(  # type: ignore[override]
        self, max_connections: int, cap: int, max_idle: int, expiry: float | None
    ) -> None:
        self.pool = Pool(
            max_connections=max_connections,
            max_idle=max_idle,
            max_per_origin=cap,
            policy=LifetimePolicy(
                margin=1.0, max_timeout=10.0, keepalive_expiry=expiry
            ),
        )
        self.state = self.pool.state

    def at_cap(self, key: OriginKey) -> bool:
        origin = self.state.origins.get(key)
        return origin is not None and origin.open >= self.state.max_per_origin

    def check_served(
        self, live_before: list[FakeWaiter], newly: list[FakeWaiter]
    ) -> None:
        # Whoever was served, every older waiter still queued could not
        # have used it: another origin, at its cap.
        for waiter in newly:
            for older in live_before[: live_before.index(waiter)]:
                if older.assigned or older.cancelled:
                    continue
                assert older.key != waiter.key, "FIFO within an origin"
                assert self.at_cap(older.key), "passed over a waiter"

    def _checkout(self, key: OriginKey, connect: bool | None = None) -> Any:
        full = (
            self.state.open_count >= self.state.max_connections
            and not self.state.idle_count
        )
        own_queue = any(w.key == key and not w.cancelled for w in self.queued)
        at_cap = self.at_cap(key) and not self.state.origin(key).idle
        result = super()._checkout(key, connect)
        if isinstance(result, FakeWaiter):
            # Waiting only for a reason of its own, never behind another
            # origin's backlog.
            assert full or own_queue or at_cap
        return result

    @invariant()
    def no_idle_connection_while_a_live_waiter_is_queued(self) -> None:
        # Replaced: with a cap, waiters of an origin at its cap wait while
        # other origins' connections are idle or slots are free.
        if not hasattr(self, "state"):
            return
        live = [w for w in self.state.waiters if not w.cancelled]
        assert live == [w for w in self.queued if not w.cancelled]

    @invariant()
    def caps_hold_and_nobody_waits_for_nothing(self) -> None:
        if not hasattr(self, "state"):
            return
        state = self.state
        for origin in state.origins.values():
            assert origin.open <= state.max_per_origin
        for waiter in self.queued:
            if waiter.cancelled or waiter.assigned:
                continue
            origin = state.origins.get(waiter.key)
            assert origin is None or not origin.idle
            if not self.at_cap(waiter.key):
                assert state.open_count == state.max_connections
                assert state.idle_count == 0


TestCappedPoolMachine = CappedPoolMachine.TestCase
TestCappedPoolMachine.settings = settings(max_examples=150, stateful_step_count=60)
