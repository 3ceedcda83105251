"""AsyncFastConnection: malformed responses, resets, connect failures,
timeouts, cancellation (no descriptor left open) and flow control."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpcore
import pytest

import hintpool
from hintpool._asyncio_connection import AsyncFastConnection
from hintpool._asyncio_protocol import READ_HIGH_WATER

from .asyncio_helpers import (
    RawServer,
    connect,
    eventually,
    exchange,
    fds_back_to,
    open_fds,
    read_body,
    read_request,
    request,
    silent,
)
from .server import ServerConfig, TestServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def keepalive_server() -> Iterator[TestServer]:
    with TestServer(config=ServerConfig(keep_alive="timeout=5")) as srv:
        yield srv


MALFORMED = {
    "garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "truncated-chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
    ),
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    "truncated-head": b"HTTP/1.1 200 OK\r\nContent-Le",
    "huge-head": b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"a" * 70_000 + b"\r\n\r\n",
    "nothing": b"",
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_responses_are_remote_protocol_errors(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(MALFORMED[name])
        await w.drain()
        w.close()

    baseline = open_fds()
    async with RawServer(handler) as srv:
        conn = await connect(srv)
        with pytest.raises(hintpool.RemoteProtocolError) as info:
            await exchange(conn, "GET", srv.url)
        assert conn.is_closed()
        assert conn.nothing_received() == (name == "nothing")
        if name == "nothing":
            assert str(info.value) == "Server disconnected without sending a response."
    await fds_back_to(baseline)


async def test_reset_before_the_response_is_a_read_error(
    keepalive_server: TestServer,
) -> None:
    conn = await connect(keepalive_server)
    with pytest.raises(hintpool.ReadError):
        await exchange(conn, "GET", keepalive_server.url + "/fault/reset-headers")
    assert conn.nothing_received() and conn.is_closed()


async def test_reset_in_the_body_is_a_read_error(keepalive_server: TestServer) -> None:
    conn = await connect(keepalive_server)
    with pytest.raises(hintpool.ReadError):
        await exchange(conn, "GET", keepalive_server.url + "/fault/reset-body")
    assert not conn.nothing_received() and conn.is_closed()


async def test_connection_refused_is_a_connect_error() -> None:
    # Bound but not listening: refused, and no server started meanwhile can
    # take the port (as one could a port closed here).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        origin = httpcore.Origin(b"http", b"127.0.0.1", sock.getsockname()[1])
        baseline = open_fds()
        with pytest.raises(hintpool.ConnectError, match=r"refused|Connect call failed"):
            await AsyncFastConnection.open(origin, timeout=5)
        with pytest.raises(hintpool.ConnectError):
            await AsyncFastConnection.open(
                origin,
                timeout=5,
                socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
            )
        await fds_back_to(baseline)


async def test_connect_timeout() -> None:
    # A listener whose accept queue is full drops further SYNs: connect hangs.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        baseline = open_fds()
        origin = httpcore.Origin(b"http", b"127.0.0.1", port)
        for options in (None, [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]):
            with pytest.raises(hintpool.ConnectTimeout, match=r"127\.0\.0\.1"):
                await AsyncFastConnection.open(
                    origin, timeout=0.1, socket_options=options
                )
        await fds_back_to(baseline)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_local_protocol_error_closes() -> None:
    async with RawServer(silent) as srv:
        conn = await connect(srv)
        bad = request("GET", srv.url, headers=[(b"X-Bad", b"a\r\nb")])
        with pytest.raises(hintpool.LocalProtocolError):
            await conn.handle_async_request(bad)
        assert conn.is_closed()


# -- timeouts --------------------------------------------------------------------


async def test_read_timeout_waiting_for_the_head() -> None:
    async with RawServer(silent) as srv:
        conn = await connect(srv)
        req = request("GET", srv.url, timeout={"read": 0.05})
        with pytest.raises(hintpool.ReadTimeout):
            await conn.handle_async_request(req)
        assert conn.is_closed() and conn.nothing_received()


async def test_read_timeout_in_the_body() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        await asyncio.Event().wait()

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        req = request("GET", srv.url, timeout={"read": 0.05})
        response = await conn.handle_async_request(req)
        with pytest.raises(hintpool.ReadTimeout):
            await read_body(response)
        assert conn.is_closed()


async def test_read_timer_counts_from_the_last_bytes() -> None:
    """The timer re-arms for the rest when bytes arrived since it was set,
    and stops when nobody waits."""
    async with RawServer(silent) as srv:
        conn = await connect(srv)
        conn._read_timeout = 10.0
        conn._waiter = conn._loop.create_future()
        conn._last_data = conn._loop.time()
        conn._read_timer()  # fired "early": bytes came in meanwhile
        assert conn._timer is not None and conn._error is None
        assert conn._timer_at == conn._last_data + 10.0
        conn._timer.cancel()
        conn._last_data -= 20
        conn._read_timer()
        assert isinstance(conn._error, hintpool.ReadTimeout)
        assert conn._waiter.done() and conn._timer is None
        conn._waiter = None
        conn._read_timer()
        assert conn._timer is None
        await conn.aclose()


async def test_one_read_timer_serves_many_requests(
    keepalive_server: TestServer,
) -> None:
    conn = await connect(keepalive_server)
    timer = None
    for _ in range(3):
        await exchange(conn, "GET", keepalive_server.url, timeout={"read": 30.0})
        assert conn._timer is not None
        assert timer is None or conn._timer is timer
        timer = conn._timer
    # A shorter timeout than the pending timer's re-arms it.
    await exchange(conn, "GET", keepalive_server.url, timeout={"read": 5.0})
    assert conn._timer is not timer and conn._timer_at < timer.when()
    await conn.aclose()
    assert conn._timer is None


async def test_write_timeout_when_the_server_does_not_read() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # never reads

    async def upload() -> AsyncIterator[bytes]:
        chunk = b"x" * 1_048_576
        for _ in range(256):
            yield chunk

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        req = request(
            "POST",
            srv.url,
            headers=[(b"Transfer-Encoding", b"chunked")],
            content=upload(),
            timeout={"write": 0.1},
        )
        with pytest.raises(hintpool.WriteTimeout):
            await conn.handle_async_request(req)
        assert conn.is_closed()


# -- cancellation ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["head", "body"])
async def test_cancellation_leaves_nothing_open(where: str) -> None:
    reached = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if where == "body":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        reached.set()
        await asyncio.Event().wait()

    baseline = open_fds()
    async with RawServer(handler) as srv:
        conn = await connect(srv)

        async def run() -> None:
            await exchange(conn, "GET", srv.url)

        task = asyncio.ensure_future(run())
        await reached.wait()
        for _ in range(5):  # let the client get into its wait
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert conn.is_closed() and not conn.is_idle()
    await fds_back_to(baseline)


async def test_cancellation_while_connecting_leaves_nothing_open() -> None:
    baseline = open_fds()
    async with RawServer(silent) as srv:
        for steps in range(6):
            task = asyncio.ensure_future(connect(srv))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                conn = await task
            except asyncio.CancelledError:
                continue
            await conn.aclose()
    await fds_back_to(baseline)


# -- flow control -----------------------------------------------------------------


async def test_large_body_with_a_slow_consumer_stays_bounded(
    keepalive_server: TestServer,
) -> None:
    size = 20_000_000
    conn = await connect(keepalive_server)
    url = keepalive_server.url + f"/bytes/{size}"
    response = await conn.handle_async_request(request("GET", url))
    total = stalls = 0
    async for chunk in response.stream:  # type: ignore[union-attr]
        total += len(chunk)
        if stalls < 3 and total > stalls * 5_000_000:
            # The consumer stops; the server keeps sending. Reading must
            # stop with at most the high-water mark plus one read buffered.
            stalls += 1
            await eventually(lambda: conn._reading_paused)
            buffered = sum(map(len, conn._codec.body))
            assert READ_HIGH_WATER // 2 < buffered <= READ_HIGH_WATER + 256 * 1024
    await response.stream.aclose()  # type: ignore[union-attr]
    assert total == size and stalls == 3
    assert conn.is_idle() and not conn._reading_paused
    await conn.aclose()
