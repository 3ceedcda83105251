"""Through real proxies (issue #13): squid and tinyproxy forward ``http://``
requests and open CONNECT tunnels; microsocks and Dante are SOCKS5 servers.

What is checked: requests work, plain and TLS origins; forward connections
to the proxy are shared by every origin; a tunnel serves one origin only;
the hint that counts comes from the right hop (the proxy's for forwarded
requests -- squid strips the origin's --, the origin's inside a tunnel);
TLS sessions are resumed inside new tunnels. The servers' own logs say how
many connections they saw.
"""

from __future__ import annotations

import ssl

import httpx
import pytest

import hintpool
from hintpool import KeepAlive

from .conftest import StartProxy, StartServer
from .helpers import async_client, sync_client, unique_prefix
from .servers import (
    RunningServer,
    ServerSpec,
    TLSFiles,
    connections,
    ssl_session_reused,
)
from .servers.proxies import ProxySpec, RunningProxy

pytestmark = pytest.mark.interop
if not hasattr(hintpool, "ProxyError"):  # until the proxy= code is merged
    pytest.skip("this hintpool has no proxy support yet", allow_module_level=True)

HTTP_PROXIES = ("squid", "tinyproxy")
SOCKS_PROXIES = ("microsocks", "dante")
ORIGIN_TIMEOUT = 2.0
REQUESTS = 6


def proxy_for(real_proxies: StartProxy, kind: str) -> RunningProxy:
    return real_proxies(ProxySpec(kind, idle_timeout=2.0))  # type: ignore[arg-type]


@pytest.fixture
def origin(real_servers: StartServer) -> RunningServer:
    return real_servers(ServerSpec("nginx", idle_timeout=ORIGIN_TIMEOUT))


@pytest.fixture
def other_origin(real_servers: StartServer) -> RunningServer:
    return real_servers(ServerSpec("apache", idle_timeout=ORIGIN_TIMEOUT))


@pytest.fixture
def other_tls_origin(real_servers: StartServer, tls_files: TLSFiles) -> RunningServer:
    return real_servers(
        ServerSpec("apache", idle_timeout=ORIGIN_TIMEOUT, tls=tls_files)
    )


def logged_ports(
    server: RunningServer, mark: int, prefix: str, count: int
) -> dict[int, int]:
    records = server.wait_records(count, since=mark, prefix=prefix)
    assert len(records) == count
    return connections(records)


@pytest.mark.parametrize("kind", HTTP_PROXIES + SOCKS_PROXIES)
def test_requests_work_plain_and_tls(
    real_proxies: StartProxy,
    origin: RunningServer,
    nginx_tls: RunningServer,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    proxy = proxy_for(real_proxies, kind)
    client, transport = sync_client(tls=tls_client_context, proxy=proxy.url)
    with client:
        for target in (origin, nginx_tls):
            response = client.get(f"{target.url}/through/{kind}")
            assert (response.status_code, response.text) == (200, "hello\n")
        stats = transport.statistics()
    assert set(stats.proxies) == {proxy.url}
    assert stats.origins[nginx_tls.url].proxy == proxy.url
    assert stats.proxies[proxy.url].requests == 2
    assert stats.proxies[proxy.url].proxy_errors == 0


@pytest.mark.anyio
@pytest.mark.parametrize("kind", HTTP_PROXIES + SOCKS_PROXIES)
async def test_requests_work_async(
    real_proxies: StartProxy,
    origin: RunningServer,
    nginx_tls: RunningServer,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    proxy = proxy_for(real_proxies, kind)
    client, transport = async_client(tls=tls_client_context, proxy=proxy.url)
    async with client:
        for target in (origin, nginx_tls):
            response = await client.get(f"{target.url}/athrough/{kind}")
            assert (response.status_code, response.text) == (200, "hello\n")
        stats = transport.statistics()
    assert stats.proxies[proxy.url].requests == 2


def test_squid_forward_connection_shared_across_origins(
    real_proxies: StartProxy, origin: RunningServer, other_origin: RunningServer
) -> None:
    proxy = proxy_for(real_proxies, "squid")
    mark, prefix = proxy.log_mark(), unique_prefix("shared")
    client, transport = sync_client(proxy=proxy.url)
    with client:
        for index in range(REQUESTS):
            target = (origin, other_origin)[index % 2]
            client.get(f"{target.url}{prefix}{index}").raise_for_status()
        stats = transport.statistics().proxies[proxy.url]
    assert stats.forward_connections_opened == 1
    assert stats.tunnels_opened == 0
    assert (stats.requests, stats.reused) == (REQUESTS, REQUESTS - 1)
    records = proxy.wait_records(
        REQUESTS,
        since=mark,
        match=lambda record: any(prefix in field for field in record.fields),
    )
    assert len(records) == REQUESTS
    assert len({record.port for record in records}) == 1


def test_tinyproxy_forward_closes_after_each_response(
    real_proxies: StartProxy, origin: RunningServer, other_origin: RunningServer
) -> None:
    """tinyproxy closes every client connection after the response without
    saying ``Connection: close``: no request may fail for it."""
    proxy = proxy_for(real_proxies, "tinyproxy")
    client, transport = sync_client(proxy=proxy.url)
    with client:
        for index in range(REQUESTS):
            target = (origin, other_origin)[index % 2]
            client.get(f"{target.url}/tiny/{index}").raise_for_status()
        stats = transport.statistics().proxies[proxy.url]
    assert stats.forward_connections_opened == REQUESTS
    # Until the close is learned (from the second one), a request may find
    # the last connection still open: tinyproxy's FIN is on its way. Sent,
    # it fails before any answer and goes again on a new connection.
    assert stats.requests == REQUESTS + stats.reused
    assert stats.reused <= 2


@pytest.mark.parametrize("kind", ["squid", "tinyproxy", *SOCKS_PROXIES])
def test_tunnel_per_origin(
    real_proxies: StartProxy,
    nginx_tls: RunningServer,
    other_tls_origin: RunningServer,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    proxy = proxy_for(real_proxies, kind)
    targets = (nginx_tls, other_tls_origin)
    marks = [target.log_mark() for target in targets]
    prefix = unique_prefix("tunnel")
    client, transport = sync_client(tls=tls_client_context, proxy=proxy.url)
    with client:
        for index in range(REQUESTS):
            target = targets[index % 2]
            client.get(f"{target.url}{prefix}{index}").raise_for_status()
        stats = transport.statistics()
    assert stats.proxies[proxy.url].tunnels_opened == 2
    for target, mark in zip(targets, marks):
        per_origin = stats.origins[target.url]
        assert per_origin.proxy == proxy.url
        assert (per_origin.connections_opened, per_origin.requests) == (1, 3)
        assert list(logged_ports(target, mark, prefix, REQUESTS // 2).values()) == [3]


def test_squid_hints_from_the_right_hop(
    real_proxies: StartProxy,
    origin: RunningServer,
    nginx_tls: RunningServer,
    tls_client_context: ssl.SSLContext,
) -> None:
    """nginx announces ``timeout=2``: squid strips it from forwarded
    responses and sends none of its own; inside a tunnel it arrives."""
    proxy = proxy_for(real_proxies, "squid")
    client, transport = sync_client(tls=tls_client_context, proxy=proxy.url)
    with client:
        forwarded = client.get(f"{origin.url}/hop")
        tunnelled = client.get(f"{nginx_tls.url}/hop")
        stats = transport.statistics()
    assert "keep-alive" not in forwarded.headers
    assert tunnelled.headers["keep-alive"] == "timeout=2"
    assert stats.proxies[proxy.url].last_hint is None
    assert stats.origins[nginx_tls.url].last_hint == KeepAlive(timeout=2.0)


@pytest.mark.parametrize("kind", SOCKS_PROXIES)
def test_socks_hint_is_the_origins(
    real_proxies: StartProxy, origin: RunningServer, kind: str
) -> None:
    proxy = proxy_for(real_proxies, kind)
    client, transport = sync_client(proxy=proxy.url)
    with client:
        client.get(f"{origin.url}/socks-hop").raise_for_status()
        stats = transport.statistics()
    assert stats.origins[origin.url].last_hint == KeepAlive(timeout=2.0)
    assert stats.origins[origin.url].proxy == proxy.url


RESUME_REQUESTS = 12


@pytest.mark.parametrize("kind", ["squid", "microsocks"])
def test_tls_sessions_resumed_inside_new_tunnels(
    real_proxies: StartProxy,
    nginx_tls: RunningServer,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    """No idle connection is kept, so every request opens a new tunnel;
    nginx logs whether each handshake resumed."""
    proxy = proxy_for(real_proxies, kind)
    mark, prefix = nginx_tls.log_mark(), unique_prefix("resume")
    client, transport = sync_client(
        tls=tls_client_context,
        proxy=proxy.url,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    with client:
        for index in range(RESUME_REQUESTS):
            client.get(f"{nginx_tls.url}{prefix}{index}").raise_for_status()
        stats = transport.statistics()
    records = nginx_tls.wait_records(RESUME_REQUESTS, since=mark, prefix=prefix)
    assert len(connections(records)) == RESUME_REQUESTS
    reused = ssl_session_reused(records)
    assert reused == [False] + [True] * (RESUME_REQUESTS - 1)
    per_origin = stats.origins[nginx_tls.url]
    assert (per_origin.tls_handshakes_full, per_origin.tls_handshakes_resumed) == (
        1,
        RESUME_REQUESTS - 1,
    )
    assert stats.proxies[proxy.url].tunnels_opened == RESUME_REQUESTS


def test_bad_proxy_answer_is_a_proxy_error(
    real_proxies: StartProxy, tls_client_context: ssl.SSLContext
) -> None:
    """squid refuses a CONNECT to a port where nothing listens (503)."""
    proxy = proxy_for(real_proxies, "squid")
    client, transport = sync_client(tls=tls_client_context, proxy=proxy.url)
    with client, pytest.raises(httpx.ProxyError, match="503"):
        client.get("https://127.0.0.1:1/refused")
    assert transport.statistics().proxies[proxy.url].proxy_errors == 1


@pytest.fixture
def https_squid(real_proxies: StartProxy, tls_files: TLSFiles) -> RunningProxy:
    return real_proxies(ProxySpec("squid", tls=tls_files))


def test_https_proxy_forward_and_tls_in_tls(
    https_squid: RunningProxy,
    origin: RunningServer,
    nginx_tls: RunningServer,
    tls_client_context: ssl.SSLContext,
) -> None:
    """TLS to squid itself: forwarded requests ride it, tunnels carry a
    second TLS session inside it (the origin's)."""
    assert https_squid.url.startswith("https://")
    proxy = httpx.Proxy(https_squid.url, ssl_context=tls_client_context)
    client, transport = sync_client(tls=tls_client_context, proxy=proxy)
    mark, prefix = nginx_tls.log_mark(), unique_prefix("https-proxy")
    with client:
        for index in range(REQUESTS):
            target = (origin, nginx_tls)[index % 2]
            response = client.get(f"{target.url}{prefix}{index}")
            assert (response.status_code, response.text) == (200, "hello\n")
        stats = transport.statistics().proxies[https_squid.url]
    assert (stats.forward_connections_opened, stats.tunnels_opened) == (1, 1)
    assert stats.requests == REQUESTS
    assert list(logged_ports(nginx_tls, mark, prefix, REQUESTS // 2).values()) == [3]


@pytest.mark.anyio
async def test_https_proxy_async(
    https_squid: RunningProxy,
    origin: RunningServer,
    nginx_tls: RunningServer,
    tls_client_context: ssl.SSLContext,
) -> None:
    proxy = httpx.Proxy(https_squid.url, ssl_context=tls_client_context)
    client, transport = async_client(tls=tls_client_context, proxy=proxy)
    async with client:
        for target in (origin, nginx_tls, origin, nginx_tls):
            response = await client.get(f"{target.url}/ahttps-proxy")
            assert (response.status_code, response.text) == (200, "hello\n")
        stats = transport.statistics().proxies[https_squid.url]
    assert (stats.forward_connections_opened, stats.tunnels_opened) == (1, 1)
