"""FastConnection (the sync wire) against the local server and scripted peers.

TLS, traces and descriptor leaks are in ``test_socket_connection_tls.py``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator

import httpcore
import pytest

from hintpool._exceptions import (
    ConnectError,
    LocalProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
)
from hintpool._socket_connection import FastConnection

from .fixtures_server import ServerFactory
from .scripted_server import ScriptedServer
from .server import TestServer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def origin(port: int, scheme: bytes = b"http") -> httpcore.Origin:
    return httpcore.Origin(scheme, b"127.0.0.1", port)


def connect(port: int, **kwargs: object) -> FastConnection:
    kwargs.setdefault("timeout", 5.0)
    return FastConnection.open(origin(port), **kwargs)  # type: ignore[arg-type]


def request(
    method: bytes,
    port: int,
    path: str = "/",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    content: bytes | Iterator[bytes] | None = None,
    **extensions: object,
) -> httpcore.Request:
    url = f"http://127.0.0.1:{port}{path}".encode()
    all_headers = [(b"Host", b"127.0.0.1"), *(headers or [])]
    return httpcore.Request(
        method, url, headers=all_headers, content=content, extensions=extensions
    )


def read(response: httpcore.Response) -> bytes:
    stream = response.stream
    assert isinstance(stream, Iterable)
    try:
        return b"".join(stream)
    finally:
        stream.close()  # type: ignore[attr-defined]


def fetch(conn: FastConnection, req: httpcore.Request) -> tuple[int, bytes]:
    response = conn.handle_request(req)
    return response.status, read(response)


@pytest.fixture
def conn(server: TestServer) -> Iterator[FastConnection]:
    connection = connect(server.port)
    yield connection
    connection.close()


# -- requests and responses ----------------------------------------------------


def test_get_then_keep_alive_reuse(server: TestServer, conn: FastConnection) -> None:
    for k in range(1, 4):
        response = conn.handle_request(request(b"GET", server.port, "/conn"))
        assert response.status == 200
        assert (b"X-Request-On-Conn", str(k).encode()) in response.headers
        assert response.extensions["http_version"] == b"HTTP/1.1"
        assert response.extensions["reason_phrase"] == b"OK"
        assert read(response) == b"1"
        assert conn.is_idle()
        assert not conn.server_closed()
    assert server.connections_opened == 1


def test_post_bytes_body(server: TestServer, conn: FastConnection) -> None:
    body = b"x" * 200_000  # more than one sendall's worth of coalescing
    headers = [(b"Content-Length", str(len(body)).encode())]
    req = request(b"POST", server.port, "/echo", headers=headers, content=body)
    assert fetch(conn, req) == (200, body)
    assert conn.is_idle()


def test_post_chunked_iterator_body(server: TestServer, conn: FastConnection) -> None:
    pieces = [b"a" * 10, b"", b"b" * 100_000, b"c" * 3]
    headers = [(b"Transfer-Encoding", b"chunked")]
    req = request(b"POST", server.port, "/echo", headers=headers, content=iter(pieces))
    assert fetch(conn, req) == (200, b"".join(pieces))
    assert fetch(conn, request(b"GET", server.port)) == (200, b"hello")
    assert server.connections_opened == 1


def test_chunks_outlive_the_shared_receive_buffer(server: TestServer) -> None:
    # Every connection of a thread reads into one buffer: a chunk handed out
    # must be bytes of its own, unchanged by later reads on any connection.
    first, second = connect(server.port), connect(server.port)
    try:
        body_a, body_b = b"a" * 200_000, b"b" * 200_000
        headers = [(b"Content-Length", b"200000")]
        response = first.handle_request(
            request(b"POST", server.port, "/echo", headers=headers, content=body_a)
        )
        chunks = iter(response.stream)  # type: ignore[call-overload]
        taken = [next(chunks)]
        post_b = request(b"POST", server.port, "/echo", headers=headers, content=body_b)
        assert fetch(second, post_b) == (200, body_b)
        taken.extend(chunks)
        assert all(type(chunk) is bytes for chunk in taken)
        assert b"".join(taken) == body_a
    finally:
        first.close()
        second.close()


def test_chunked_response(server: TestServer, conn: FastConnection) -> None:
    assert fetch(conn, request(b"GET", server.port, "/chunked/150000")) == (
        200,
        b"x" * 150_000,
    )
    assert conn.is_idle()


def test_head_has_no_body_and_keeps_the_connection(
    server: TestServer, conn: FastConnection
) -> None:
    response = conn.handle_request(request(b"HEAD", server.port, "/bytes/1000"))
    assert (b"Content-Length", b"1000") in response.headers
    assert read(response) == b""
    assert conn.is_idle()
    assert fetch(conn, request(b"GET", server.port)) == (200, b"hello")


def test_connection_close_is_not_reused(
    server: TestServer, conn: FastConnection
) -> None:
    assert fetch(conn, request(b"GET", server.port, "/close")) == (200, b"closing")
    assert not conn.is_idle()
    assert conn.is_closed()
    assert conn.server_closed()


def test_eof_delimited_body(server_factory: ServerFactory) -> None:
    srv = server_factory(http_version=b"1.0")
    connection = connect(srv.port)
    response = connection.handle_request(request(b"GET", srv.port, "/chunked/70000"))
    assert response.extensions["http_version"] == b"HTTP/1.0"
    assert not any(name.lower() == b"content-length" for name, _ in response.headers)
    assert read(response) == b"x" * 70_000
    assert connection.is_closed()


def test_informational_heads_are_skipped() -> None:
    script = [
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK,
        OK,
    ]
    with ScriptedServer(script, after="hold") as srv:
        connection = connect(srv.port)
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        assert connection.is_idle()
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        connection.close()


def test_http10_keep_alive_is_reused() -> None:
    ok10 = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    with ScriptedServer([ok10, ok10], after="hold") as srv:
        connection = connect(srv.port)
        response = connection.handle_request(request(b"GET", srv.port))
        assert response.extensions["http_version"] == b"HTTP/1.0"
        assert read(response) == b"ok"
        assert connection.is_idle()
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        connection.close()


def test_switching_protocols_ends_the_connection() -> None:
    upgrade = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n"
    )
    with ScriptedServer([upgrade], after="hold") as srv:
        connection = connect(srv.port)
        assert fetch(connection, request(b"GET", srv.port)) == (101, b"")
        assert connection.is_closed()


def test_responses_split_into_single_bytes() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    with ScriptedServer([chunked, OK], after="hold", dribble=True) as srv:
        connection = connect(srv.port)
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"hello world")
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        assert connection.is_idle()
        connection.close()


def test_half_read_body_then_close_is_not_reused(
    server: TestServer, conn: FastConnection
) -> None:
    response = conn.handle_request(request(b"GET", server.port, "/bytes/4000000"))
    stream = iter(response.stream)  # type: ignore[arg-type]
    assert next(stream)
    response.stream.close()  # type: ignore[union-attr]
    assert conn.is_closed()
    assert not conn.is_idle()


def test_fully_received_but_untaken_body_is_reusable() -> None:
    # One sendall on loopback: head and body arrive in one read.
    with ScriptedServer([OK, OK], after="hold") as srv:
        connection = connect(srv.port)
        response = connection.handle_request(request(b"GET", srv.port))
        response.stream.close()  # type: ignore[attr-defined]
        assert connection.is_idle()
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        connection.close()


def test_busy_connection_refuses_a_second_request(
    server: TestServer, conn: FastConnection
) -> None:
    response = conn.handle_request(request(b"GET", server.port))
    with pytest.raises(RuntimeError):
        conn.handle_request(request(b"GET", server.port))
    assert read(response) == b"hello"


# -- the peer closing ----------------------------------------------------------


def test_server_closes_idle_connection() -> None:
    with ScriptedServer([OK], after="close") as srv:
        connection = connect(srv.port)
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        assert connection.is_idle()
        assert srv.closed.wait(5)
        assert connection.server_closed()
        connection.close()


def test_unexpected_bytes_on_idle_connection_count_as_closed() -> None:
    late_408 = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    with ScriptedServer([OK + late_408], after="hold") as srv:
        connection = connect(srv.port)
        # The 408 arrives with the response (the codec refuses bytes beyond
        # a complete response) or after it (server_closed() sees them).
        try:
            assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        except RemoteProtocolError:
            assert connection.is_closed()
        assert connection.is_closed() or connection.server_closed()
        connection.close()


def test_disconnect_without_response() -> None:
    with ScriptedServer([None], after="close") as srv:
        connection = connect(srv.port)
        with pytest.raises(RemoteProtocolError, match="without sending a response"):
            connection.handle_request(request(b"GET", srv.port))
        assert connection.nothing_received()
        assert connection.is_closed()


def test_reset_before_response_is_read_error(server: TestServer) -> None:
    connection = connect(server.port)
    with pytest.raises(ReadError):
        connection.handle_request(request(b"GET", server.port, "/fault/reset-headers"))
    assert connection.nothing_received()
    assert connection.is_closed()


@pytest.mark.parametrize("fault", ["garbage", "truncated-chunked", "huge-headers"])
def test_malformed_responses(server: TestServer, fault: str) -> None:
    connection = connect(server.port)
    with pytest.raises(RemoteProtocolError):
        fetch(connection, request(b"GET", server.port, f"/fault/{fault}"))
    assert connection.is_closed()


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 20",
    ],
)
def test_malformed_scripted_responses(raw: bytes) -> None:
    with ScriptedServer([raw], after="close") as srv:
        connection = connect(srv.port)
        with pytest.raises(RemoteProtocolError):
            fetch(connection, request(b"GET", srv.port))
        assert connection.is_closed()
        assert not connection.nothing_received()


# -- timeouts and local errors ----------------------------------------------------


def test_read_timeout() -> None:
    with ScriptedServer([None], after="hold") as srv:
        connection = connect(srv.port)
        req = request(b"GET", srv.port, timeout={"read": 0.05})
        with pytest.raises(ReadTimeout):
            connection.handle_request(req)
        assert connection.is_closed()


def test_read_timeout_in_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    with ScriptedServer([head], after="hold") as srv:
        connection = connect(srv.port)
        response = connection.handle_request(
            request(b"GET", srv.port, timeout={"read": 0.05})
        )
        with pytest.raises(ReadTimeout):
            read(response)
        assert connection.is_closed()


def test_write_timeout() -> None:
    def body() -> Iterator[bytes]:
        for _ in range(1000):  # far beyond what the socket buffers hold
            yield b"x" * 65536

    headers = [(b"Transfer-Encoding", b"chunked")]
    with ScriptedServer([], after="stall") as srv:
        connection = connect(srv.port)
        req = request(
            b"POST", srv.port, headers=headers, content=body(), timeout={"write": 0.05}
        )
        with pytest.raises(WriteTimeout):
            connection.handle_request(req)
        assert connection.is_closed()


def test_invalid_header_is_local_error() -> None:
    # A scripted server: the local server's stop() can race a connection
    # that closes before sending anything (an unclosed server transport).
    with ScriptedServer([], after="close") as srv:
        connection = connect(srv.port)
        bad = [(b"X-Bad", b"a\r\nInjected: 1")]
        with pytest.raises(LocalProtocolError):
            connection.handle_request(request(b"GET", srv.port, headers=bad))
        assert connection.is_closed()


def test_connect_refused() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(ConnectError):
        connect(port)


def test_unix_socket() -> None:
    with ScriptedServer([OK, OK, OK], after="hold", unix=True) as srv:
        connection = FastConnection.open(origin(80), timeout=5.0, uds=srv.path)
        assert fetch(connection, request(b"GET", 80)) == (200, b"ok")
        assert fetch(connection, request(b"GET", 80)) == (200, b"ok")
        stream = connection.handle_request(request(b"GET", 80)).extensions[
            "network_stream"
        ]
        assert stream.get_extra_info("server_addr") == srv.path
        connection.close()


def test_local_address_and_socket_options() -> None:
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    with ScriptedServer([], after="close") as srv:
        connection = connect(
            srv.port, local_address="127.0.0.1", socket_options=options
        )
        sock = connection.sock
        assert sock is not None
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        connection.close()


def test_network_stream_answers_after_close(
    server: TestServer, conn: FastConnection
) -> None:
    response = conn.handle_request(request(b"GET", server.port))
    read(response)
    stream = response.extensions["network_stream"]
    client = stream.get_extra_info("client_addr")
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", server.port)
    assert stream.get_extra_info("ssl_object") is None
    assert stream.get_extra_info("is_readable") is False
    conn.close()
    conn.close()  # idempotent
    assert stream.get_extra_info("client_addr") == client
    assert stream.get_extra_info("is_readable") is True
    assert stream.get_extra_info("nonsense") is None


def test_early_response_while_sending_body_is_read() -> None:
    # The server answers after the head and closes without reading the
    # body: the client's writes fail, and it reads the 413 as httpcore does.
    too_large = (
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n"
        b"Connection: close\r\n\r\nbig"
    )

    def body() -> Iterator[bytes]:
        for _ in range(200):  # beyond the socket buffers: a write must fail
            yield b"x" * 65536

    headers = [(b"Transfer-Encoding", b"chunked")]
    with ScriptedServer([too_large], after="close") as srv:
        connection = connect(srv.port)
        req = request(b"POST", srv.port, headers=headers, content=body())
        assert fetch(connection, req) == (413, b"big")
        assert connection.is_closed()


def test_close_from_another_thread_wakes_a_blocked_read() -> None:
    errors: list[BaseException] = []
    with ScriptedServer([None], after="hold") as srv:
        connection = connect(srv.port)

        def exchange() -> None:
            try:
                connection.handle_request(request(b"GET", srv.port))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=exchange)
        thread.start()
        assert srv.request_seen.wait(5)
        connection.close()
        thread.join(5)
        assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], (ReadError, RemoteProtocolError))
