"""AsyncFastConnection: TLS over MemoryBIO (session resumption, failures,
ragged EOF, large bodies) and httpcore's ``trace`` extension."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Iterator
from typing import Any

import httpcore
import pytest
import trustme

import hintpool
from hintpool._asyncio_connection import AsyncFastConnection
from hintpool._asyncio_protocol import READ_HIGH_WATER

from .asyncio_helpers import (
    RawServer,
    exchange,
    fds_back_to,
    open_fds,
    read_request,
    request,
)
from .server import ServerConfig, TestServer
from .tls_helpers import TLS_VERSIONS, RawTLSServer, client_context, server_context

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return client_context(ca)


@pytest.fixture(params=TLS_VERSIONS)
def tls_server(
    request: pytest.FixtureRequest, cert: trustme.LeafCert
) -> Iterator[TestServer]:
    ctx = server_context(cert, request.param)
    with TestServer(config=ServerConfig(keep_alive="timeout=5"), tls=ctx) as srv:
        yield srv


def https_origin(port: int) -> httpcore.Origin:
    return httpcore.Origin(b"https", b"127.0.0.1", port)


async def open_tls(
    port: int, ctx: ssl.SSLContext, **kwargs: Any
) -> AsyncFastConnection:
    return await AsyncFastConnection.open(
        https_origin(port),
        timeout=5,
        ssl_context=ctx,
        server_hostname="localhost",
        **kwargs,
    )


# -- TLS ----------------------------------------------------------------------------


async def test_session_resumption(
    tls_server: TestServer, client_ctx: ssl.SSLContext
) -> None:
    session = None
    resumed = 0
    for _ in range(21):
        conn = await open_tls(tls_server.port, client_ctx, session=session)
        _, body = await exchange(conn, "GET", tls_server.url)
        assert body == b"hello"
        sslobj = conn.ssl_object
        assert sslobj is not None
        resumed += sslobj.session_reused
        new = sslobj.session
        # TLS 1.3: only a session with its ticket resumes; on a resumed
        # connection the offered one still says has_ticket: take the new.
        if new is not None and (sslobj.version() != "TLSv1.3" or new.has_ticket):
            session = new
        await conn.aclose()
    assert resumed >= 19
    records = tls_server.connections
    assert records[0].tls_resumed is False
    assert sum(bool(r.tls_resumed) for r in records[1:]) >= 19


async def test_session_of_another_context_is_a_full_handshake(
    tls_server: TestServer, client_ctx: ssl.SSLContext, ca: trustme.CA
) -> None:
    conn = await open_tls(tls_server.port, client_ctx)
    await exchange(conn, "GET", tls_server.url)
    session = conn.ssl_object.session  # type: ignore[union-attr]
    await conn.aclose()
    other = client_context(ca)
    conn = await open_tls(tls_server.port, other, session=session)
    _, body = await exchange(conn, "GET", tls_server.url)
    assert body == b"hello"
    assert not conn.ssl_object.session_reused  # type: ignore[union-attr]
    await conn.aclose()


async def test_untrusted_certificate_is_a_connect_error(
    cert: trustme.LeafCert,
) -> None:
    baseline = open_fds()
    ctx = server_context(cert, "TLSv1.3")
    with TestServer(tls=ctx) as srv:
        stranger = client_context(trustme.CA())
        with pytest.raises(
            hintpool.ConnectError, match="CERTIFICATE_VERIFY_FAILED"
        ) as info:
            await open_tls(srv.port, stranger)
        # The pool never retries a TLS failure: it tells them by their cause.
        assert isinstance(info.value.__cause__, ssl.SSLError)
    await fds_back_to(baseline)


async def test_stalled_handshake_is_a_connect_timeout(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    baseline = open_fds()
    with RawTLSServer(server_context(cert, "TLSv1.3"), "stall") as srv:
        with pytest.raises(hintpool.ConnectTimeout):
            await AsyncFastConnection.open(
                https_origin(srv.port),
                timeout=0.1,
                ssl_context=client_ctx,
                server_hostname="localhost",
            )
    await fds_back_to(baseline)


async def test_body_delimited_by_a_ragged_eof(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    body = os.urandom(100_000)
    ctx = server_context(cert, "TLSv1.2")
    with RawTLSServer(ctx, "close-delimited", body) as srv:
        conn = await open_tls(srv.port, client_ctx)
        _, got = await exchange(conn, "GET", srv.url)
        assert got == body
        assert conn.is_closed()


async def test_ragged_eof_without_response_is_server_disconnected(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    with RawTLSServer(server_context(cert, "TLSv1.3"), "no-response") as srv:
        conn = await open_tls(srv.port, client_ctx)
        with pytest.raises(hintpool.RemoteProtocolError, match="without sending"):
            await exchange(conn, "GET", srv.url)
        assert conn.nothing_received()


async def test_large_bodies_both_ways_stay_bounded(
    tls_server: TestServer, client_ctx: ssl.SSLContext
) -> None:
    conn = await open_tls(tls_server.port, client_ctx)
    payload = os.urandom(3_000_000)
    headers = [(b"Content-Length", str(len(payload)).encode())]
    _, body = await exchange(
        conn, "POST", tls_server.url + "/echo", headers=headers, content=payload
    )
    assert body == payload
    url = tls_server.url + "/bytes/10000000"
    response = await conn.handle_async_request(request("GET", url))
    total = most = 0
    async for chunk in response.stream:  # type: ignore[union-attr]
        total += len(chunk)
        for _ in range(10):
            await asyncio.sleep(0)
        most = max(most, sum(map(len, conn._codec.body)))
    await response.stream.aclose()  # type: ignore[union-attr]
    assert total == 10_000_000
    assert most <= READ_HIGH_WATER + 512 * 1024
    assert conn.is_idle()
    await conn.aclose()


async def test_server_closing_an_idle_tls_connection_is_noticed(
    cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    idle = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(OK)
        await w.drain()
        await idle.wait()  # close only once the client is idle
        w.close()
        await w.wait_closed()

    async with RawServer(handler, tls=server_context(cert, "TLSv1.3")) as srv:
        conn = await open_tls(srv.port, client_ctx)
        _, body = await exchange(conn, "GET", srv.url)
        assert body == b"ok" and conn.is_idle()
        idle.set()
        for _ in range(1000):
            if conn.server_closed():
                break
            await asyncio.sleep(0.005)
        assert conn.server_closed()
        stream = conn.network_stream
        await conn.aclose()
        assert stream is not None
        assert stream.get_extra_info("ssl_object") is conn.ssl_object


# -- trace: the same events as httpcore's own connection --------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.events.append((name, info))

    def shape(self) -> list[tuple[str, list[str]]]:
        return [(name, sorted(info)) for name, info in self.events]


async def httpcore_trace(
    url: str, method: str = "GET", ssl_context: ssl.SSLContext | None = None, **kw: Any
) -> Recorder:
    recorder = Recorder()
    kw.setdefault("headers", [(b"Host", url.split("/")[2].encode())])
    async with httpcore.AsyncConnectionPool(ssl_context=ssl_context) as pool:
        try:
            extensions = {**kw.pop("extensions", {}), "trace": recorder}
            await pool.request(method, url, extensions=extensions, **kw)
        except httpcore.TimeoutException:
            pass
    return recorder


async def our_trace(
    url: str, method: str = "GET", ssl_context: ssl.SSLContext | None = None, **kw: Any
) -> Recorder:
    recorder = Recorder()
    kw.setdefault("headers", [(b"Host", url.split("/")[2].encode())])
    extensions = {**kw.pop("extensions", {}), "trace": recorder}
    req = httpcore.Request(method, url, extensions=extensions, **kw)
    conn = await AsyncFastConnection.open(
        req.url.origin,
        timeout=None,
        ssl_context=ssl_context,
        server_hostname="127.0.0.1" if ssl_context else None,
        trace=recorder,
    )
    try:
        response = await conn.handle_async_request(req)
        try:
            await response.aread()
        finally:
            await response.aclose()
    except hintpool.TimeoutException:
        pass
    finally:
        await conn.aclose()
    return recorder


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_trace_events_match_httpcore(method: str) -> None:
    with TestServer() as srv:
        kw: dict[str, Any] = {}
        if method == "POST":
            host = srv.url.split("/")[2].encode()
            headers = [(b"Host", host), (b"Content-Length", b"3")]
            kw = {"content": b"abc", "headers": headers}
        theirs = await httpcore_trace(srv.url + "/echo", method, **kw)
        ours = await our_trace(srv.url + "/echo", method, **kw)
    assert ours.shape() == theirs.shape()
    assert ours.events[0][1] == theirs.events[0][1]  # host, port, ...
    name, info = ours.events[-5]
    assert name == "http11.receive_response_headers.complete"
    version, status, reason, headers = info["return_value"]
    assert (version, status, reason) == (b"HTTP/1.1", 200, b"OK")
    assert headers == theirs.events[-5][1]["return_value"][3]


async def test_trace_events_match_httpcore_over_tls(
    cert: trustme.LeafCert, ca: trustme.CA
) -> None:
    with TestServer(tls=server_context(cert, "TLSv1.3")) as srv:
        theirs = await httpcore_trace(srv.url, ssl_context=client_context(ca))
        ours = await our_trace(srv.url, ssl_context=client_context(ca))
    assert ours.shape() == theirs.shape()
    names = [name for name, _ in ours.events]
    assert names[:4] == [
        "connection.connect_tcp.started",
        "connection.connect_tcp.complete",
        "connection.start_tls.started",
        "connection.start_tls.complete",
    ]


async def test_trace_events_on_a_read_timeout_match_httpcore() -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.Event().wait()

    async with RawServer(handler) as srv:
        kw = {"extensions": {"timeout": {"read": 0.05}}}
        theirs = await httpcore_trace(srv.url, **kw)
        ours = await our_trace(srv.url, **kw)
    assert ours.shape() == theirs.shape()
    assert ours.shape()[-3:] == [
        ("http11.receive_response_headers.failed", ["exception"]),
        ("http11.response_closed.started", []),
        ("http11.response_closed.complete", ["return_value"]),
    ]
