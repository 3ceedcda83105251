"""AsyncFastConnection over plain TCP: exchanges, reuse, framing, the
response stream, and noticing a server that closed an idle connection
(asyncio only: the class is asyncio-native).

Errors, timeouts, cancellation and flow control are in
``test_asyncio_connection_errors.py``; TLS and trace events in
``test_asyncio_connection_tls.py``.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import httpcore
import pytest

import hintpool
from hintpool._asyncio_connection import AsyncFastConnection

from .asyncio_helpers import (
    OK,
    RawServer,
    connect,
    eventually,
    exchange,
    read_body,
    read_request,
    request,
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
    await eventually(lambda: conn._codec.complete)  # the (tiny) body arrived
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
    idle = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(OK)
        await w.drain()
        await idle.wait()  # the 408 arrives on its own, once the client is idle
        w.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        await asyncio.Event().wait()

    async with RawServer(handler) as srv:
        conn = await connect(srv)
        await exchange(conn, "GET", srv.url)
        assert conn.is_idle()
        idle.set()
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
        assert not conn.server_closed()  # alive: the poll finds nothing
        close_now.set()
        # Block the loop until the FIN is here: eof_received cannot run.
        assert select.select([conn.sock], [], [], 5)[0]
        assert conn.server_closed()
        assert conn.server_closed()  # remembered
        await conn.aclose()
    finally:
        close_now.set()
        thread.join(5)
        listener.close()
