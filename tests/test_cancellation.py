"""Cancelling requests (async only: threads cannot be cancelled)."""

from __future__ import annotations

import anyio
import httpx
import pytest

import hintpool

from ._async.test_connection_pool import get, make_pool, response
from .server import TestServer

pytestmark = pytest.mark.anyio


async def test_cancelled_waiter_frees_its_place() -> None:
    pool = make_pool([response("timeout=5")] * 2, max_connections=1)
    async with pool:
        async with pool.stream("GET", "http://example.test/") as first:
            async with anyio.create_task_group() as tg:
                tg.start_soon(get, pool)
                await anyio.wait_all_tasks_blocked()
                assert pool.statistics().waiting == 1
                tg.cancel_scope.cancel()
            assert pool.statistics().waiting == 0
            await first.aread()
        stats = pool.statistics()
    assert (stats.open, stats.idle, stats.active) == (1, 1, 0)


async def test_cancel_while_waiting_for_headers_closes_the_connection(
    server: TestServer,
) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        with anyio.move_on_after(0.2):
            await client.get(server.url + "/delay/5")
        stats = transport.statistics()
        assert (stats.open, stats.active, stats.idle) == (0, 0, 0)
        # The next request to the same origin works.
        assert (await client.get(server.url + "/")).text == "hello"
        assert transport.statistics().open == 1


async def test_cancel_while_reading_the_body_closes_the_connection(
    server: TestServer,
) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        # A body that never completes, so the read surely waits (hintpool's
        # asyncio connection hands out bytes already received without a
        # trip through the event loop, as asyncio's streams do).
        async with client.stream("GET", server.url + "/fault/stall-body") as r:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await r.aread()
            assert transport.statistics().open == 0  # closed mid-body
        stats = transport.statistics()
        assert (stats.active, stats.idle) == (0, stats.open)
        assert (await client.get(server.url + "/")).text == "hello"


async def test_cancel_during_pool_wait_with_real_server(server: TestServer) -> None:
    transport = hintpool.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", server.url + "/") as first:
            with anyio.move_on_after(0.05):
                await client.get(server.url + "/")
            assert transport.statistics().waiting == 0
            await first.aread()
        stats = transport.statistics()
        assert (stats.open, stats.idle, stats.active) == (1, 1, 0)
