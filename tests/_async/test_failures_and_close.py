"""Closing a shared transport, and failures in the statistics (issue 17).

Through hintpool.AsyncHTTPTransport behind httpx, on the local test server or
on bare sockets that misbehave on purpose: a listener whose backlog is full
(connects time out) and one that never reads (writes time out).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

import hintpool

from ..server import TestServer

pytestmark = pytest.mark.anyio

FAILURES = (
    "connect_errors",
    "connect_timeouts",
    "read_timeouts",
    "write_timeouts",
    "protocol_errors",
    "network_errors",
)


def failures(stats: Any) -> dict[str, int]:
    return {name: getattr(stats, name) for name in FAILURES if getattr(stats, name)}


@contextmanager
def listener(backlog: int, fill: int = 0) -> Iterator[str]:
    """A socket that listens and never accepts; ``fill`` connections first
    fill its accept queue, so that later SYNs are dropped (connects hang)."""
    sock = socket.socket()
    fillers = [socket.socket() for _ in range(fill)]
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        port = sock.getsockname()[1]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        sock.close()


# -- a transport shared by two clients ------------------------------------------


async def test_a_shared_transport_keeps_working_after_one_client_closes(
    server: TestServer,
) -> None:
    transport = hintpool.AsyncHTTPTransport()
    first = httpx.AsyncClient(transport=transport)
    second = httpx.AsyncClient(transport=transport)
    assert (await first.get(server.url + "/")).status_code == 200
    await first.aclose()  # closes the transport: httpx's own keeps working
    response = await second.get(server.url + "/")
    assert (response.status_code, response.text) == (200, "hello")
    assert (await second.get(server.url + "/")).status_code == 200
    stats = transport.statistics()
    # The idle connection was closed by close(); a new one served both GETs.
    assert (stats.connections_opened, stats.reused, stats.idle) == (2, 1, 1)
    await second.aclose()
    assert transport.statistics().open == 0


async def test_a_response_open_across_close_ends_its_connection(
    server: TestServer,
) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        async with c.stream("GET", server.url + "/bytes/1000") as response:
            await transport.aclose()
            assert len(await response.aread()) == 1000
        stats = transport.statistics()
        assert (stats.open, stats.idle) == (0, 0)  # not kept: closed before
        assert (await c.get(server.url + "/")).status_code == 200
        assert transport.statistics().connections_opened == 2


async def test_a_pool_is_usable_after_close(server: TestServer) -> None:
    pool = hintpool.AsyncConnectionPool()
    await pool.request("GET", server.url + "/")
    await pool.aclose()
    assert (await pool.request("GET", server.url + "/")).status == 200
    await pool.aclose()
    async with pool:  # and as a context manager again
        assert (await pool.request("GET", server.url + "/")).status == 200
    assert pool.statistics().open == 0


# -- failures are counted -------------------------------------------------------


async def test_connect_errors_are_counted() -> None:
    with TestServer() as srv:
        url = srv.url  # nothing listens there any more
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        for _ in range(2):
            with pytest.raises(httpx.ConnectError):
                await c.get(url + "/")
    stats = transport.statistics()
    assert failures(stats) == {"connect_errors": 2}
    assert failures(stats.origins[url]) == {"connect_errors": 2}
    assert (stats.requests, stats.connections_opened) == (0, 0)


async def test_connect_timeouts_are_counted() -> None:
    transport = hintpool.AsyncHTTPTransport()
    timeout = httpx.Timeout(5.0, connect=0.2)
    with listener(backlog=0, fill=4) as url:
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as c:
            with pytest.raises(httpx.ConnectTimeout):
                await c.get(url + "/")
        stats = transport.statistics()
        assert failures(stats) == {"connect_timeouts": 1}
        assert failures(stats.origins[url]) == {"connect_timeouts": 1}


# Under trio, httpcore leaves the request body's async generator unfinished
# after a write timeout and trio warns when it is collected (httpx's own
# transport does the same).
@pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._content.ByteStream.__aiter__':ResourceWarning"
)
async def test_write_timeouts_are_counted() -> None:
    transport = hintpool.AsyncHTTPTransport()
    timeout = httpx.Timeout(5.0, write=0.2)
    body = b"x" * (64 * 1024 * 1024)  # more than the socket buffers hold
    with listener(backlog=4) as url:
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as c:
            with pytest.raises(httpx.WriteTimeout):
                await c.post(url + "/", content=body)
        stats = transport.statistics()
        assert failures(stats) == {"write_timeouts": 1}
        assert failures(stats.origins[url]) == {"write_timeouts": 1}


async def test_read_timeouts_are_counted(server: TestServer) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(server.url + "/delay/2", timeout=0.1)
        assert (await c.get(server.url + "/")).status_code == 200
    stats = transport.statistics()
    assert failures(stats) == {"read_timeouts": 1}
    assert failures(stats.origins[server.url]) == {"read_timeouts": 1}


# The trickle sends a byte every 0.5 s, so a 0.1 s read timeout always fires.
READ_ONLY = httpx.Timeout(10.0, read=0.1)


async def test_read_timeouts_in_the_body_are_counted(server: TestServer) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.ReadTimeout):
            # Only the read is short: a 0.1 s connect or pool timeout could
            # expire first on a loaded machine and count as something else.
            await c.get(server.url + "/fault/trickle", timeout=READ_ONLY)
    assert failures(transport.statistics()) == {"read_timeouts": 1}


@pytest.mark.parametrize("path", ["/fault/garbage", "/fault/truncated-chunked"])
async def test_protocol_errors_are_counted(server: TestServer, path: str) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url + path)
    stats = transport.statistics()
    assert failures(stats) == {"protocol_errors": 1}
    assert failures(stats.origins[server.url]) == {"protocol_errors": 1}


async def test_resets_are_counted(server: TestServer) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await c.get(server.url + "/fault/reset-body")
    # A reset may reach the client as a plain EOF: a truncated body.
    counted = failures(transport.statistics())
    assert counted in ({"network_errors": 1}, {"protocol_errors": 1})


async def test_successes_count_no_failure(server: TestServer) -> None:
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        for _ in range(3):
            await c.get(server.url + "/")
    assert failures(transport.statistics()) == {}
