"""hintpool.AsyncHTTPTransport behind httpx.AsyncClient, against a real server.

The server is the test tree's own (tests/server.py), started per test on a
free port on 127.0.0.1.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import httpx
import pytest
import respx
import trustme

import hintpool

from ..concurrency import async_sleep
from ..fixtures_server import ServerFactory
from ..server import TestServer


def client(**kwargs: object) -> httpx.AsyncClient:
    transport = hintpool.AsyncHTTPTransport(**kwargs)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport)


def pool_stats(c: httpx.AsyncClient) -> hintpool.PoolStatistics:
    transport = c._transport
    assert isinstance(transport, hintpool.AsyncHTTPTransport)
    return transport.statistics()


@pytest.mark.anyio
async def test_drop_in_get_and_post(server: TestServer) -> None:
    async with client() as c:
        r = await c.get(server.url + "/")
        assert (r.status_code, r.text) == (200, "hello")
        assert r.http_version == "HTTP/1.1"
        assert r.reason_phrase == "OK"
        assert r.extensions["network_stream"] is not None
        r = await c.post(server.url + "/echo", content=b"payload")
        assert r.content == b"payload"
        assert r.headers["x-method"] == "POST"
        r = await c.get(server.url + "/chunked/3000")
        assert r.content == b"x" * 3000
    assert server.connections_opened == 1


@pytest.mark.anyio
async def test_streaming_body(server: TestServer) -> None:
    async with client() as c:
        async with c.stream("GET", server.url + "/bytes/100000") as r:
            received = 0
            async for chunk in r.aiter_bytes():
                received += len(chunk)
        assert received == 100000
        assert pool_stats(c).idle == 1


@pytest.mark.anyio
async def test_asks_for_keep_alive_unless_caller_set_connection(
    server: TestServer,
) -> None:
    async with client() as c:
        r = await c.get(server.url + "/headers")
        assert ["connection", "keep-alive"] in json.loads(r.content)
        r = await c.get(server.url + "/headers", headers={"Connection": "close"})
        sent = json.loads(r.content)
        assert ["connection", "close"] in sent
        assert ["connection", "keep-alive"] not in sent


@pytest.mark.anyio
async def test_short_hint_then_idle_gap_uses_a_new_connection(
    server_factory: ServerFactory,
) -> None:
    # The server closes idle connections after 1 s and says so. hintpool does
    # not reuse such a connection after idling (1 s - 1 s margin = 0).
    srv = server_factory(keep_alive="timeout=1", idle_timeout=1.0)
    async with client() as c:
        assert (await c.get(srv.url + "/")).status_code == 200
        await async_sleep(1.5)
        assert (await c.get(srv.url + "/")).status_code == 200
        stats = pool_stats(c)
    assert stats.connections_opened == 2
    assert srv.connections_opened == 2
    assert srv.requests_after_close == 0


@pytest.mark.anyio
async def test_max_retires_the_connection_before_the_server_closes_it(
    server_factory: ServerFactory,
) -> None:
    # Apache style: max counts down, the server closes after the response
    # that says max=0 -- without a "Connection: close" to warn the client.
    srv = server_factory(
        keep_alive="timeout=5, max={left}", max_requests=2, close_on_last=False
    )
    async with client(prewarm=False) as c:
        for _ in range(5):
            assert (await c.get(srv.url + "/conn")).status_code == 200
        stats = pool_stats(c)
    assert stats.connections_opened == 3
    assert stats.retired_by_max == 2
    assert srv.connections_opened == 3
    assert [rec.requests for rec in srv.connections] == [2, 2, 1]
    assert srv.requests_after_close == 0


@pytest.mark.anyio
async def test_connection_close_response_is_not_reused(server: TestServer) -> None:
    async with client() as c:
        await c.get(server.url + "/close")
        await c.get(server.url + "/")
        stats = pool_stats(c)
    assert stats.connections_opened == 2
    assert stats.reused == 0
    assert server.requests_after_close == 0


@pytest.mark.anyio
async def test_http10_server_is_not_reused(server_factory: ServerFactory) -> None:
    srv = server_factory(http_version=b"1.0")
    async with client() as c:
        assert (await c.get(srv.url + "/")).text == "hello"
        assert (await c.get(srv.url + "/")).text == "hello"
        assert pool_stats(c).connections_opened == 2


@pytest.mark.anyio
async def test_lying_max_gives_one_mapped_error_then_recovers(
    server_factory: ServerFactory,
) -> None:
    # Says max=100 but closes after every second response, without warning.
    srv = server_factory(
        keep_alive="timeout=5, max=100", max_requests=2, close_on_last=False
    )
    async with client() as c:
        await c.get(srv.url + "/")
        await c.get(srv.url + "/")
        srv.wait_closed(1)
        # The FIN has arrived: the readability check at checkout sees it.
        assert (await c.get(srv.url + "/")).status_code == 200
        stats = pool_stats(c)
    assert stats.closed_by_server == 1
    assert stats.open == stats.idle + stats.active


@pytest.mark.anyio
async def test_limits_and_idle_connections(server: TestServer) -> None:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    async with client(limits=limits) as c:
        streams = [c.stream("GET", server.url + "/") for _ in range(4)]
        responses = [await s.__aenter__() for s in streams]
        assert pool_stats(c).active == 4
        for s, r in zip(streams, responses):
            await r.aread()
            await s.__aexit__(None, None, None)
        stats = pool_stats(c)
    assert (stats.open, stats.idle, stats.evicted) == (2, 2, 2)


@pytest.mark.anyio
async def test_pool_timeout_maps_to_httpx(server: TestServer) -> None:
    async with client(limits=httpx.Limits(max_connections=1)) as c:
        async with c.stream("GET", server.url + "/"):
            with pytest.raises(httpx.PoolTimeout):
                await c.get(server.url + "/", timeout=httpx.Timeout(5, pool=0.01))


@pytest.mark.anyio
async def test_read_timeout_maps_to_httpx(server: TestServer) -> None:
    async with client() as c:
        with pytest.raises(httpx.ReadTimeout) as info:
            await c.get(server.url + "/delay/2", timeout=0.1)
        assert isinstance(info.value.__cause__, hintpool.ReadTimeout)
        assert info.value.request.url.path == "/delay/2"
        assert pool_stats(c).open == 0
        assert (await c.get(server.url + "/")).status_code == 200


@pytest.mark.anyio
async def test_connect_error_maps_to_httpx() -> None:
    with TestServer() as srv:
        url = srv.url
    async with client() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(url + "/")
        assert pool_stats(c).open == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "errors"),
    [
        ("/fault/close-no-response", (httpx.RemoteProtocolError,)),
        ("/fault/garbage", (httpx.RemoteProtocolError,)),
        ("/fault/reset-headers", (httpx.ReadError, httpx.RemoteProtocolError)),
        ("/fault/reset-body", (httpx.ReadError, httpx.RemoteProtocolError)),
        ("/fault/truncated-chunked", (httpx.RemoteProtocolError,)),
    ],
)
async def test_server_faults_map_and_the_next_request_works(
    server: TestServer, path: str, errors: tuple[type[Exception], ...]
) -> None:
    async with client() as c:
        with pytest.raises(errors):
            await c.get(server.url + path)
        stats = pool_stats(c)
        assert (stats.open, stats.active) == (0, 0)
        assert (await c.get(server.url + "/")).text == "hello"


@pytest.mark.anyio
async def test_unsupported_protocol_maps_to_httpx() -> None:
    transport = hintpool.AsyncHTTPTransport()
    request = httpx.Request("GET", "ftp://example.test/")
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(request)
    await transport.aclose()


def test_http1_and_http2_off_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="http1 and http2 cannot both be False"):
        hintpool.AsyncHTTPTransport(http1=False)


@pytest.mark.anyio
async def test_accepts_every_httpx_transport_keyword(server: TestServer) -> None:
    transport = hintpool.AsyncHTTPTransport(
        verify=True,
        cert=None,
        trust_env=False,
        http1=True,
        http2=False,
        limits=httpx.Limits(max_connections=5),
        proxy=None,
        uds=None,
        local_address="127.0.0.1",
        retries=1,
        socket_options=[],
        keepalive_margin=0.5,
        max_keepalive_timeout=60,
    )
    async with httpx.AsyncClient(transport=transport) as c:
        assert (await c.get(server.url + "/")).status_code == 200
    assert transport.pool.policy.margin == 0.5
    assert "AsyncHTTPTransport" in repr(transport)


@pytest.mark.anyio
async def test_respx_mock_intercepts_hintpool_transports() -> None:
    async with client() as c:
        with respx.mock:
            route = respx.get("http://example.test/thing").respond(200, text="mocked")
            r = await c.get("http://example.test/thing")
        assert r.text == "mocked"
        assert route.called


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[TestServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    with TestServer(host="localhost", tls=ctx) as srv:
        yield srv


@pytest.mark.anyio
async def test_https_with_a_trusted_ca(tls_server: TestServer, ca: trustme.CA) -> None:
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    async with client(verify=verify) as c:
        r = await c.get(tls_server.url + "/")
        assert r.text == "hello"
        await c.get(tls_server.url + "/")
        assert pool_stats(c).reused == 1
    async with client() as c:  # the system trust store does not know the CA
        with pytest.raises(httpx.ConnectError):
            await c.get(tls_server.url + "/")
