"""HTTP/2 against real servers (issue #14): nginx, Hypercorn and Node's
``http2`` module over TLS. ALPN picks h2 only when asked to; 100 concurrent
requests share as few connections as the server's stream limit allows; TLS
sessions resume for HTTP/2 connections as for HTTP/1.1.

GOAWAY and shutdowns are in test_http2_goaway.py, idle gaps behind latency
in test_http2_race.py; docs/servers.md shows what each server does.
"""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme

from hintpool import OriginStatistics

from .conftest import StartServer
from .h2_helpers import (
    CONCURRENT,
    HTTP2_KINDS,
    async_h2_client,
    connections_needed,
    h2_spec,
    logged_paths,
    ports,
    run_concurrently,
    sync_h2_client,
)
from .helpers import unique_prefix
from .servers import RunningServer, TLSFiles, connections, ssl_session_reused
from .servers.tls import client_context

pytestmark = pytest.mark.interop


def alpn(response: httpx.Response) -> str | None:
    stream = response.extensions["network_stream"]
    protocol: str | None = stream.get_extra_info("ssl_object").selected_alpn_protocol()
    return protocol


@pytest.mark.parametrize("kind", HTTP2_KINDS)
def test_alpn_picks_h2_only_when_asked(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    server = real_servers(h2_spec(kind, tls_files))
    mark, prefix = server.log_mark(), unique_prefix("alpn")
    client, transport = sync_h2_client(tls_client_context)
    with client:
        with client.stream("GET", f"{server.url}{prefix}h2") as response:
            assert alpn(response) == "h2"
            response.read()
        assert response.http_version == "HTTP/2"
        assert response.text == "hello\n"
        stats = transport.statistics().origins[server.url]
    assert stats.http_version == "HTTP/2"
    # Without http2=True only http/1.1 is offered: the same server answers
    # over HTTP/1.1.
    client, transport = sync_h2_client(tls_client_context, http2=False)
    with client:
        with client.stream("GET", f"{server.url}{prefix}h1") as response:
            assert alpn(response) == "http/1.1"
            response.read()
        assert response.http_version == "HTTP/1.1"
        stats = transport.statistics().origins[server.url]
    assert stats.http_version == "HTTP/1.1"
    records = server.wait_records(2, since=mark, prefix=prefix)
    protocols = {r.fields[-2]: r.fields[-1] for r in records}
    assert protocols[f"{prefix}h2"].startswith("HTTP/2")
    assert protocols[f"{prefix}h1"] == 'HTTP/1.1"'


@pytest.mark.anyio
@pytest.mark.parametrize("kind", HTTP2_KINDS)
async def test_concurrent_requests_share_one_connection(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    """From a cold pool: the requests that come while the first connection
    is being set up wait for it rather than each opening one."""
    server = real_servers(h2_spec(kind, tls_files))
    mark, prefix = server.log_mark(), unique_prefix("concurrent")
    urls = [f"{server.url}{prefix}{index}" for index in range(CONCURRENT)]
    client, transport = async_h2_client(tls_client_context)
    async with client:
        responses, failures = await run_concurrently(client.get, urls)
        stats = transport.statistics().origins[server.url]
    assert failures == []
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert len(logged_paths(server, mark, prefix, CONCURRENT)) == CONCURRENT
    needed = connections_needed(kind, CONCURRENT)
    assert len(ports(server, mark, prefix)) == needed
    assert stats.connections_opened == needed
    assert 1 < stats.concurrent_streams_peak <= CONCURRENT


SMALL_STREAM_LIMIT = 10


async def small_limit_run(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    kind: str,
    prefix: str,
) -> tuple[RunningServer, int, OriginStatistics]:
    """A first request brings the server's SETTINGS (10 streams at once),
    then 100 concurrent ones: every one answered exactly once."""
    server = real_servers(h2_spec(kind, tls_files, max_streams=SMALL_STREAM_LIMIT))
    mark = server.log_mark()
    client, transport = async_h2_client(tls_client_context)
    async with client:
        (await client.get(f"{server.url}{prefix}warm")).raise_for_status()
        urls = [f"{server.url}{prefix}{index}" for index in range(CONCURRENT)]
        _, failures = await run_concurrently(client.get, urls)
        stats = transport.statistics().origins[server.url]
    assert failures == []
    paths = logged_paths(server, mark, prefix, CONCURRENT + 1)
    assert len(paths) == len(set(paths)) == CONCURRENT + 1
    return server, mark, stats


@pytest.mark.anyio
@pytest.mark.parametrize("kind", HTTP2_KINDS)
async def test_server_stream_limit_opens_more_connections(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    """The full first connection is not the only one."""
    prefix = unique_prefix("small-limit")
    server, mark, stats = await small_limit_run(
        real_servers, tls_files, tls_client_context, kind, prefix
    )
    opened = len(ports(server, mark, prefix))
    assert 2 <= opened <= CONCURRENT // SMALL_STREAM_LIMIT
    assert stats.connections_opened == opened


@pytest.mark.anyio
@pytest.mark.parametrize("kind", HTTP2_KINDS)
async def test_server_stream_limit_decides_connections(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    """What the issue asks: as many connections as the limit needs. A new
    connection takes no more streams than the origin's first announced
    (not 100 until its own SETTINGS arrive); fewer than 10 connections
    when streams free up while the next one opens."""
    prefix = unique_prefix("small-limit-x")
    server, mark, stats = await small_limit_run(
        real_servers, tls_files, tls_client_context, kind, prefix
    )
    needed = CONCURRENT // SMALL_STREAM_LIMIT
    assert 2 <= len(ports(server, mark, prefix)) <= needed
    assert stats.concurrent_streams_peak == SMALL_STREAM_LIMIT


def test_concurrent_threads_share_one_connection(
    real_servers: StartServer, tls_files: TLSFiles, tls_client_context: ssl.SSLContext
) -> None:
    """The sync pool: 20 threads at once on one nginx HTTP/2 connection."""
    from concurrent.futures import ThreadPoolExecutor

    # A long idle timeout: on a loaded machine a thread pool can start
    # slower than nginx's 2 s.
    server = real_servers(h2_spec("nginx", tls_files, idle_timeout=30.0))
    mark, prefix = server.log_mark(), unique_prefix("threads")
    client, transport = sync_h2_client(tls_client_context)
    with client, ThreadPoolExecutor(20) as pool:
        client.get(f"{server.url}{prefix}warm").raise_for_status()
        urls = [f"{server.url}{prefix}{index}" for index in range(CONCURRENT)]
        statuses = list(pool.map(lambda url: client.get(url).status_code, urls))
        stats = transport.statistics().origins[server.url]
    assert statuses == [200] * CONCURRENT
    assert len(logged_paths(server, mark, prefix, CONCURRENT + 1)) == 101
    assert len(ports(server, mark, prefix)) == 1, stats
    assert stats.connections_opened == 1


# -- TLS session resumption (as tests/interop/test_tls_resumption.py) --------

REQUESTS = 20
NO_IDLE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture(params=["TLSv1.2", "TLSv1.3"])
def pinned_context(
    request: pytest.FixtureRequest, tls_ca: trustme.CA
) -> ssl.SSLContext:
    ctx = client_context(tls_ca)
    version = ssl.TLSVersion[str(request.param).replace(".", "_")]
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


@pytest.fixture
def nginx_h2(real_servers: StartServer, tls_files: TLSFiles) -> RunningServer:
    return real_servers(h2_spec("nginx", tls_files))


def check_resumed(
    server: RunningServer, mark: int, prefix: str, full: int, resumed: int
) -> None:
    records = server.wait_records(REQUESTS, since=mark, prefix=prefix)
    assert len(connections(records)) == REQUESTS
    assert all("HTTP/2.0" in " ".join(r.fields) for r in records)
    reused = ssl_session_reused(records)
    assert reused[0] is False
    assert sum(reused[1:]) >= 0.99 * (REQUESTS - 1), reused
    assert (full, resumed) == (1 + reused[1:].count(False), sum(reused))


def test_h2_connections_resume_tls_sync(
    nginx_h2: RunningServer, pinned_context: ssl.SSLContext
) -> None:
    """Every request on a new HTTP/2 connection (no idle ones kept): all but
    the first resume the TLS session, as nginx's $ssl_session_reused says."""
    mark, prefix = nginx_h2.log_mark(), unique_prefix("h2-resume")
    client, transport = sync_h2_client(pinned_context, limits=NO_IDLE)
    with client:
        for index in range(REQUESTS):
            response = client.get(f"{nginx_h2.url}{prefix}{index}")
            assert response.http_version == "HTTP/2"
        stats = transport.statistics().origins[nginx_h2.url]
    check_resumed(
        nginx_h2, mark, prefix, stats.tls_handshakes_full, stats.tls_handshakes_resumed
    )


@pytest.mark.anyio
async def test_h2_connections_resume_tls_async(
    nginx_h2: RunningServer, pinned_context: ssl.SSLContext
) -> None:
    mark, prefix = nginx_h2.log_mark(), unique_prefix("h2-aresume")
    client, transport = async_h2_client(pinned_context, limits=NO_IDLE)
    async with client:
        for index in range(REQUESTS):
            response = await client.get(f"{nginx_h2.url}{prefix}{index}")
            assert response.http_version == "HTTP/2"
        stats = transport.statistics().origins[nginx_h2.url]
    check_resumed(
        nginx_h2, mark, prefix, stats.tls_handshakes_full, stats.tls_handshakes_resumed
    )
