"""A Hypothesis state machine over the HTTP/2 bookkeeping (``_multiplex``
with ``_state``), without sockets: connections are fakes with a stream limit
and a GOAWAY flag; the clock is a FakeClock.

Invariants: a connection is never closed while a stream is open on it;
``streams`` equals the requests in flight on it; a connection with no stream
is idle (on the stack and the heap) or closed; the ``shared`` sets hold only
connections with a free stream; ``open_count`` counts connections,
not streams; no stream goes on a connection after its GOAWAY.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from hintpool._multiplex import first_stream, stream_done, take_stream
from hintpool._policy import LifetimePolicy, State
from hintpool._state import RESERVED, PooledConnection, PoolState

from .clock import FakeClock

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
        self.live: set[PooledConnection] = set()
        self.sent_after_goaway = 0
        self.over_the_limit = 0

    def _closed(self, to_close: list[PooledConnection]) -> None:
        for conn in to_close:
            assert conn.streams == 0, "closed with a stream open"
            self.live.discard(conn)

    @rule(key=st.sampled_from(KEYS), limit=st.sampled_from([1, 2, 3, 100]))
    def request(self, key: Any, limit: int) -> None:
        state, to_close = self.state, []
        origin = state.origin(key)
        conn = take_stream(state, origin)
        if conn is None:
            result = state.checkout(origin, self.clock(), to_close)
            if result is RESERVED:
                conn = PooledConnection(origin, FakeH2(limit))
                state.connection_opened(conn)
                self.live.add(conn)
                first_stream(state, conn)
            elif isinstance(result, PooledConnection):
                conn = result
                first_stream(state, conn)
        self._closed(to_close)
        if conn is not None:
            if conn.connection.goaway is not None:
                self.sent_after_goaway += 1
            if conn.streams > conn.connection.max_streams:
                self.over_the_limit += 1
            self.in_flight.append(conn)

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
        live = sorted(self.live, key=id)
        if live:
            live[pick % len(live)].connection.goaway = object()

    @rule(pick=st.integers(0, 50), limit=st.sampled_from([1, 2]))
    def server_lowers_its_limit(self, pick: int, limit: int) -> None:
        live = sorted(self.live, key=id)
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
        assert self.sent_after_goaway == 0
        assert self.over_the_limit == 0
        assert state.open_count == len(self.live)
        assert state.idle_count == sum(1 for c in self.live if c.heap_seq >= 0)
        for conn in self.live:
            assert conn.streams == self.in_flight.count(conn)
            if conn.streams == 0:
                assert conn.heap_seq >= 0
                assert conn.lifetime.state is State.IDLE
            else:
                assert conn.lifetime.state is State.ACTIVE
        for origin in state.origins.values():
            for conn in origin.shared:  # GOAWAY'd ones leave it lazily
                assert conn in self.live
            assert origin.open == sum(1 for c in self.live if c.origin is origin)


TestMultiplexing = Multiplexing.TestCase
