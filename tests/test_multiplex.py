"""A Hypothesis state machine over the HTTP/2 bookkeeping (``_multiplex``
with ``_state``), without sockets: connections are fakes with a stream limit
and a GOAWAY flag; the clock is a FakeClock.

Invariants: a connection is never closed while a stream is open on it;
``streams`` equals the requests in flight on it; a connection with no stream
is idle (on the stack and the heap) or closed; the ``shared`` sets hold only
connections with a free stream; ``open_count`` counts connections,
not streams; no stream goes on a connection after its GOAWAY; while a
request of an origin waits, that origin shares no connection (a free stream
goes to the oldest waiter, not to a newcomer).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from hintpool._multiplex import first_stream, handed_stream, stream_done, take_stream
from hintpool._policy import LifetimePolicy, State
from hintpool._state import FORGET_AFTER, RESERVED, WAIT, PooledConnection, PoolState

from .clock import FakeClock
from .test_state import FakeWaiter

KEYS = [(b"https", b"a.test", 443), (b"https", b"b.test", 443)]


class FakeH2:
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self.goaway: Any = None
        self.announced_streams: int | None = max_streams
        self.assumed_streams: int | None = None

    def is_available(self) -> bool:
        return self.goaway is None


class Multiplexing(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.state = PoolState(
            max_connections=3,
            max_idle=2,
            policy=LifetimePolicy(keepalive_expiry=5.0),
            # An idle connection that received GOAWAY polls readable.
            server_closed=lambda conn: conn.connection.goaway is not None,
        )
        self.in_flight: list[PooledConnection] = []
        # A dict, not a set: the rules pick by position, the same each run.
        self.live: dict[PooledConnection, None] = {}
        self.sent_after_goaway = 0
        self.over_the_limit = 0
        self.waiting: list[tuple[FakeWaiter, int]] = []
        # Waiters handed a stream, checked when it was handed: the server may
        # lower its limit or send GOAWAY before the waiter runs, and then the
        # connection itself holds the request back or refuses it (sent again).
        self.handed: set[int] = set()

    def _closed(self, to_close: list[PooledConnection]) -> None:
        for conn in to_close:
            assert conn.streams == 0, "closed with a stream open"
            self.live.pop(conn, None)

    @rule(key=st.sampled_from(KEYS), limit=st.sampled_from([1, 2, 3, 100]))
    def request(self, key: Any, limit: int) -> None:
        state, to_close = self.state, []
        origin = state.origin(key)
        conn = take_stream(state, origin)
        if conn is None:
            result = state.checkout(origin, self.clock(), to_close)
            if result is WAIT:
                waiter = FakeWaiter(key)
                state.queue(waiter, origin)
                self.waiting.append((waiter, limit))
            else:
                conn = self._take(origin, result, limit)
        self._closed(to_close)
        if conn is not None:
            self._sent(conn)

    def _take(self, origin: Any, result: Any, limit: int) -> PooledConnection:
        if result is RESERVED:
            conn = PooledConnection(origin, FakeH2(limit))
            self.state.connection_opened(conn)
            self.live[conn] = None
        else:
            conn = result
        first_stream(self.state, conn)
        return conn

    def _sent(self, conn: PooledConnection) -> None:
        self._check_stream(conn)
        self.in_flight.append(conn)

    def _check_stream(self, conn: PooledConnection) -> None:
        """The pool gave a stream of ``conn``: within its limit, no GOAWAY."""
        if conn.connection.goaway is not None:
            self.sent_after_goaway += 1
        if conn.streams > conn.connection.max_streams:
            self.over_the_limit += 1

    @rule(pick=st.integers(0, 50))
    def waiter_wakes(self, pick: int) -> None:
        ready = [w for w in self.waiting if w[0].assigned]
        if not ready:
            return
        waiter, limit = ready[pick % len(ready)]
        self.waiting.remove((waiter, limit))
        state, to_close = self.state, []
        result = waiter.result
        if isinstance(result, PooledConnection) and handed_stream(result):
            self.handed.discard(id(waiter))
            self.in_flight.append(result)  # checked when it was handed
            return
        if isinstance(result, PooledConnection):
            result = state.claim(result, self.clock(), to_close)
        self._closed(to_close)
        self._sent(self._take(state.origin(waiter.key), result, limit))

    @rule(pick=st.integers(0, 50))
    def waiter_gives_up(self, pick: int) -> None:
        if not self.waiting:
            return
        waiter, _ = self.waiting.pop(pick % len(self.waiting))
        self.handed.discard(id(waiter))
        to_close: list[PooledConnection] = []
        self.state.abandon(waiter, to_close)
        self._closed(to_close)

    @rule(pick=st.integers(0, 50))
    def stream_ends(self, pick: int) -> None:
        if not self.in_flight:
            return
        conn = self.in_flight.pop(pick % len(self.in_flight))
        to_close: list[PooledConnection] = []
        stream_done(self.state, conn, self.clock(), to_close)
        self._closed(to_close)

    @rule(pick=st.integers(0, 50))
    def goaway(self, pick: int) -> None:
        live = list(self.live)
        if live:
            live[pick % len(live)].connection.goaway = object()

    @rule(pick=st.integers(0, 50), limit=st.sampled_from([1, 2]))
    def server_lowers_its_limit(self, pick: int, limit: int) -> None:
        live = list(self.live)
        if live:
            live[pick % len(live)].connection.max_streams = limit

    @rule(dt=st.sampled_from([0.5, 2.0, 6.0]))
    def time_passes(self, dt: float) -> None:
        self.clock.advance(dt)
        to_close: list[PooledConnection] = []
        self.state.evict_expired(self.clock(), to_close)
        self._closed(to_close)

    @invariant()
    def bookkeeping_adds_up(self) -> None:
        state = self.state
        for waiter, _ in self.waiting:
            conn = waiter.result
            if (
                isinstance(conn, PooledConnection)
                and id(waiter) not in self.handed
                and handed_stream(conn)
            ):
                self.handed.add(id(waiter))
                self._check_stream(conn)
        assert self.sent_after_goaway == 0
        assert self.over_the_limit == 0
        # A slot handed to a waiter is counted before the waiter opens it.
        slots = [w.key for w, _ in self.waiting if w.result is RESERVED]
        assert state.open_count == len(self.live) + len(slots)
        assert state.idle_count == sum(1 for c in self.live if c.heap_seq >= 0)
        for conn in self.live:
            holders = sum(1 for w, _ in self.waiting if w.result is conn)
            if conn.streams == 0 and holders:
                assert holders == 1  # handed over idle, off the idle stack
                assert conn.heap_seq < 0
                continue
            # A stream handed to a waiter is counted before the waiter runs.
            assert conn.streams == self.in_flight.count(conn) + holders
            if conn.streams == 0:
                assert conn.heap_seq >= 0
                assert conn.lifetime.state is State.IDLE
            else:
                assert conn.lifetime.state is State.ACTIVE
        for origin in state.origins.values():
            for conn in origin.shared:  # GOAWAY'd ones leave it lazily
                assert conn in self.live
            opened = sum(1 for c in self.live if c.origin is origin)
            assert origin.open == opened + slots.count(origin.key)
            if state.waiters.has_waiter(origin.key):
                assert not any(
                    c.streams < c.connection.max_streams and not c.goaway
                    for c in origin.shared
                ), "a free stream left to newcomers while a request waits"


TestMultiplexing = Multiplexing.TestCase


def _full_pool(
    limit: int,
) -> tuple[PoolState, PooledConnection, list[PooledConnection]]:
    """One connection slot, taken by an HTTP/2 connection at its stream limit."""
    state = PoolState(
        max_connections=1,
        max_idle=1,
        policy=LifetimePolicy(keepalive_expiry=5.0),
        server_closed=lambda conn: False,
    )
    origin = state.origin(KEYS[0])
    assert state.checkout(origin, 0.0, []) is RESERVED
    conn = PooledConnection(origin, FakeH2(limit))
    state.connection_opened(conn)
    first_stream(state, conn)
    while take_stream(state, origin) is not None:
        pass
    assert conn.streams == limit
    return state, conn


def _wait(state: PoolState) -> FakeWaiter:
    origin = state.origin(KEYS[0])
    assert take_stream(state, origin) is None
    assert state.checkout(origin, 0.0, []) is WAIT
    waiter = FakeWaiter(KEYS[0])
    state.queue(waiter, origin)
    return waiter


def test_a_freed_stream_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    state, conn = _full_pool(2)
    first, second = _wait(state), _wait(state)
    stream_done(state, conn, 1.0, [])
    assert first.result is conn and handed_stream(conn)
    assert not second.assigned
    assert conn.streams == 2  # counted for the waiter before it runs
    # A request arriving now queues behind the second waiter.
    third = _wait(state)
    stream_done(state, conn, 2.0, [])
    assert second.result is conn
    assert not third.assigned
    assert not state.origin(KEYS[0]).shared
    assert state.totals.requests == 4


def test_a_waiter_that_gives_up_hands_its_stream_on() -> None:
    state, conn = _full_pool(2)
    first, second = _wait(state), _wait(state)
    stream_done(state, conn, 1.0, [])
    assert first.result is conn
    state.abandon(first, [])
    assert second.result is conn
    assert conn.streams == 2
    state.abandon(second, [])
    assert conn.streams == 1
    assert conn in state.origin(KEYS[0]).shared  # nobody waits any more


def test_a_new_connection_serves_the_waiters_before_it_is_shared() -> None:
    state, conn = _full_pool(1)
    waiters = [_wait(state) for _ in range(3)]
    stream_done(state, conn, 1.0, [])  # idle: handed whole to the oldest
    assert waiters[0].result is conn and not handed_stream(conn)
    conn.connection.max_streams = 3  # the server's SETTINGS raise the limit
    assert state.claim(conn, 1.0, []) is conn
    first_stream(state, conn)
    assert [w.result for w in waiters] == [conn, conn, conn]
    assert conn.streams == 3
    assert not state.origin(KEYS[0]).shared


def test_a_vacant_origin_keeps_its_stream_limit_until_forgotten() -> None:
    """The limit lives and goes with the origin's other state (as a learned
    timeout does): kept while the origin has no connection, gone once it is
    forgotten, FORGET_AFTER seconds later."""
    clock = FakeClock()
    state = PoolState(
        max_connections=2,
        max_idle=2,
        policy=LifetimePolicy(keepalive_expiry=5.0),
        server_closed=lambda conn: False,
        clock=clock,
    )
    origin = state.origin(KEYS[0])
    assert state.checkout(origin, clock(), []) is RESERVED
    conn = PooledConnection(origin, FakeH2(10))
    state.connection_opened(conn)
    first_stream(state, conn)
    stream_done(state, conn, clock(), [])  # SETTINGS read: 10 streams
    clock.advance(6.0)
    to_close: list[PooledConnection] = []
    state.evict_expired(clock(), to_close)
    assert to_close == [conn] and KEYS[0] in state.vacant
    assert state.origin(KEYS[0]).max_streams == 10
    later = FakeH2(100)
    later.announced_streams = None  # its SETTINGS not read yet
    assert state.checkout(origin, clock(), []) is RESERVED
    again = PooledConnection(origin, later)
    state.connection_opened(again)
    first_stream(state, again)
    assert later.assumed_streams == 10
    stream_done(state, again, clock(), [])
    clock.advance(6.0)
    state.evict_expired(clock(), [])
    clock.advance(FORGET_AFTER + 1.0)
    state.forget_vacant(clock())
    assert state.origin(KEYS[0]).max_streams is None
