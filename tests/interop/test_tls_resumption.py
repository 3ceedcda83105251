"""TLS session resumption against real nginx (issue #4): nginx logs
``$ssl_session_reused`` per request, so the server says which handshakes
resumed. ``max_keepalive_connections=0`` makes every request open a new
connection (each idle connection is evicted at once)."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme

from .helpers import async_client, origin_stats, sync_client, unique_prefix
from .servers import RunningServer, connections, ssl_session_reused
from .servers.tls import client_context

pytestmark = pytest.mark.interop

REQUESTS = 20
NO_IDLE = httpx.Limits(max_keepalive_connections=0)


@pytest.fixture(params=["TLSv1.2", "TLSv1.3"])
def pinned_client_context(
    request: pytest.FixtureRequest, tls_ca: trustme.CA
) -> ssl.SSLContext:
    ctx = client_context(tls_ca)
    version = ssl.TLSVersion[str(request.param).replace(".", "_")]
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def pinned_version(ctx: ssl.SSLContext) -> str:
    return ctx.maximum_version.name.replace("_", ".")


def check(
    server: RunningServer,
    mark: int,
    prefix: str,
    stats_full: int,
    stats_resumed: int,
) -> None:
    records = server.wait_records(REQUESTS, since=mark, prefix=prefix)
    assert len(connections(records)) == REQUESTS
    reused = ssl_session_reused(records)
    assert reused[0] is False
    assert sum(reused[1:]) >= 0.99 * (REQUESTS - 1), reused
    assert (stats_full, stats_resumed) == (1 + reused[1:].count(False), sum(reused))


def test_nginx_resumes_sync(
    nginx_tls: RunningServer, pinned_client_context: ssl.SSLContext
) -> None:
    mark, prefix = nginx_tls.log_mark(), unique_prefix("resume")
    client, transport = sync_client(tls=pinned_client_context, limits=NO_IDLE)
    with client:
        for index in range(REQUESTS - 1):
            response = client.get(f"{nginx_tls.url}{prefix}{index}")
            assert response.status_code == 200
        # The pinned version, read while the response (and so its connection)
        # is open: with no idle connections kept the pool closes it as soon
        # as the response is closed, and a closed SSL object's version() is
        # None whenever the TLS shutdown met the peer's EOF first.
        with client.stream("GET", f"{nginx_tls.url}{prefix}last") as response:
            ssl_object = response.extensions["network_stream"].get_extra_info(
                "ssl_object"
            )
            assert ssl_object.version() == pinned_version(pinned_client_context)
            response.read()
        stats = origin_stats(transport, nginx_tls)
    check(
        nginx_tls, mark, prefix, stats.tls_handshakes_full, stats.tls_handshakes_resumed
    )


@pytest.mark.anyio
async def test_nginx_resumes_async(
    nginx_tls: RunningServer, pinned_client_context: ssl.SSLContext
) -> None:
    mark, prefix = nginx_tls.log_mark(), unique_prefix("aresume")
    client, transport = async_client(tls=pinned_client_context, limits=NO_IDLE)
    async with client:
        for index in range(REQUESTS - 1):
            response = await client.get(f"{nginx_tls.url}{prefix}{index}")
            assert response.status_code == 200
        async with client.stream("GET", f"{nginx_tls.url}{prefix}last") as response:
            ssl_object = response.extensions["network_stream"].get_extra_info(
                "ssl_object"
            )
            assert ssl_object.version() == pinned_version(pinned_client_context)
            await response.aread()
        stats = origin_stats(transport, nginx_tls)
    check(
        nginx_tls, mark, prefix, stats.tls_handshakes_full, stats.tls_handshakes_resumed
    )
