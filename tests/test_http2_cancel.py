"""A request cancelled while its stream waits leaves hintpool's HTTP/2
connection consistent: the stream is reset, its slot freed, and the next
requests share the same connection (asyncio and trio)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

import hintpool

from .h2_server import H2Server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[H2Server]:
    with H2Server() as srv:
        yield srv


async def test_cancelled_request_leaves_the_connection_usable(
    server: H2Server,
) -> None:
    server.hold = 2  # held until a second request arrives, or 2 s
    transport = hintpool.AsyncHTTPTransport(http1=False, http2=True)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(f"{server.url}/warm")  # answered at the 2 s mark
        with anyio.move_on_after(0.05) as scope:
            await client.get(f"{server.url}/cancelled")
        assert scope.cancelled_caught
        server.hold = 1
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(client.get, f"{server.url}/after/{i}")
        [stats] = transport.statistics().origins.values()
    assert server.connections == 1
    assert server.resets_received == 1  # the cancelled stream, reset
    assert stats.active == 0
    assert stats.protocol_errors == 0


async def test_a_cancelled_reader_hands_the_reading_on(server: H2Server) -> None:
    """The request reading the connection for all is cancelled while
    another waits for its answer: that one reads on and gets it."""
    transport = hintpool.AsyncHTTPTransport(http1=False, http2=True)
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
        await client.get(f"{server.url}/warm")
        server.hold = 3  # never reached: both answered after hold_timeout
        statuses: list[int] = []

        async def reader(scope: anyio.CancelScope) -> None:
            with scope:
                await client.get(f"{server.url}/reader")

        async def waiter() -> None:
            statuses.append((await client.get(f"{server.url}/waiter")).status_code)

        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(reader, scope)
            while len(server.requests) < 2:
                await anyio.sleep(0.001)
            tg.start_soon(waiter)
            while len(server.requests) < 3:
                await anyio.sleep(0.001)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
        [stats] = transport.statistics().origins.values()
    assert statuses == [200]
    assert server.connections == 1
    assert stats.active == 0
