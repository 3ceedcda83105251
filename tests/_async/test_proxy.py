"""Proxies: forwarding, CONNECT tunnels and SOCKS5, through the test proxy.

``tests/proxy_server.py`` is a small proxy on its own thread that records
what it saw; the origins are the test tree's ``TestServer``. Every test runs
on both wires (see ``tests/conftest.py``), on asyncio and trio, and sync.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from typing import Any, Callable

import httpx
import pytest
import trustme

import hintpool

from ..concurrency import async_sleep
from ..fixtures_server import ServerFactory
from ..proxy_server import ProxyBehaviour, TestProxy
from ..tls_helpers import client_context, server_context

ProxyFactory = Callable[..., TestProxy]

SECRET = "s3cr:t@pw"  # needs percent-encoding in a URL


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    return client_context(ca)


@pytest.fixture
def tls_ctx(cert: trustme.LeafCert) -> ssl.SSLContext:
    return server_context(cert, "TLSv1.3")


@pytest.fixture
def proxy_factory() -> Iterator[ProxyFactory]:
    proxies: list[TestProxy] = []

    def make(
        kind: str = "http", tls: ssl.SSLContext | None = None, **kw: Any
    ) -> TestProxy:
        proxy = TestProxy(kind, ProxyBehaviour(**kw), tls=tls)
        proxies.append(proxy)
        proxy.start()
        return proxy

    try:
        yield make
    finally:
        for proxy in reversed(proxies):
            proxy.stop()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def fds_settle(baseline: int) -> None:
    """Closed sockets (ours, and the proxy thread's) go within a few loop
    turns: wait for that, bounded."""
    for _ in range(300):
        if open_fds() <= baseline:
            return
        await async_sleep(0.01)
    assert open_fds() <= baseline, os.listdir("/proc/self/fd")


async def fin_sent(proxy: TestProxy) -> None:
    """Until the proxy half-closed a connection, and a moment for its FIN
    to arrive (the proxy reads on, as servers do)."""
    for _ in range(500):
        if proxy.fins_sent:
            break
        await async_sleep(0.01)
    await async_sleep(0.05)


async def get(pool: hintpool.AsyncConnectionPool, url: str) -> bytes:
    response = await pool.request("GET", url)
    assert response.status == 200, response
    return response.content


# -- forwarding ---------------------------------------------------------------


@pytest.mark.anyio
async def test_http_targets_are_forwarded_on_shared_proxy_connections(
    server_factory: ServerFactory, proxy_factory: ProxyFactory
) -> None:
    one = server_factory(keep_alive="timeout=5, max=0")
    two = server_factory(keep_alive="timeout=5, max=0")
    proxy = proxy_factory(keep_alive="timeout=30, max=100")
    async with hintpool.AsyncConnectionPool(proxy=proxy.url) as pool:
        for _ in range(2):
            await get(pool, one.url + "/")
            await get(pool, two.url + "/?b=c")
        stats = pool.statistics()
    # Absolute-form targets, and one connection to the proxy for both
    # origins: the origins' max=0 (which the proxy does not pass on) does
    # not count, the proxy's hint does.
    assert proxy.requests[:2] == [("GET", one.url + "/"), ("GET", two.url + "/?b=c")]
    assert proxy.connections == 1
    assert list(stats.origins) == [proxy.url]
    entry = stats.origins[proxy.url]
    assert entry.proxy == proxy.url
    assert entry.last_hint == hintpool.KeepAlive(timeout=30.0, max=100)
    proxy_stats = stats.proxies[proxy.url]
    assert proxy_stats.forward_connections_opened == 1
    assert proxy_stats.tunnels_opened == 0
    assert proxy_stats.reused == 3
    assert proxy_stats.last_hint == hintpool.KeepAlive(timeout=30.0, max=100)


@pytest.mark.anyio
async def test_the_proxy_max_retires_forward_connections(
    server: Any, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(keep_alive="timeout=30, max=0")
    # prewarm=False: a replacement opened ahead would make the count vary.
    async with hintpool.AsyncConnectionPool(proxy=proxy.url, prewarm=False) as pool:
        for _ in range(3):
            await get(pool, server.url + "/")
        assert pool.statistics().origins[proxy.url].retired_by_max == 3
    assert proxy.connections == 3


@pytest.mark.anyio
async def test_forwarded_request_carries_proxy_headers_and_decoded_credentials(
    server: Any, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(auth=("us@er", SECRET))
    encoded = httpx.URL(proxy.url).copy_with(username="us@er", password=SECRET)
    assert "%40" in str(encoded)  # percent-encoded in the URL, decoded to send
    config = httpx.Proxy(encoded, headers={"X-Proxy-Tag": "crawler-7"})
    async with hintpool.AsyncConnectionPool(proxy=config) as pool:
        await get(pool, server.url + "/")
        assert SECRET not in repr(pool)
        assert all(SECRET not in key for key in pool.statistics().origins)
        assert pool.proxy == proxy.url
    headers = proxy.headers[0]
    assert headers["x-proxy-tag"] == "crawler-7"
    assert headers["proxy-authorization"].startswith("Basic ")


@pytest.mark.anyio
async def test_a_forwarded_post_carries_its_body(
    server: Any, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory()
    body = b"x" * 100_000
    async with hintpool.AsyncConnectionPool(proxy=proxy.url) as pool:
        response = await pool.request("POST", server.url + "/echo", content=body)
        assert response.status == 200
        assert response.content == body
    assert proxy.requests == [("POST", server.url + "/echo")]


@pytest.mark.anyio
async def test_a_forward_connection_closed_while_idle_is_retried_as_stale(
    server: Any, proxy_factory: ProxyFactory
) -> None:
    # The proxy closes after each forwarded response without saying so.
    proxy = proxy_factory(max_forwarded=1)
    pool = hintpool.AsyncConnectionPool(proxy=proxy.url)
    pool._state.server_closed = lambda conn: False
    async with pool:
        await get(pool, server.url + "/")
        await fin_sent(proxy)
        await get(pool, server.url + "/")
        stats = pool.statistics()
    assert stats.connections_opened == 2
    assert stats.retries == stats.reused <= 1
    assert stats.network_errors == stats.protocol_errors == 0


@pytest.mark.anyio
async def test_a_post_on_a_forward_connection_closed_while_idle_is_not_resent(
    server: Any, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory(max_forwarded=1)
    pool = hintpool.AsyncConnectionPool(proxy=proxy.url)
    pool._state.server_closed = lambda conn: False
    async with pool:
        await pool.request("POST", server.url + "/echo", content=b"one")
        await fin_sent(proxy)
        try:
            await pool.request("POST", server.url + "/echo", content=b"two")
            succeeded = 2
        except (hintpool.RemoteProtocolError, hintpool.NetworkError):
            succeeded = 1
        stats = pool.statistics()
    # Never retried: a POST that met the closed connection fails, and one
    # that succeeded went on a new connection (seen closed at checkout).
    assert stats.retries == 0
    assert stats.reused == 2 - succeeded
    assert server.requests_served == succeeded


@pytest.mark.anyio
async def test_forwarded_407_is_the_response(
    server: Any, proxy_factory: ProxyFactory
) -> None:
    # As with httpx: a forwarded request's 407 is an ordinary response.
    proxy = proxy_factory(auth=("user", "right"))
    async with hintpool.AsyncConnectionPool(
        proxy=proxy.url.replace("://", "://user:wrong@")
    ) as pool:
        response = await pool.request("GET", server.url + "/")
    assert response.status == 407


# -- CONNECT tunnels ----------------------------------------------------------


@pytest.mark.anyio
async def test_https_targets_get_one_tunnel_per_origin_and_the_origin_hint(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    tls_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    one = server_factory(tls=tls_ctx, keep_alive="timeout=5, max={left}")
    two = server_factory(tls=tls_ctx, keep_alive="timeout=5, max={left}")
    proxy = proxy_factory(auth=("user", SECRET))
    auth_url = httpx.URL(proxy.url).copy_with(username="user", password=SECRET)
    async with hintpool.AsyncConnectionPool(
        proxy=auth_url, ssl_context=client_ctx
    ) as pool:
        for _ in range(3):
            await get(pool, one.url + "/")
            await get(pool, two.url + "/")
        stats = pool.statistics()
    connects = [r for r in proxy.requests if r[0] == "CONNECT"]
    assert sorted(connects) == sorted(
        [("CONNECT", one.url[len("https://") :]), ("CONNECT", two.url[8:])]
    )
    assert proxy.connections == 2
    assert set(stats.origins) == {one.url, two.url}
    for url in (one.url, two.url):
        entry = stats.origins[url]
        assert entry.proxy == proxy.url
        assert entry.last_hint is not None and entry.last_hint.timeout == 5.0
        assert entry.reused == 2
    assert stats.proxies[proxy.url].tunnels_opened == 2


@pytest.mark.anyio
async def test_tls_sessions_are_resumed_inside_new_tunnels(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    tls_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    origin = server_factory(tls=tls_ctx, max_requests=1)
    proxy = proxy_factory()
    async with hintpool.AsyncConnectionPool(
        proxy=proxy.url, ssl_context=client_ctx
    ) as pool:
        for _ in range(10):
            await get(pool, origin.url + "/")
        stats = pool.statistics()
    assert stats.connections_opened == 10
    assert stats.tls_handshakes_full == 1
    assert stats.tls_handshakes_resumed == 9
    assert sum(bool(r.tls_resumed) for r in origin.connections) == 9


@pytest.mark.anyio
async def test_a_tunnel_closed_while_idle_is_retried_as_stale(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    tls_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    # The origin closes after each response without saying so; the proxy
    # passes the close on. The pool does not see it before reuse.
    origin = server_factory(tls=tls_ctx, max_requests=1, close_on_last=False)
    proxy = proxy_factory()
    pool = hintpool.AsyncConnectionPool(proxy=proxy.url, ssl_context=client_ctx)
    pool._state.server_closed = lambda conn: False
    async with pool:
        await get(pool, origin.url + "/")
        origin.wait_closed(1)
        await get(pool, origin.url + "/")
        stats = pool.statistics()
    # Seen closed at checkout (fast wire) or retried once (httpcore's).
    assert stats.connections_opened == 2
    assert stats.retries == stats.reused <= 1
    assert stats.network_errors == stats.protocol_errors == 0


# -- SOCKS5 -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_socks5_tunnels_plain_and_tls_origins(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    tls_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    scheme: str,
) -> None:
    plain = server_factory(host="localhost", keep_alive="timeout=5, max=0")
    secure = server_factory(host="localhost", tls=tls_ctx)
    proxy = proxy_factory("socks5", auth=("user", SECRET))
    url = httpx.URL(proxy.url.replace("socks5", scheme)).copy_with(
        username="user", password=SECRET
    )
    # prewarm=False: the tunnels counted are the requests' own.
    async with hintpool.AsyncConnectionPool(
        proxy=url, ssl_context=client_ctx, prewarm=False
    ) as pool:
        for _ in range(3):
            await get(pool, f"http://localhost:{plain.port}/")
            await get(pool, f"https://localhost:{secure.port}/")
        stats = pool.statistics()
    # max=0 from the plain origin: a new tunnel for each of its requests.
    assert stats.origins[f"http://localhost:{plain.port}"].retired_by_max == 3
    assert proxy.connections == 4
    # socks5h: the proxy resolves the name; socks5: we send an address.
    expected = (3, "localhost") if scheme == "socks5h" else (1, "127.0.0.1")
    assert set(proxy.socks_targets) == {expected}
    assert stats.proxies[str(url.copy_with(username=None, password=None))]


# -- errors -------------------------------------------------------------------

BAD_CONNECT_ANSWERS = [
    (b"garbage\r\n\r\n", "not HTTP/1.x"),
    (b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "403 Forbidden"),
    (
        b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
        "407 Proxy Authentication Required",
    ),
    (b"HTTP/1.1 200 OK\r\n", "closed the connection before answering"),
    (b"", "closed the connection before answering"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("answer", "message"), BAD_CONNECT_ANSWERS)
async def test_a_bad_answer_to_connect_fails_that_request_only(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    client_ctx: ssl.SSLContext,
    tls_ctx: ssl.SSLContext,
    answer: bytes,
    message: str,
) -> None:
    origin = server_factory(tls=tls_ctx)
    proxy = proxy_factory(connect_answer=answer)
    pool = hintpool.AsyncConnectionPool(
        proxy=proxy.url.replace("://", f"://user:{SECRET.replace('@', '%40')}@"),
        ssl_context=client_ctx,
    )
    async with pool:
        baseline = open_fds()
        with pytest.raises(hintpool.ProxyError, match=message) as info:
            await pool.request("GET", origin.url + "/")
        assert SECRET not in str(info.value)
        assert "s3cr" not in str(info.value)
        stats = pool.statistics()
        assert stats.proxy_errors == 1
        assert stats.origins[origin.url].proxy_errors == 1
        assert stats.open == 0
        proxy.behaviour.connect_answer = None
        await get(pool, origin.url + "/")
    await fds_settle(baseline)


@pytest.mark.anyio
async def test_http10_200_answer_to_connect_is_accepted(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    client_ctx: ssl.SSLContext,
    tls_ctx: ssl.SSLContext,
) -> None:
    origin = server_factory(tls=tls_ctx)
    proxy = proxy_factory(http10=True)
    async with hintpool.AsyncConnectionPool(
        proxy=proxy.url, ssl_context=client_ctx
    ) as pool:
        await get(pool, origin.url + "/")


@pytest.mark.anyio
async def test_a_proxy_that_never_answers_connect_times_out(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    client_ctx: ssl.SSLContext,
    tls_ctx: ssl.SSLContext,
) -> None:
    origin = server_factory(tls=tls_ctx)
    proxy = proxy_factory(stall_connect=True)
    baseline = open_fds()
    async with hintpool.AsyncConnectionPool(
        proxy=proxy.url, ssl_context=client_ctx
    ) as pool:
        timeout = {"connect": 0.2, "read": 5.0, "write": 5.0, "pool": 5.0}
        with pytest.raises(hintpool.ConnectTimeout, match="did not open a tunnel"):
            await pool.request("GET", origin.url + "/", extensions={"timeout": timeout})
        assert pool.statistics().open == 0
        assert pool.statistics().connect_timeouts == 1
    await fds_settle(baseline)


@pytest.mark.anyio
async def test_connect_accepted_then_closed_is_a_connect_error(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    client_ctx: ssl.SSLContext,
    tls_ctx: ssl.SSLContext,
) -> None:
    origin = server_factory(tls=tls_ctx)
    proxy = proxy_factory(close_after_connect=True)
    baseline = open_fds()
    async with hintpool.AsyncConnectionPool(
        proxy=proxy.url, ssl_context=client_ctx
    ) as pool:
        with pytest.raises(hintpool.ConnectError):
            await pool.request("GET", origin.url + "/")
        assert pool.statistics().open == 0
    await fds_settle(baseline)


SOCKS_REPLIES = [
    (b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", "connection refused"),
    (b"\x05\x00\x00\x09\x00\x00\x00\x00\x00\x00", "unknown address type 0x09"),
    (b"\x05\x00", "closed the connection during the handshake"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("reply", "message"), SOCKS_REPLIES)
async def test_a_bad_socks_reply_fails_that_request_only(
    server: Any, proxy_factory: ProxyFactory, reply: bytes, message: str
) -> None:
    proxy = proxy_factory("socks5", socks_reply=reply)
    async with hintpool.AsyncConnectionPool(proxy=proxy.url) as pool:
        baseline = open_fds()
        with pytest.raises(hintpool.ProxyError, match=message):
            await pool.request("GET", server.url + "/")
        assert pool.statistics().open == 0
        proxy.behaviour.socks_reply = None
        await get(pool, server.url + "/")
    await fds_settle(baseline)


@pytest.mark.anyio
async def test_socks_wrong_password_is_a_proxy_error(
    server: Any, proxy_factory: ProxyFactory
) -> None:
    proxy = proxy_factory("socks5", auth=("user", "right"))
    url = proxy.url.replace("://", f"://user:{SECRET.replace('@', '%40')}@")
    async with hintpool.AsyncConnectionPool(proxy=url) as pool:
        with pytest.raises(hintpool.ProxyError, match="username and password") as info:
            await pool.request("GET", server.url + "/")
    assert "s3cr" not in str(info.value)


@pytest.mark.anyio
async def test_unreachable_proxy_is_a_connect_error(server: Any) -> None:
    async with hintpool.AsyncConnectionPool(proxy="http://127.0.0.1:9") as pool:
        with pytest.raises(hintpool.ConnectError):
            await pool.request("GET", server.url + "/")


# -- through httpx --------------------------------------------------------------


@pytest.mark.anyio
async def test_transport_maps_proxy_error_to_httpx(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    tls_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    origin = server_factory(tls=tls_ctx)
    proxy = proxy_factory(connect_answer=b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
    transport = hintpool.AsyncHTTPTransport(proxy=proxy.url, verify=client_ctx)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ProxyError, match="502 Bad Gateway"):
            await client.get(origin.url + "/")


@pytest.mark.anyio
async def test_environment_proxies_work_with_hintpool_standing_in(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpx builds one transport per proxy from the environment; with
    # hintpool's class in the place of its own, those are hintpool's.
    srv = server_factory()
    other = server_factory(host="localhost")
    proxy = proxy_factory()
    monkeypatch.setattr(
        httpx._client, "AsyncHTTPTransport", hintpool.AsyncHTTPTransport
    )
    for name in ("ALL_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    async with httpx.AsyncClient() as client:
        assert (await client.get(srv.url + "/")).status_code == 200
        assert (await client.get(f"http://localhost:{other.port}/")).status_code == 200
        transports = [t for t in client._mounts.values() if t is not None]
        assert transports
        assert all(isinstance(t, hintpool.AsyncHTTPTransport) for t in transports)
    assert proxy.requests == [("GET", srv.url + "/")]


# -- https:// proxies -----------------------------------------------------------


@pytest.mark.anyio
async def test_https_proxy_forwards_and_tunnels_tls_in_tls(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    tls_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    plain = server_factory()
    secure = server_factory(tls=tls_ctx, max_requests=1)
    proxy = proxy_factory(tls=tls_ctx)
    config = httpx.Proxy(proxy.url, ssl_context=client_ctx)
    async with hintpool.AsyncConnectionPool(
        proxy=config, ssl_context=client_ctx
    ) as pool:
        for _ in range(3):
            await get(pool, plain.url + "/")
            await get(pool, secure.url + "/")
        stats = pool.statistics()
    assert proxy.url.startswith("https://")
    # One TLS connection to the proxy forwards; each https request had its
    # own tunnel (the origin closes after one request).
    assert proxy.connections == 1 + 3
    assert [m for m, _ in proxy.requests].count("CONNECT") == 3
    forward = stats.origins[proxy.url]
    assert forward.requests == 3 and forward.tls_handshakes_full == 1
    origin = stats.origins[secure.url]
    assert origin.tls_handshakes_full == 1
    assert origin.tls_handshakes_resumed == 2
    assert sum(bool(r.tls_resumed) for r in secure.connections) == 2


@pytest.mark.anyio
async def test_credentials_stay_out_of_debug_logs(
    server_factory: ServerFactory,
    proxy_factory: ProxyFactory,
    tls_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = server_factory()
    secure = server_factory(tls=tls_ctx)
    proxy = proxy_factory(auth=("user", SECRET))
    url = httpx.URL(proxy.url).copy_with(username="user", password=SECRET)
    caplog.set_level("DEBUG", logger="hintpool")

    async def trace(name: str, info: Any) -> None:
        pass  # a trace callback turns on the trace log lines too

    async with hintpool.AsyncConnectionPool(proxy=url, ssl_context=client_ctx) as pool:
        for target in (plain.url, secure.url):
            response = await pool.request(
                "GET", target + "/", extensions={"trace": trace}
            )
            assert response.status == 200
        stats_text = repr(pool.statistics())
    assert caplog.text
    encoded = str(url).split("@")[0]
    for text in (caplog.text, stats_text):
        assert SECRET not in text and encoded not in text
        assert "Proxy-Authorization" not in text
