"""FastConnection: TLS (resumption, ragged EOF, close_notify), trace events
compared with httpcore's, and no descriptor leaks on any path."""

from __future__ import annotations

import os
import select
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Callable

import httpcore
import pytest
import trustme

from hintpool._exceptions import (
    ConnectError,
    ConnectTimeout,
    ReadTimeout,
    RemoteProtocolError,
)
from hintpool._socket_connection import FastConnection

from .fixtures_server import ServerFactory
from .scripted_server import ScriptedServer
from .server import ServerConfig, TestServer
from .test_socket_connection import OK, connect, fetch, origin, read, request
from .tls_helpers import TLS_VERSIONS, RawTLSServer, client_context, server_context

Events = list[tuple[str, list[str]]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return client_context(ca)


def tls_connect(
    port: int,
    ctx: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
    **kwargs: Any,
) -> FastConnection:
    kwargs.setdefault("timeout", 5.0)
    return FastConnection.open(
        origin(port, b"https"),
        ssl_context=ctx,
        server_hostname="localhost",
        session=session,
        **kwargs,
    )


# -- resumption -----------------------------------------------------------------


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_resumption(
    server_factory: ServerFactory,
    cert: trustme.LeafCert,
    client_ctx: ssl.SSLContext,
    version: str,
) -> None:
    srv = server_factory(tls=server_context(cert, version))
    session: ssl.SSLSession | None = None
    resumed = []
    for _ in range(21):
        connection = tls_connect(srv.port, client_ctx, session)
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"hello")
        ssl_object = connection.ssl_object
        resumed.append(bool(ssl_object.session_reused))
        # TLS 1.3: the ticket came before the response; take the freshest.
        session = ssl_object.session
        connection.close()
    assert resumed[0] is False
    assert sum(resumed[1:]) >= 19, resumed
    srv.wait_closed(21)
    assert [bool(r.tls_resumed) for r in srv.connections] == resumed


# -- TLS specifics ----------------------------------------------------------------


def test_bulk_transfer_over_tls(
    server_factory: ServerFactory, cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    srv = server_factory(tls=server_context(cert, "TLSv1.2"))
    connection = tls_connect(srv.port, client_ctx)
    assert fetch(connection, request(b"GET", srv.port, "/bytes/1000000")) == (
        200,
        b"x" * 1_000_000,
    )
    assert fetch(connection, request(b"GET", srv.port, "/chunked/300000")) == (
        200,
        b"x" * 300_000,
    )
    body = bytes(range(256)) * 1000
    headers = [(b"Content-Length", str(len(body)).encode())]
    echo = request(b"POST", srv.port, "/echo", headers=headers, content=body)
    assert fetch(connection, echo) == (200, body)
    assert connection.is_idle()
    connection.close()
    assert srv.connections_opened == 1


def test_ragged_eof_ends_a_close_delimited_body(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    body = b"y" * 100_000
    ctx = server_context(cert, "TLSv1.3")
    with RawTLSServer(ctx, "close-delimited", body) as srv:
        connection = tls_connect(srv.port, client_ctx)
        assert fetch(connection, request(b"GET", srv.port)) == (200, body)
        assert connection.is_closed()


def test_ragged_eof_without_response(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    with RawTLSServer(server_context(cert, "TLSv1.2"), "no-response") as srv:
        connection = tls_connect(srv.port, client_ctx)
        with pytest.raises(RemoteProtocolError, match="without sending a response"):
            connection.handle_request(request(b"GET", srv.port))
        assert connection.nothing_received()


def test_handshake_timeout(cert: trustme.LeafCert, client_ctx: ssl.SSLContext) -> None:
    with RawTLSServer(server_context(cert, "TLSv1.3"), "stall") as srv:
        with pytest.raises(ConnectTimeout):
            tls_connect(srv.port, client_ctx, timeout=0.05)


def test_untrusted_certificate(server_factory: ServerFactory) -> None:
    other = trustme.CA().issue_cert("localhost")
    srv = server_factory(tls=server_context(other, "TLSv1.3"))
    ctx = client_context(trustme.CA())
    with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        tls_connect(srv.port, ctx)


def wait_readable(connection: FastConnection) -> None:
    assert connection.sock is not None
    readable, _, _ = select.select([connection.sock], [], [], 5)
    assert readable


def test_session_ticket_on_idle_connection_is_not_a_close(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    # TLS 1.3 tickets arrive after the handshake: an idle, just-opened
    # connection polls readable without the server having closed.
    with ScriptedServer([OK], after="hold", tls=server_context(cert, "TLSv1.3")) as srv:
        connection = tls_connect(srv.port, client_ctx)
        wait_readable(connection)
        assert not connection.server_closed()
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        assert connection.ssl_object.session.has_ticket
        connection.close()


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_server_closing_idle_tls_connection(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext, version: str
) -> None:
    with ScriptedServer([OK], after="close", tls=server_context(cert, version)) as srv:
        connection = tls_connect(srv.port, client_ctx)
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        assert srv.closed.wait(5)
        wait_readable(connection)
        assert connection.server_closed()
        connection.close()


def test_close_sends_close_notify(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    ctx = server_context(cert, "TLSv1.3")
    with ScriptedServer([OK], after="hold", tls=ctx) as srv:
        connection = tls_connect(srv.port, client_ctx)
        assert fetch(connection, request(b"GET", srv.port)) == (200, b"ok")
        connection.close()
        connection.close()
        assert srv.closed.wait(5)
        assert srv.endings == ["eof"]


def test_read_timeout_then_close_does_not_hang(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    ctx = server_context(cert, "TLSv1.3")
    with ScriptedServer([None], after="hold", tls=ctx) as srv:
        connection = tls_connect(srv.port, client_ctx)
        with pytest.raises(ReadTimeout):
            connection.handle_request(request(b"GET", srv.port, timeout={"read": 0.05}))
        assert connection.is_closed()


def test_tls_network_stream_after_close(
    server_factory: ServerFactory, cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    srv = server_factory(tls=server_context(cert, "TLSv1.3"))
    connection = tls_connect(srv.port, client_ctx)
    response = connection.handle_request(request(b"GET", srv.port))
    read(response)
    stream = response.extensions["network_stream"]
    ssl_object = stream.get_extra_info("ssl_object")
    assert ssl_object is connection.ssl_object
    assert ssl_object.version() == "TLSv1.3"
    assert stream.get_extra_info("socket") is connection.sock
    connection.close()
    ssl_object.version()  # may be None: it must not raise
    assert ssl_object.session_reused is False
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", srv.port)


# -- trace events -------------------------------------------------------------------


def recorder() -> tuple[Events, Callable[[str, dict[str, Any]], None]]:
    events: Events = []

    def trace(name: str, info: dict[str, Any]) -> None:
        events.append((name, sorted(info)))

    return events, trace


def httpcore_events(
    srv_port: int, path: str, ctx: ssl.SSLContext | None
) -> tuple[Events, BaseException | None]:
    scheme = b"http" if ctx is None else b"https"
    events, trace = recorder()
    host = b"127.0.0.1" if ctx is None else b"localhost"
    conn = httpcore.HTTPConnection(
        httpcore.Origin(scheme, host, srv_port), ssl_context=ctx
    )
    error: BaseException | None = None
    try:
        url = f"{scheme.decode()}://{host.decode()}:{srv_port}{path}"
        response = conn.handle_request(
            httpcore.Request(
                b"GET", url, headers=[(b"Host", host)], extensions={"trace": trace}
            )
        )
        read(response)
    except httpcore.RemoteProtocolError as exc:
        error = exc
    finally:
        conn.close()
    return events, error


def our_events(
    srv_port: int, path: str, ctx: ssl.SSLContext | None
) -> tuple[Events, BaseException | None]:
    events, trace = recorder()
    if ctx is None:
        connection = connect(srv_port, trace=trace)
    else:
        connection = tls_connect(srv_port, ctx, trace=trace)
    error: BaseException | None = None
    try:
        read(connection.handle_request(request(b"GET", srv_port, path, trace=trace)))
    except RemoteProtocolError as exc:
        error = exc
    finally:
        connection.close()
    return events, error


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize("path", ["/", "/chunked/5000", "/fault/garbage"])
def test_trace_events_match_httpcore(
    server_factory: ServerFactory,
    cert: trustme.LeafCert,
    client_ctx: ssl.SSLContext,
    tls: bool,
    path: str,
) -> None:
    ctx = client_ctx if tls else None
    server_tls = server_context(cert, "TLSv1.3") if tls else None
    srv = server_factory(tls=server_tls)
    theirs, their_error = httpcore_events(srv.port, path, ctx)
    ours, our_error = our_events(srv.port, path, ctx)
    assert ours == theirs
    assert (our_error is None) == (their_error is None)


def test_trace_of_a_failed_connect() -> None:
    events, trace = recorder()
    with ScriptedServer([]) as srv:
        port = srv.port
    with pytest.raises(ConnectError):
        connect(port, trace=trace)
    assert events == [
        (
            "connection.connect_tcp.started",
            ["host", "local_address", "port", "socket_options", "timeout"],
        ),
        ("connection.connect_tcp.failed", ["exception"]),
    ]


# -- descriptors ----------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def scenarios(
    plain: TestServer, tls: TestServer, ctx: ssl.SSLContext, refused_port: int
) -> Iterator[None]:
    """Every path a connection can end on, once each."""
    conn = connect(plain.port)
    fetch(conn, request(b"GET", plain.port))
    conn.close()
    yield
    conn = tls_connect(tls.port, ctx)
    fetch(conn, request(b"GET", tls.port))
    conn.close()
    yield
    conn = tls_connect(tls.port, ctx)
    response = conn.handle_request(request(b"GET", tls.port, "/bytes/3000000"))
    next(iter(response.stream))  # type: ignore[call-overload]
    response.stream.close()  # type: ignore[union-attr]
    yield
    for path in ("/fault/garbage", "/fault/close-no-response", "/close"):
        conn = tls_connect(tls.port, ctx)
        with pytest.raises(RemoteProtocolError) if "fault" in path else _nothing():
            fetch(conn, request(b"GET", tls.port, path))
        yield
    with pytest.raises(ConnectError):
        connect(refused_port)
    yield
    with pytest.raises(ConnectError):
        tls_connect(tls.port, client_context(trustme.CA()))
    yield


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_no_descriptor_leaks(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    if not os.path.isdir("/proc/self/fd"):  # pragma: no cover - not Linux
        pytest.skip("needs /proc/self/fd")
    # Bound but not listening: connections are refused, and the port stays
    # ours. A port freed by a stopped server could go to a server started
    # next (CI saw the "refused" connect reach the test's own server).
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        refused_port = holder.getsockname()[1]
        before = open_fds()
        tls_context = server_context(cert, "TLSv1.3")
        with (
            TestServer() as plain,
            TestServer(config=ServerConfig(), tls=tls_context) as tls,
        ):
            for _ in range(3):
                for _ in scenarios(plain, tls, client_ctx, refused_port):
                    pass
        assert open_fds() == before
