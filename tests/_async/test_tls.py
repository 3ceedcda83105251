"""TLS session resumption against a local TLS server, TLS 1.2 and 1.3.

The server records, per connection, whether *its* side of the handshake
resumed a session (``ConnectionRecord.tls_resumed``): the client's own
statistics are checked against that.
"""

from __future__ import annotations

import ssl

import httpcore
import httpx
import pytest
import trustme

import hintpool

from ..concurrency import AsyncTaskGroup
from ..fixtures_server import ServerFactory
from ..server import ServerConfig, TestServer
from ..tls_helpers import TLS_VERSIONS, RawTLSServer, client_context, server_context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture(params=TLS_VERSIONS)
def tls_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_ctx(cert: trustme.LeafCert, tls_version: str) -> ssl.SSLContext:
    return server_context(cert, tls_version)


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return client_context(ca)


def resumed_after_first(srv: TestServer) -> tuple[int, int]:
    """(resumed, total) over the server's connections after the first."""
    records = srv.connections
    assert records, "no connection reached the server"
    assert records[0].tls_resumed is False
    later = records[1:]
    return sum(bool(r.tls_resumed) for r in later), len(later)


def assert_resumed(srv: TestServer, stats: hintpool.PoolStatistics) -> None:
    resumed, total = resumed_after_first(srv)
    assert total >= 10
    assert resumed >= 0.99 * total, srv.connections
    # The client counts what the server saw.
    assert stats.tls_handshakes_full == 1 + total - resumed
    assert stats.tls_handshakes_resumed == resumed
    assert stats.tls_handshake_seconds > 0


async def get(pool: hintpool.AsyncConnectionPool, url: str, **ext: object) -> bytes:
    response = await pool.request("GET", url, extensions=ext or None)
    assert response.status == 200
    return response.content


# -- resumption ---------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("max_requests", [1, 3])
async def test_new_connections_after_max_retirement_resume(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    max_requests: int,
) -> None:
    # max_requests=1: every response says "Connection: close", so the session
    # is taken from a connection that is not reused afterwards.
    srv = server_factory(host="localhost", tls=server_ctx, max_requests=max_requests)
    async with hintpool.AsyncConnectionPool(ssl_context=client_ctx) as pool:
        for _ in range(20 * max_requests):
            assert await get(pool, srv.url + "/") == b"hello"
        stats = pool.statistics()
        assert pool.tls_session_cache is not None
        assert len(pool.tls_session_cache) == 1
    assert stats.connections_opened == 20
    assert_resumed(srv, stats)
    origin = stats.origins[f"https://localhost:{srv.port}"]
    assert origin.tls_handshakes_resumed == stats.tls_handshakes_resumed


@pytest.mark.anyio
async def test_connections_evicted_by_the_idle_limit_resume(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    srv = server_factory(host="localhost", tls=server_ctx)
    async with hintpool.AsyncConnectionPool(
        ssl_context=client_ctx, max_keepalive_connections=0
    ) as pool:
        for _ in range(15):
            await get(pool, srv.url + "/")
        stats = pool.statistics()
    assert stats.connections_opened == 15
    assert_resumed(srv, stats)


@pytest.mark.anyio
async def test_concurrent_new_connections_resume(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    srv = server_factory(host="localhost", tls=server_ctx)
    async with hintpool.AsyncConnectionPool(ssl_context=client_ctx) as pool:
        await get(pool, srv.url + "/")  # the first connection: full handshake
        async with AsyncTaskGroup() as tg:
            for _ in range(20):
                tg.start_soon(get, pool, srv.url + "/delay/0.2")
        stats = pool.statistics()
    assert stats.connections_opened >= 11
    assert_resumed(srv, stats)


@pytest.mark.anyio
async def test_through_the_httpx_transport(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    tls_version: str,
) -> None:
    srv = server_factory(host="localhost", tls=server_ctx, max_requests=1)
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx)
    async with httpx.AsyncClient(transport=transport) as c:
        for _ in range(12):
            r = await c.get(srv.url + "/")
            assert r.text == "hello"
        ssl_object = r.extensions["network_stream"].get_extra_info("ssl_object")
        assert ssl_object.session_reused
        assert ssl_object.version() == tls_version[:7]
        stats = transport.statistics()
    assert_resumed(srv, stats)


@pytest.mark.anyio
async def test_cache_turned_off(
    server_factory: ServerFactory, cert: trustme.LeafCert, client_ctx: ssl.SSLContext
) -> None:
    srv = server_factory(
        host="localhost", tls=server_context(cert, "TLSv1.3"), max_requests=1
    )
    for setting in (False, 0):
        async with hintpool.AsyncConnectionPool(
            ssl_context=client_ctx, tls_session_cache=setting
        ) as pool:
            assert pool.tls_session_cache is None
            for _ in range(3):
                await get(pool, srv.url + "/")
            stats = pool.statistics()
        assert (stats.tls_handshakes_full, stats.tls_handshakes_resumed) == (3, 0)
    assert not any(r.tls_resumed for r in srv.connections)


# -- security: a session is only offered where it was verified -------------------


@pytest.mark.anyio
async def test_host_and_sni_never_share_a_session(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    # One server, one port, one certificate valid for both names: a session
    # offered across names *would* resume. It must not be offered.
    srv = server_factory(host="localhost", tls=server_ctx, max_requests=1)
    by_name = f"https://localhost:{srv.port}/"
    by_ip = f"https://127.0.0.1:{srv.port}/"
    async with hintpool.AsyncConnectionPool(ssl_context=client_ctx) as pool:
        await get(pool, by_name)
        await get(pool, by_name)
        await get(pool, by_ip)  # another host and SNI
        await get(pool, by_ip, sni_hostname="localhost")  # same SNI, other host
        await get(pool, by_ip)
        await get(pool, by_ip, sni_hostname="localhost")
        cache = pool.tls_session_cache
        assert cache is not None
        assert len(cache) == 3
    assert [r.tls_resumed for r in srv.connections] == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]


@pytest.mark.anyio
async def test_another_port_never_gets_the_session(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    # Both servers share one server context, hence one ticket key: only the
    # client's keying keeps the session on its own port.
    first = server_factory(host="localhost", tls=server_ctx, max_requests=1)
    second = server_factory(host="localhost", tls=server_ctx, max_requests=1)
    async with hintpool.AsyncConnectionPool(ssl_context=client_ctx) as pool:
        await get(pool, first.url + "/")
        await get(pool, first.url + "/")
        await get(pool, second.url + "/")
        await get(pool, second.url + "/")
    assert [r.tls_resumed for r in first.connections] == [False, True]
    assert [r.tls_resumed for r in second.connections] == [False, True]


@pytest.mark.anyio
async def test_new_context_means_a_fresh_cache(
    server_factory: ServerFactory, server_ctx: ssl.SSLContext, ca: trustme.CA
) -> None:
    srv = server_factory(host="localhost", tls=server_ctx, max_requests=1)
    for _ in range(2):  # same verify settings, but a new transport each time
        transport = hintpool.AsyncHTTPTransport(verify=client_context(ca))
        async with httpx.AsyncClient(transport=transport) as c:
            await c.get(srv.url + "/")
            await c.get(srv.url + "/")
    assert [r.tls_resumed for r in srv.connections] == [False, True, False, True]


# -- bad input: always a full handshake, never an error ------------------------


@pytest.mark.anyio
async def test_server_with_new_ticket_keys_refuses_then_resumes(
    cert: trustme.LeafCert, tls_version: str, client_ctx: ssl.SSLContext
) -> None:
    config = ServerConfig(max_requests=1)
    async with hintpool.AsyncConnectionPool(ssl_context=client_ctx) as pool:
        with TestServer("localhost", config, server_context(cert, tls_version)) as a:
            port = a.port
            await get(pool, a.url + "/")
            await get(pool, a.url + "/")
            assert [r.tls_resumed for r in a.connections] == [False, True]
        # A restart: same port, new server context, new ticket keys / no
        # session-ID cache. The cached session is refused, silently.
        restarted = TestServer(
            "localhost", config, server_context(cert, tls_version), port=port
        )
        with restarted as b:
            for _ in range(3):
                assert await get(pool, b.url + "/") == b"hello"
            assert [r.tls_resumed for r in b.connections] == [False, True, True]
        stats = pool.statistics()
    assert (stats.tls_handshakes_full, stats.tls_handshakes_resumed) == (2, 3)


@pytest.mark.anyio
async def test_a_session_the_server_cannot_use_is_a_full_handshake(
    server_factory: ServerFactory,
    cert: trustme.LeafCert,
    tls_version: str,
    client_ctx: ssl.SSLContext,
) -> None:
    # Plant another server's session under this server's key, as a corrupt
    # or foreign ticket would be: the server cannot decrypt it.
    other = server_factory(host="localhost", tls=server_context(cert, tls_version))
    srv = server_factory(
        host="localhost", tls=server_context(cert, tls_version), max_requests=1
    )
    async with hintpool.AsyncConnectionPool(ssl_context=client_ctx) as pool:
        await get(pool, other.url + "/")
        cache = pool.tls_session_cache
        assert cache is not None
        foreign = cache.get((client_ctx, "localhost", other.port, "localhost"))
        assert foreign is not None
        cache.put((client_ctx, "localhost", srv.port, "localhost"), foreign)
        for _ in range(3):
            await get(pool, srv.url + "/")
        stats = pool.statistics()
    assert [r.tls_resumed for r in srv.connections] == [False, True, True]
    origin = stats.origins[f"https://localhost:{srv.port}"]
    assert (origin.tls_handshakes_full, origin.tls_handshakes_resumed) == (1, 2)


@pytest.mark.anyio
async def test_untrusted_certificate_is_a_connect_error_with_the_reason(
    server_factory: ServerFactory, server_ctx: ssl.SSLContext
) -> None:
    srv = server_factory(host="localhost", tls=server_ctx)
    other_ca = client_context(trustme.CA())
    transport = hintpool.AsyncHTTPTransport(verify=other_ca)
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await c.get(srv.url + "/")
        stats = transport.statistics()
        cache = transport.pool.tls_session_cache
        assert cache is not None
        assert len(cache) == 0
    assert stats.connections_opened == 0
    assert stats.open == 0


@pytest.mark.anyio
async def test_hostname_mismatch_is_a_connect_error(
    server_factory: ServerFactory, ca: trustme.CA, client_ctx: ssl.SSLContext
) -> None:
    only_localhost = ca.issue_cert("localhost")
    srv = server_factory(
        host="localhost", tls=server_context(only_localhost, "TLSv1.3")
    )
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx)
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.ConnectError, match="mismatch"):
            await c.get(f"https://127.0.0.1:{srv.port}/")
        # The failed handshake left nothing behind: the right name works.
        assert (await c.get(srv.url + "/")).text == "hello"


@pytest.mark.anyio
async def test_stalled_handshake_is_a_connect_timeout(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx)
    with RawTLSServer(server_ctx, "stall") as srv:
        async with httpx.AsyncClient(transport=transport) as c:
            with pytest.raises(httpx.ConnectTimeout):
                await c.get(srv.url + "/", timeout=httpx.Timeout(5, connect=0.2))
            assert transport.statistics().open == 0


# -- the stream: EOF without close_notify, big bodies, timeouts ---------------------


@pytest.mark.anyio
async def test_body_delimited_by_a_close_without_close_notify(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    body = b"y" * 200_000
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx)
    with RawTLSServer(server_ctx, "close-delimited", body) as srv:
        async with httpx.AsyncClient(transport=transport) as c:
            for _ in range(2):
                r = await c.get(srv.url + "/")
                assert r.content == body


@pytest.mark.anyio
async def test_close_without_response_is_server_disconnected(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx)
    with RawTLSServer(server_ctx, "no-response") as srv:
        async with httpx.AsyncClient(transport=transport) as c:
            with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
                await c.get(srv.url + "/")
            cache = transport.pool.tls_session_cache
            assert cache is not None
            assert len(cache) == 0  # no response was read: nothing stored


@pytest.mark.anyio
async def test_large_bodies_both_ways(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    srv = server_factory(host="localhost", tls=server_ctx)
    payload = bytes(range(256)) * 8192  # 2 MiB, many TLS records
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx)
    async with httpx.AsyncClient(transport=transport) as c:
        r = await c.post(srv.url + "/echo", content=payload)
        assert r.content == payload
        r = await c.get(srv.url + "/chunked/300000")
        assert r.content == b"x" * 300_000
        assert transport.statistics().connections_opened == 1


@pytest.mark.anyio
async def test_read_timeout_over_tls(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    srv = server_factory(host="localhost", tls=server_ctx)
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx)
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(srv.url + "/delay/5", timeout=httpx.Timeout(5, read=0.2))
        assert (await c.get(srv.url + "/")).text == "hello"


@pytest.mark.anyio
async def test_custom_network_backend_keeps_its_own_tls(
    server_factory: ServerFactory,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    # A backend that is not one of httpcore's socket backends (a mock, a
    # user's own) starts TLS itself: no session is offered, nothing counted.
    class Wrapped(httpcore.AsyncNetworkBackend):
        def __init__(self) -> None:
            self._inner = hintpool._synchronization.default_async_backend()

        async def connect_tcp(self, *args: object, **kwargs: object) -> object:
            return await self._inner.connect_tcp(*args, **kwargs)  # type: ignore[arg-type]

        async def sleep(self, seconds: float) -> None:
            await self._inner.sleep(seconds)

    srv = server_factory(host="localhost", tls=server_ctx)
    async with hintpool.AsyncConnectionPool(
        ssl_context=client_ctx, network_backend=Wrapped()
    ) as pool:
        assert await get(pool, srv.url + "/") == b"hello"
        stats = pool.statistics()
    assert (stats.tls_handshakes_full, stats.tls_handshakes_resumed) == (0, 0)
