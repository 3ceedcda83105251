"""A Hypothesis state machine over the REAL async pool, on a scripted network.

``tests/test_state.py`` checks the pure bookkeeping; this one drives
``AsyncConnectionPool`` itself -- httpcore's HTTP/1.1 connection, h11, the
pool's acquire/release/retry/cancel paths -- against the model servers of
``tests.fakenet``, on asyncio and on trio (through an anyio blocking portal:
each rule runs in the event loop thread, then waits until every task is
blocked). Time is a FakeClock shared by the pool and the servers.

Rules: requests (GET, POST, POST with Idempotency-Key) to three origins whose
servers send random hints (timeout, Apache's counted-down max, Connection:
close, lying max, silent idle timeouts, slow responses); reading or dropping
response bodies; clock jumps; server closes whose FIN arrives later (the
keep-alive race) or at once; the reaper's sweep; cancelling requests that
wait for the pool or for headers.

Invariants: no request is written on a connection past its announced
deadline or end (``max=0``, ``Connection: close``); never two requests on one
connection at once; no request processed twice; statistics add up (open =
idle + active = connections not closed, active = responses held + requests
in flight, waiting = requests queued, totals = sum over origins, requests =
requests written, bounds respected); nothing leaks once the pool is closed.
"""

from __future__ import annotations

import contextlib
import itertools
from concurrent.futures import CancelledError, Future
from typing import Any

import anyio
import anyio.from_thread
import httpcore
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from hintpool import AsyncConnectionPool

from .clock import FakeClock
from .fakenet import AsyncFakeNetwork, AsyncFakeStream, Behaviour

HOSTS = ["a.test", "b.test", "c.test"]
HINTS = [
    None,
    None,
    "timeout=5, max={left}",
    "timeout=30",
    "timeout=0",
    "timeout=1",
    "timeout=2",
    "timeout=5",
    "timeout=5, max={left}",
    "max={left}",
    "timeout=30, max={left}",
    "timeout=3;max={left}",
]
behaviours = st.builds(
    Behaviour,
    hint=st.sampled_from(HINTS),
    max_requests=st.sampled_from([None, None, None, 1, 2, 3]),
    close_on_last=st.booleans(),
    close_every=st.sampled_from([False, False, False, True]),
    idle_timeout=st.sampled_from([None, None, 1.5, 3.0, 8.0]),
    slow=st.sampled_from([False, False, False, True]),
    lose_responses=st.sampled_from([False, False, False, True]),
)


class AsyncPoolMachine(RuleBasedStateMachine):
    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.exits = contextlib.ExitStack()
        self.portal = self.exits.enter_context(
            anyio.from_thread.start_blocking_portal(self.backend)
        )
        self.clock = FakeClock()
        self.net = AsyncFakeNetwork(self.clock)
        self.ids = itertools.count(1)
        # Requests whose task has not finished: (future, method).
        self.pending: list[Future[Any]] = []
        # Responses whose headers arrived and whose body is not read yet.
        self.held: list[httpcore.Response] = []
        self.arrived: list[httpcore.Response] = []
        self.errors: list[str] = []
        self.pool: AsyncConnectionPool | None = None

    # -- set-up ------------------------------------------------------------------

    @initialize(
        max_connections=st.sampled_from([1, 2, 3, 5]),
        max_idle=st.sampled_from([0, 1, 2, 4, 4]),
        expiry=st.sampled_from([None, 2.0, 5.0]),
        a=behaviours,
        b=behaviours,
        c=behaviours,
    )
    def setup(
        self,
        max_connections: int,
        max_idle: int,
        expiry: float | None,
        a: Behaviour,
        b: Behaviour,
        c: Behaviour,
    ) -> None:
        self.net.behaviours = dict(zip(HOSTS, (a, b, c)))
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.pool = AsyncConnectionPool(
            network_backend=self.net,
            clock=self.clock,
            max_connections=max_connections,
            max_keepalive_connections=max_idle,
            keepalive_expiry=expiry,
            max_origins=100,
        )
        # The FIN is visible only once the test lets it arrive.
        self.pool._state.server_closed = self.net.fin_visible

    # -- helpers -------------------------------------------------------------------

    def settle(self) -> None:
        """Let every task in the event loop run until all are blocked."""
        self.portal.call(anyio.wait_all_tasks_blocked)
        still = []
        for future in self.pending:
            if not future.done():
                still.append(future)
                continue
            try:
                future.result()
            except CancelledError:
                pass
            except httpcore.PoolTimeout:  # pragma: no cover - no pool timeout
                raise
            except Exception as exc:  # a server fault meant for this request
                event(f"request failed: {type(exc).__name__}")
                self.errors.append(type(exc).__name__)
        self.pending = still
        # A response is taken from where the task left it, not from the
        # future: the portal cancels a task asynchronously, so a request
        # that needed no checkpoint can finish after its future was
        # cancelled, and its response must still be closed.
        self.held += self.arrived
        self.arrived = []

    async def _send(self, method: bytes, url: str, headers: list[Any]) -> Any:
        assert self.pool is not None
        request = httpcore.Request(method, url, headers=headers)
        response = await self.pool.handle_async_request(request)
        self.arrived.append(response)
        return response

    def stream_of(self, response: httpcore.Response) -> AsyncFakeStream:
        stream = response.extensions["network_stream"]
        assert isinstance(stream, AsyncFakeStream)
        return stream

    # -- rules -----------------------------------------------------------------------

    @rule(
        host=st.sampled_from(HOSTS),
        method=st.sampled_from(["GET", "GET", "POST", "POST+key"]),
    )
    def request(self, host: str, method: str) -> None:
        request_id = str(next(self.ids))
        headers = [(b"Host", host.encode()), (b"X-Request-Id", request_id.encode())]
        if method == "POST+key":
            headers.append((b"Idempotency-Key", request_id.encode()))
        if method.startswith("POST"):
            headers.append((b"Content-Length", b"0"))
        url = f"http://{host}/"
        self.pending.append(
            self.portal.start_task_soon(self._send, method[:4].encode(), url, headers)
        )
        self.settle()

    @rule(
        host=st.sampled_from(HOSTS),
        method=st.sampled_from(["GET", "POST", "POST+key"]),
    )
    def whole_request(self, host: str, method: str) -> None:
        """A request whose response is read and closed at once (if it came)."""
        held = len(self.held)
        self.request(host, method)
        if len(self.held) > held:
            self.finish_response(len(self.held) - 1, read=True)

    # No preconditions (Hypothesis' swarm testing then mostly skips rules):
    # a rule with nothing to act on does nothing; ``pick`` chooses by index.

    @rule(pick=st.integers(0, 20), read=st.sampled_from([True, True, True, False]))
    def finish_response(self, pick: int, read: bool) -> None:
        if not self.held:
            return
        event("finish a response" + (" after reading it" if read else " unread"))
        response = self.held.pop(pick % len(self.held))

        async def finish() -> None:
            try:
                if read:
                    await response.aread()
            finally:
                await response.aclose()

        try:
            self.portal.call(finish)
        except Exception as exc:
            self.errors.append(type(exc).__name__)
        self.settle()

    @rule(pick=st.integers(0, 20))
    def cancel_request(self, pick: int) -> None:
        if not self.pending:
            return
        event("cancel a request")
        self.pending[pick % len(self.pending)].cancel()
        self.settle()

    @rule(pick=st.integers(0, 20))
    def deliver_slow_response(self, pick: int) -> None:
        slow = [s for s in self.net.streams if s.withheld and not s.client_closed]
        if slow:
            stream = slow[pick % len(slow)]
            self.portal.call(stream.deliver)
            self.settle()

    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 31.0]))
    def clock_jump(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(pick=st.integers(0, 20), seen=st.booleans())
    def server_closes_a_connection(self, pick: int, seen: bool) -> None:
        streams = [s for s in self.net.open_streams() if not s.busy]
        if streams:
            streams[pick % len(streams)].close_by_server(seen)

    @rule()
    def fins_arrive(self) -> None:
        self.net.fins_arrive()

    @rule()
    def reaper_runs(self) -> None:
        assert self.pool is not None
        self.portal.call(self.pool._reap)
        self.settle()

    @rule(host=st.sampled_from(HOSTS), behaviour=behaviours)
    def server_changes_its_mind(self, host: str, behaviour: Behaviour) -> None:
        self.net.behaviours[host] = behaviour

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def promises_kept(self) -> None:
        assert self.net.violations == []

    @invariant()
    def one_user_per_connection(self) -> None:
        streams = [self.stream_of(r) for r in self.held]
        assert len({id(s) for s in streams}) == len(streams)
        for stream in streams:
            assert not stream.client_closed

    @invariant()
    def statistics_add_up(self) -> None:
        if self.pool is None:
            return
        stats = self.pool.statistics()
        in_flight = sum(
            1 for s in self.net.open_streams() if s.withheld
        )  # requests waiting for a slow response's headers
        assert stats.open == stats.idle + stats.active
        assert stats.open == len(self.net.open_streams())
        assert stats.active == len(self.held) + in_flight
        assert stats.waiting == len(self.pending) - in_flight
        assert stats.open <= self.max_connections
        assert stats.idle <= self.max_idle
        assert stats.connections_opened == len(self.net.streams)
        assert stats.requests == self.net.written
        assert stats.reused == stats.requests - stats.connections_opened
        for name in ("connections_opened", "requests", "reused", "retries", "open"):
            per_origin = sum(getattr(o, name) for o in stats.origins.values())
            assert per_origin == getattr(stats, name), name
        assert stats.idle == sum(o.idle for o in stats.origins.values())
        closed = (
            stats.retired_by_max
            + stats.retired_by_close
            + stats.expired
            + stats.evicted
            + stats.closed_by_server
        )
        assert closed <= stats.connections_opened - stats.open

    def teardown(self) -> None:
        try:
            if self.pool is not None:
                for future in self.pending:
                    future.cancel()
                self.settle()
                for response in self.held:
                    self.portal.call(response.aclose)
                self.portal.call(self.pool.aclose)
                stats = self.pool.statistics()
                for name in ("reused", "retries", "expired", "closed_by_server"):
                    if getattr(stats, name):
                        event(f"{name} > 0")
                assert (stats.open, stats.idle, stats.active) == (0, 0, 0)
                assert self.net.open_streams() == []  # nothing leaked
        finally:
            self.exits.close()


class TrioPoolMachine(AsyncPoolMachine):
    backend = "trio"


MACHINE_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestAsyncioPoolMachine = AsyncPoolMachine.TestCase
TestAsyncioPoolMachine.settings = MACHINE_SETTINGS
TestTrioPoolMachine = TrioPoolMachine.TestCase
TestTrioPoolMachine.settings = MACHINE_SETTINGS


def test_the_fake_network_catches_a_request_past_the_deadline() -> None:
    """The checks above are only worth something if they can fail."""
    clock = FakeClock()
    net = AsyncFakeNetwork(clock)
    net.behaviours["a.test"] = Behaviour(hint="timeout=5")
    pool = AsyncConnectionPool(network_backend=net, clock=clock)
    pool._state.policy = pool._state.policy.__class__(margin=0.0)  # a broken pool

    async def two_requests() -> None:
        await pool.request("GET", "http://a.test/")
        clock.advance(4.5)  # within 5 s, but past 5 s - 1 s margin
        await pool.request("GET", "http://a.test/")  # the server still answers
        await pool.aclose()

    net.margin = 1.0
    anyio.run(two_requests)
    assert len(net.violations) == 1
    assert "announced timeout 5.0" in net.violations[0]


def test_holding_a_read_response_does_not_push_the_deadline_back() -> None:
    clock = FakeClock()
    net = AsyncFakeNetwork(clock)
    net.behaviours["a.test"] = Behaviour(hint="timeout=5")
    pool = AsyncConnectionPool(network_backend=net, clock=clock)

    async def main() -> None:
        async with pool.stream("GET", "http://a.test/") as response:
            await response.aread()  # the server's idle timer starts now
            clock.advance(2.0)  # the caller works on the body, then closes
        clock.advance(3.5)  # 5.5 s after the last byte; 3.5 s after close
        await pool.request("GET", "http://a.test/")
        await pool.aclose()

    anyio.run(main)
    assert net.violations == []
