"""Cancel a request at every await point, on asyncio and trio.

``tests/test_cancellation.py`` covers a few points through timing (a slow
route, ``move_on_after``). Here a gated network backend -- httpcore's own
socket backend with a gate in front of connect, write and read -- stops the
request exactly at one await point, deterministically, against the real
local server (plain and TLS):

    waiting for the pool, connect, TLS handshake, writing the request,
    reading the headers, reading the body

and then cancels it. After each: no active connection and nobody waiting,
no file descriptor left open (``/proc/self/fd`` back to its count before
the request, once the in-process server had a bounded moment to close its
side), and the slot is free: the next request -- also one that was queued
behind the cancelled one -- gets a connection at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import httpcore
import pytest
import trustme

from hintpool import AsyncConnectionPool

from .server import TestServer
from .tls_helpers import client_context, server_context

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd"
    ),
]

#: await point -> the stream operation gated to stop there.
GATE = {
    "connect": "connect",
    "tls": "read",  # the first read of a TLS connection is in the handshake
    "write": "write",
    "headers": "read",
    "body": "read",  # armed once the headers are in
}
POINTS = list(GATE)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def fds_back_to(baseline: int) -> None:
    """The in-process server closes its side when it sees our FIN: wait for
    that (bounded, real time)."""
    with anyio.move_on_after(3):
        while open_fds() > baseline:
            await anyio.sleep(0.01)
    assert open_fds() <= baseline, os.listdir("/proc/self/fd")


class Gates:
    """Which operation stops next, and a way to see that it did."""

    def __init__(self) -> None:
        self.armed: set[str] = set()
        self.reached = anyio.Event()
        self.where = ""

    async def maybe_stop(self, operation: str) -> None:
        if operation in self.armed:
            self.armed.discard(operation)
            self.where = operation
            self.reached.set()
            await anyio.sleep_forever()


class GatedStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream, gates: Gates) -> None:
        self._stream = stream
        self._gates = gates

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._gates.maybe_stop("read")
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._gates.maybe_stop("write")
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise AssertionError("hintpool starts TLS itself on socket backends")

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def gated_backend(gates: Gates) -> httpcore.AsyncNetworkBackend:
    """httpcore's socket backend for the running loop, with gates in front.

    A subclass, so the pool still treats it as a socket backend (its own TLS
    with session resumption runs on top of the gated stream).
    """
    trio = sys.modules.get("trio")
    on_trio = False
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            on_trio = True
        except RuntimeError:
            pass
    base: Any = httpcore.TrioBackend if on_trio else httpcore.AnyIOBackend

    class Gated(base):  # type: ignore[misc, valid-type]
        async def connect_tcp(self, *args: Any, **kwargs: Any) -> GatedStream:
            await gates.maybe_stop("connect")
            stream = await super().connect_tcp(*args, **kwargs)
            return GatedStream(stream, gates)

    return Gated()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[TestServer]:
    ctx = server_context(ca.issue_cert("127.0.0.1"), "TLSv1.3")
    with TestServer(tls=ctx) as srv:
        yield srv


@pytest.fixture
def plain_server() -> Iterator[TestServer]:
    with TestServer() as srv:
        yield srv


def make_pool(gates: Gates, ca: trustme.CA, **kwargs: Any) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        network_backend=gated_backend(gates),
        ssl_context=client_context(ca),
        **kwargs,
    )


def assert_nothing_in_use(pool: AsyncConnectionPool) -> None:
    stats = pool.statistics()
    assert (stats.active, stats.waiting) == (0, 0), stats
    assert stats.open == stats.idle


@pytest.mark.parametrize("point", POINTS)
async def test_cancel_at_each_await_point(
    point: str, plain_server: TestServer, tls_server: TestServer, ca: trustme.CA
) -> None:
    server = tls_server if point == "tls" else plain_server
    url = server.url + ("/bytes/300000" if point == "body" else "/")
    gates = Gates()
    async with make_pool(gates, ca, max_connections=1) as pool:
        # A warm-up request: lazily built things (the SSL context, the
        # event loop's own descriptors) are not counted as leaks.
        await pool.request("GET", server.url + "/")
        await pool.aclose()
    gates = Gates()
    baseline = open_fds()
    pool = make_pool(gates, ca, max_connections=1)
    async with pool:
        if point != "body":
            gates.armed.add(GATE[point])
        queued: list[bytes] = []

        async def queued_request() -> None:
            # Queued behind the request that is cancelled: it must get the
            # slot when that one gives up.
            response = await pool.request(
                "GET", plain_server.url + "/", extensions={"timeout": {"pool": 5}}
            )
            queued.append(response.content)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                if point == "body":
                    async with pool.stream("GET", url) as response:
                        gates.armed.add("read")
                        with anyio.CancelScope() as scope:
                            tg.start_soon(scope_cancel_when_reached, gates, scope)
                            await response.aread()
                        assert scope.cancelled_caught
                else:
                    tg.start_soon(send, pool, url)
                    await gates.reached.wait()
                    tg.start_soon(queued_request)
                    await anyio.wait_all_tasks_blocked()
                    assert pool.statistics().waiting == 1
                    tg.cancel_scope.cancel()
        assert gates.where == GATE[point]
        if point != "body":
            assert queued == [], "cancelled together with the task group"
        # Cancelled before the connection was up (connect, TLS) or after.
        opened = pool.statistics().connections_opened
        assert opened == (0 if point in ("connect", "tls") else 1)
        assert_nothing_in_use(pool)
        # The slot is free: the next request goes through at once.
        with anyio.fail_after(5):
            response = await pool.request(
                "GET", server.url + "/", extensions={"timeout": {"pool": 1}}
            )
        assert response.content == b"hello"
        assert_nothing_in_use(pool)
    assert pool.statistics().open == 0
    await fds_back_to(baseline)


async def send(pool: AsyncConnectionPool, url: str) -> None:
    await pool.request("GET", url)


async def scope_cancel_when_reached(gates: Gates, scope: anyio.CancelScope) -> None:
    await gates.reached.wait()
    scope.cancel()


@pytest.mark.parametrize("point", ["connect", "write", "headers"])
async def test_cancelled_request_hands_its_slot_to_the_waiter(
    point: str, plain_server: TestServer, ca: trustme.CA
) -> None:
    """The request queued behind a cancelled one proceeds (not cancelled)."""
    gates = Gates()
    async with make_pool(gates, ca, max_connections=1) as pool:
        gates.armed.add(GATE[point])
        results: list[bytes] = []

        async def waiter() -> None:
            response = await pool.request("GET", plain_server.url + "/")
            results.append(response.content)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                first = anyio.CancelScope()

                async def first_request() -> None:
                    with first:
                        await send(pool, plain_server.url + "/")

                tg.start_soon(first_request)
                await gates.reached.wait()
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                assert pool.statistics().waiting == 1
                first.cancel()
        assert results == [b"hello"]
        assert_nothing_in_use(pool)


async def test_cancel_waiters_in_any_order_keeps_the_queue_consistent(
    plain_server: TestServer, ca: trustme.CA
) -> None:
    """Five waiters; cancel the 2nd and 4th; the others are served in turn."""
    gates = Gates()
    async with make_pool(gates, ca, max_connections=1) as pool:
        served: list[int] = []
        scopes = [anyio.CancelScope() for _ in range(5)]

        async def waiter(i: int) -> None:
            with scopes[i]:
                response = await pool.request("GET", plain_server.url + "/")
                assert response.content == b"hello"
                served.append(i)

        with anyio.fail_after(10):
            async with pool.stream("GET", plain_server.url + "/") as first:
                async with anyio.create_task_group() as tg:
                    for i in range(5):
                        tg.start_soon(waiter, i)
                        await anyio.wait_all_tasks_blocked()
                    assert pool.statistics().waiting == 5
                    scopes[1].cancel()
                    scopes[3].cancel()
                    await anyio.wait_all_tasks_blocked()
                    assert pool.statistics().waiting == 3
                    await first.aread()
                    await first.aclose()
        assert served == [0, 2, 4]
        assert_nothing_in_use(pool)


async def test_cancel_while_waiting_for_the_pool_frees_nothing_it_did_not_take(
    plain_server: TestServer, ca: trustme.CA
) -> None:
    """The "waiting for the pool" point: see also test_cancellation.py."""
    gates = Gates()
    baseline = open_fds()
    async with make_pool(gates, ca, max_connections=1) as pool:
        async with pool.stream("GET", plain_server.url + "/") as first:
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send, pool, plain_server.url + "/")
                    await anyio.wait_all_tasks_blocked()
                    assert pool.statistics().waiting == 1
                    tg.cancel_scope.cancel()
            stats = pool.statistics()
            assert (stats.waiting, stats.active, stats.open) == (0, 1, 1)
            await first.aread()
        assert_nothing_in_use(pool)
        assert pool.statistics().connections_opened == 1
    await fds_back_to(baseline)
