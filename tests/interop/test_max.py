"""With a small ``max``, connections are retired exactly when the server
would close them, and no request is ever written into a closed connection.

Connections are counted server-side from the access logs (client ports) and
compared with the expected number and with ``transport.statistics()``.
"""

from __future__ import annotations

import anyio
import pytest

from .conftest import StartServer
from .helpers import (
    HINTING,
    HINTLESS,
    async_client,
    expected_connections,
    origin_stats,
    requests_per_connection,
    spec_for,
    sync_client,
    unique_prefix,
)
from .servers import RunningServer, ServerSpec, connections

pytestmark = pytest.mark.interop

REQUESTS = 10
CONCURRENCY = 3


def check_server_side(
    server: RunningServer, spec: ServerSpec, mark: int, prefix: str, requests: int
) -> dict[int, int]:
    records = server.wait_records(requests, since=mark, prefix=prefix)
    assert len(records) == requests, "every request reached the server once"
    per_port = connections(records)
    limit = requests_per_connection(spec)
    if limit is not None:
        assert max(per_port.values()) <= limit
    return per_port


@pytest.mark.parametrize("kind", (*HINTING, *HINTLESS))
def test_retired_when_server_would_close(real_servers: StartServer, kind: str) -> None:
    spec = spec_for(kind)
    server = real_servers(spec)
    mark, prefix = server.log_mark(), unique_prefix("max")
    client, transport = sync_client()
    with client:
        for index in range(REQUESTS):
            assert client.get(f"{server.url}{prefix}{index}").status_code == 200
        stats = origin_stats(transport, server)
    per_port = check_server_side(server, spec, mark, prefix, REQUESTS)
    expected = expected_connections(spec, REQUESTS)
    assert len(per_port) == expected
    assert stats.connections_opened == expected
    assert stats.requests == REQUESTS
    assert stats.closed_by_server == 0
    assert stats.expired == 0
    limit = requests_per_connection(spec)
    if limit is not None:
        # Every connection but the last served exactly the server's limit.
        assert list(per_port.values())[:-1] == [limit] * (expected - 1)
    if kind != "apache":
        # nginx and Node end a connection with "Connection: close" (Node
        # repeats max=M unchanged, nginx never sends max): not by max.
        assert stats.retired_by_max == 0
        assert stats.retired_by_close == expected - 1


def test_apache_retirements_counted_by_max(real_servers: StartServer) -> None:
    spec = spec_for("apache")
    server = real_servers(spec)
    client, transport = sync_client()
    with client:
        for index in range(REQUESTS):
            client.get(f"{server.url}/bymax/{index}")
        stats = origin_stats(transport, server)
    limit = requests_per_connection(spec)
    assert limit is not None
    assert stats.retired_by_max == REQUESTS // limit


@pytest.mark.anyio
@pytest.mark.parametrize("kind", HINTING)
async def test_retired_under_concurrency(real_servers: StartServer, kind: str) -> None:
    spec = spec_for(kind)
    server = real_servers(spec)
    mark, prefix = server.log_mark(), unique_prefix("cmax")
    client, transport = async_client()
    failures: list[BaseException] = []

    async def worker(worker_id: int) -> None:
        for index in range(REQUESTS):
            try:
                response = await client.get(f"{server.url}{prefix}{worker_id}/{index}")
                assert response.status_code == 200
            except Exception as exc:  # pragma: no cover - reported below
                failures.append(exc)

    async with client:
        async with anyio.create_task_group() as tg:
            for worker_id in range(CONCURRENCY):
                tg.start_soon(worker, worker_id)
        stats = origin_stats(transport, server)
    assert failures == []
    total = REQUESTS * CONCURRENCY
    per_port = check_server_side(server, spec, mark, prefix, total)
    # A pre-warmed connection no request came for never reached the log.
    unused = stats.prewarmed - stats.prewarm_used
    assert stats.connections_opened - unused == len(per_port)
    assert stats.closed_by_server == 0
    # At most CONCURRENCY connections were still usable at the end; all
    # others served the server's full limit before being retired.
    limit = requests_per_connection(spec)
    short = [count for count in per_port.values() if count != limit]
    assert len(short) <= CONCURRENCY
