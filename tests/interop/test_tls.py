"""TLS variants (trustme certificates): requests work, the hint is read and
connections are reused. Session resumption is issue #4's: the ``nginx_tls``
fixture logs ``$ssl_session_reused`` for it."""

from __future__ import annotations

import ssl

import pytest

from .conftest import StartServer
from .helpers import (
    async_client,
    expected_connections,
    expected_first_hint,
    origin_stats,
    spec_for,
    sync_client,
    unique_prefix,
)
from .servers import RunningServer, TLSFiles, connections, ssl_session_reused

pytestmark = pytest.mark.interop

REQUESTS = 5


@pytest.mark.parametrize("kind", ["apache", "nginx", "node"])
def test_tls_requests_reuse_connections(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    kind: str,
) -> None:
    spec = spec_for(kind, tls=tls_files)
    server = real_servers(spec)
    assert server.url.startswith("https://")
    mark, prefix = server.log_mark(), unique_prefix("tls")
    client, transport = sync_client(tls=tls_client_context)
    with client:
        first = client.get(f"{server.url}{prefix}0")
        assert first.text == "hello\n"
        for index in range(1, REQUESTS):
            assert client.get(f"{server.url}{prefix}{index}").status_code == 200
        stats = origin_stats(transport, server)
    expected = expected_connections(spec, REQUESTS)
    assert stats.connections_opened == expected
    assert stats.reused == REQUESTS - expected
    assert stats.closed_by_server == 0
    records = server.wait_records(REQUESTS, since=mark, prefix=prefix)
    per_port = connections(records)
    assert len(per_port) == expected
    hint = expected_first_hint(spec)
    assert first.headers.get("keep-alive") == (
        None if hint is None else _format(hint.timeout, hint.max)
    )


@pytest.mark.anyio
async def test_tls_async(
    nginx_tls: RunningServer, tls_client_context: ssl.SSLContext
) -> None:
    mark, prefix = nginx_tls.log_mark(), unique_prefix("atls")
    client, transport = async_client(tls=tls_client_context)
    async with client:
        for index in range(REQUESTS):
            response = await client.get(f"{nginx_tls.url}{prefix}{index}")
            assert response.status_code == 200
        stats = origin_stats(transport, nginx_tls)
    assert (stats.connections_opened, stats.reused) == (1, REQUESTS - 1)
    records = nginx_tls.wait_records(REQUESTS, since=mark, prefix=prefix)
    assert len(connections(records)) == 1
    # The hook for issue #4: one $ssl_session_reused flag per request.
    assert len(ssl_session_reused(records)) == REQUESTS


def _format(timeout: float | None, max_requests: int | None) -> str:
    text = f"timeout={timeout:g}"
    return text if max_requests is None else f"{text}, max={max_requests}"
