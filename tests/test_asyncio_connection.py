"""AsyncFastConnection over plain TCP: exchanges, reuse, framing, errors,
timeouts, cancellation, flow control (asyncio only: it is asyncio-native).

TLS and the trace extension are in ``test_asyncio_connection_tls.py``.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Callable

import httpcore
import pytest

import hintpool
from hintpool import _asyncio_connection
from hintpool._asyncio_connection import AsyncFastConnection
from hintpool._asyncio_protocol import READ_HIGH_WATER

from .asyncio_helpers import (
    RawServer,
    exchange,
    fds_back_to,
    open_fds,
    read_body,
    read_request,
    request,
)
from .server import ServerConfig, TestServer

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def keepalive_server() -> Iterator[TestServer]:
    with TestServer(config=ServerConfig(keep_alive="timeout=5")) as srv:
        yield srv


def origin_of(srv: TestServer) -> httpcore.Origin:
    return httpcore.Origin(b"http", b"127.0.0.1", srv.port)


async def connect(srv: TestServer | RawServer, **kwargs: object) -> AsyncFastConnection:
    origin = srv.origin if isinstance(srv, RawServer) else origin_of(srv)
    return await AsyncFastConnection.open(origin, timeout=5, **kwargs)  # type: ignore[arg-type]


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for an event the loop's callbacks will bring."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{condition} never became true")


# -- exchanges and reuse -------------------------------------------------------


async def test_get_then_reuse(keepalive_server: TestServer) -> None:
    conn = await connect(keepalive_server)
    url = keepalive_server.url
    for n in (1, 2, 3):
        response, body = await exchange(conn, "GET", url + "/conn")
        assert response.status == 200
        assert (b"X-Request-On-Conn", str(n).encode()) in response.headers
        assert response.extensions["http_version"] == b"HTTP/1.1"
        assert response.extensions["reason_phrase"] == b"OK"
        assert body == b"1"
        assert conn.is_idle() and not conn.server_closed()
    assert keepalive_server.connections_opened == 1
    await conn.aclose()
    await conn.aclose()  # idempotent
    assert conn.is_closed() and not conn.is_idle()


async def test_post_bytes_body(keepalive_server: TestServer) -> None:
    conn = await connect(keepalive_server)
    payload = os.urandom(200_000)
    headers = [(b"Content-Length", str(len(payload)).encode())]
    response, body = await exchange(
        conn, "POST", keepalive_server.url + "/echo", headers=headers, content=payload
    )
    assert (b"X-Method", b"POST") in response.headers
    assert body == payload
    assert conn.is_idle()
    await conn.aclose()


async def test_post_chunked_async_iterator_body(keepalive_server: TestServer) -> None:
    pieces = [b"a" * 10, b"", b"b" * 70_000, b"c"]

    async def upload() -> AsyncIterator[bytes]:
        for piece in pieces:
            await asyncio.sleep(0)
            yield piece

    conn = await connect(keepalive_server)
    headers = [(b"Transfer-Encoding", b"chunked")]
    _, body = await exchange(
        conn, "POST", keepalive_server.url + "/echo", headers=headers, content=upload()
    )
    assert body == b"".join(pieces)
    assert conn.is_idle()
    await conn.aclose()


async def test_connection_close_is_not_reused(keepalive_server: TestServer) -> None:
    conn = await connect(keepalive_server)
    response, body = await exchange(conn, "GET", keepalive_server.url + "/close")
    assert (b"Connection", b"close") in response.headers and body == b"closing"
    assert conn.is_closed() and not conn.is_idle()


async def test_eof_delimited_body_is_not_reused() -> None:
    with TestServer(config=ServerConfig(http_version=b"1.0")) as srv:
        conn = await connect(srv)
        response, body = await exchange(conn, "GET", srv.url + "/chunked/100000")
        assert response.extensions["http_version"] == b"HTTP/1.0"
        assert body == b"x" * 100_000
        assert not conn.is_idle()
        await conn.aclose()


async def test_head_has_no_body_and_is_reused(keepalive_server: TestServer) -> None:
    conn = await connect(keepalive_server)
    response, body = await exchange(conn, "HEAD", keepalive_server.url + "/bytes/50")
    assert (b"Content-Length", b"50") in response.headers and body == b""
    _, body = await exchange(conn, "GET", keepalive_server.url + "/bytes/50")
    assert body == b"x" * 50
    assert keepalive_server.connections_opened == 1
    await conn.aclose()


async def test_chunked_response(keepalive_server: TestServer) -> None:
    conn = await connect(keepalive_server)
    _, body = await exchange(conn, "GET", keepalive_server.url + "/chunked/25000")
    assert body == b"x" * 25_000 and conn.is_idle()
    await conn.aclose()


async def test_informational_responses_are_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await w.drain()
            w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        for _ in range(2):
            response, body = await exchange(conn, "GET", srv.url)
            assert (response.status, body) == (200, b"ok")
            assert conn.is_idle()
        await conn.aclose()


async def test_closing_an_unread_complete_body_keeps_the_connection(
    keepalive_server: TestServer,
) -> None:
    conn = await connect(keepalive_server)
    response = await conn.handle_async_request(request("GET", keepalive_server.url))
    await asyncio.sleep(0.05)  # let the (tiny) body arrive: not a deadline
    await response.stream.aclose()  # type: ignore[union-attr]
    assert conn.is_idle()
    _, body = await exchange(conn, "GET", keepalive_server.url)
    assert body == b"hello"
    await conn.aclose()


async def test_closing_an_unfinished_body_closes_the_connection(
    keepalive_server: TestServer,
) -> None:
    conn = await connect(keepalive_server)
    url = keepalive_server.url + "/bytes/5000000"
    response = await conn.handle_async_request(request("GET", url))
    stream = response.stream
    async for _ in stream:  # type: ignore[union-attr]
        break
    await stream.aclose()  # type: ignore[union-attr]
    assert conn.is_closed()


async def test_network_stream_extra_info(keepalive_server: TestServer) -> None:
    conn = await connect(keepalive_server)
    response, _ = await exchange(conn, "GET", keepalive_server.url)
    stream = response.extensions["network_stream"]
    client, server = (
        stream.get_extra_info("client_addr"),
        stream.get_extra_info("server_addr"),
    )
    assert server == ("127.0.0.1", keepalive_server.port) and client[0] == "127.0.0.1"
    assert stream.get_extra_info("ssl_object") is None
    sock = stream.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert stream.get_extra_info("is_readable") is False
    await conn.aclose()
    assert stream.get_extra_info("server_addr") == server
    assert stream.get_extra_info("is_readable") is True


async def test_socket_options_local_address(keepalive_server: TestServer) -> None:
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    conn = await connect(
        keepalive_server, socket_options=options, local_address="127.0.0.1"
    )
    assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    _, body = await exchange(conn, "GET", keepalive_server.url)
    assert body == b"hello"
    await conn.aclose()


@pytest.mark.parametrize("with_options", [False, True])
async def test_unix_socket(tmp_path: os.PathLike[str], with_options: bool) -> None:
    path = os.path.join(tmp_path, "s.sock")

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            w.write(OK)
            await w.drain()
            await reader.read()  # until the client closes
        finally:
            w.transport.abort()

    server = await asyncio.start_unix_server(handler, path)
    try:
        origin = httpcore.Origin(b"http", b"localhost", 80)
        options = (
            [(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)] if with_options else None
        )
        conn = await AsyncFastConnection.open(
            origin, timeout=5, uds=path, socket_options=options
        )
        _, body = await exchange(conn, "GET", "http://localhost/")
        assert body == b"ok"
        await conn.aclose()
    finally:
        server.close()
        await server.wait_closed()


# -- the server closing, errors ------------------------------------------------


async def test_server_closing_an_idle_connection_is_noticed() -> None:
    idle = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(OK)
        await w.drain()
        await idle.wait()  # close only once the client is idle
        w.close()

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        _, body = await exchange(conn, "GET", srv.url)
        assert body == b"ok" and conn.is_idle()
        idle.set()
        await eventually(conn.server_closed)
        assert not conn.is_idle()
        await conn.aclose()


async def test_unexpected_bytes_on_an_idle_connection() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(OK)
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        await asyncio.Event().wait()

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        await exchange(conn, "GET", srv.url)
        await eventually(conn.server_closed)
        await conn.aclose()


async def test_request_after_the_server_closed_is_server_disconnected() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(OK)
        await w.drain()

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        await exchange(conn, "GET", srv.url)
        await eventually(conn.server_closed)
        with pytest.raises(hintpool.RemoteProtocolError) as info:
            await conn.handle_async_request(request("GET", srv.url))
        assert str(info.value) == "Server disconnected without sending a response."
        assert conn.nothing_received() and conn.is_closed()


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
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    origin = httpcore.Origin(b"http", b"127.0.0.1", port)
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
    async with RawServer(_silent) as srv:
        conn = await connect(srv)
        bad = request("GET", srv.url, headers=[(b"X-Bad", b"a\r\nb")])
        with pytest.raises(hintpool.LocalProtocolError):
            await conn.handle_async_request(bad)
        assert conn.is_closed()


# -- timeouts --------------------------------------------------------------------


async def _silent(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.Event().wait()


async def test_read_timeout_waiting_for_the_head() -> None:
    async with RawServer(_silent) as srv:
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
    """The timer re-arms for the rest when bytes arrived since it was set."""
    async with RawServer(_silent) as srv:
        conn = await connect(srv)
        conn._read_timeout = 10.0
        conn._last_data = conn._loop.time()
        conn._read_timer()  # fired "early": bytes came in meanwhile
        assert conn._timer is not None and conn._error is None
        conn._timer.cancel()
        conn._last_data -= 20
        conn._read_timer()
        assert isinstance(conn._error, hintpool.ReadTimeout)
        await conn.aclose()


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
    async with RawServer(_silent) as srv:
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


async def test_switching_protocols_is_final_and_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        await asyncio.Event().wait()

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        response, body = await exchange(conn, "GET", srv.url)
        assert (response.status, body) == (101, b"")
        assert conn.is_closed()


async def test_a_response_stream_iterated_again_yields_nothing(
    keepalive_server: TestServer,
) -> None:
    conn = await connect(keepalive_server)
    response, body = await exchange(conn, "GET", keepalive_server.url)
    assert body == b"hello"
    assert [chunk async for chunk in response.stream] == []  # type: ignore[union-attr]
    assert conn.is_idle()
    await conn.aclose()


async def test_closing_the_connection_under_a_reader_is_a_read_error() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        await asyncio.Event().wait()

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        response = await conn.handle_async_request(request("GET", srv.url))
        reading = asyncio.ensure_future(read_body(response))
        await eventually(lambda: conn._waiter is not None)
        await conn.aclose()
        with pytest.raises(hintpool.ReadError):
            await reading


async def test_a_close_the_loop_has_not_seen_yet_is_found_by_a_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    close_now = threading.Event()

    def serve() -> None:  # in a thread: it must run while our loop is blocked
        conn, _ = listener.accept()
        with conn:
            while b"\r\n\r\n" not in conn.recv(65536):
                pass
            conn.sendall(OK)
            close_now.wait(5)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = listener.getsockname()[1]
        origin = httpcore.Origin(b"http", b"127.0.0.1", port)
        conn = await AsyncFastConnection.open(origin, timeout=5)
        await exchange(conn, "GET", f"http://127.0.0.1:{port}/")
        polls = []
        real = _asyncio_connection._readable

        def counting(sock: object) -> bool:
            polls.append(sock)
            return real(sock)

        monkeypatch.setattr(_asyncio_connection, "_readable", counting)
        assert not conn.server_closed() and not polls  # just idle: no syscall
        close_now.set()
        # Block the loop until the FIN is here: eof_received cannot run.
        assert select.select([conn.sock], [], [], 5)[0]
        conn._idle_since -= 1  # idle "long enough" without sleeping
        assert conn.server_closed() and len(polls) == 1
        assert conn.server_closed() and len(polls) == 1  # remembered
        await conn.aclose()
    finally:
        close_now.set()
        thread.join(5)
        listener.close()
