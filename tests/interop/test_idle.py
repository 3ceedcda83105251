"""Idle connections are expired before the server's idle timeout.

Hinting servers: the deadline is the announced timeout minus
``keepalive_margin``. Hint-less servers: the pool's ``keepalive_expiry``
until the timeout is learned from the first idle connection the server
closes, then that learned timeout minus the margin.
"""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from hintpool._origin import SEEN_OPEN_SLACK

from .conftest import StartServer
from .helpers import (
    HINTING,
    HINTLESS,
    IDLE_TIMEOUT,
    async_client,
    origin_stats,
    spec_for,
    sync_client,
    unique_prefix,
    wait_server_close,
)
from .servers import ServerSpec, connections

pytestmark = pytest.mark.interop

#: Inside the 1 s idle window (timeout 2 s - margin 1 s, or expiry 1 s).
SHORT_IDLE = 0.3
#: Past the window but well before the server's 2 s timeout.
LONG_IDLE = 1.3
#: Past the server's timeout.
PAST_TIMEOUT = IDLE_TIMEOUT + 0.4
FALLBACK_EXPIRY = 1.0


def options_for(kind: str) -> dict[str, object]:
    if kind in HINTLESS:
        return {"limits": httpx.Limits(keepalive_expiry=FALLBACK_EXPIRY)}
    return {"keepalive_margin": 1.0}


@pytest.mark.parametrize("kind", (*HINTING, *HINTLESS))
def test_idle_expired_before_server_timeout(
    real_servers: StartServer, kind: str
) -> None:
    # No max here: only the idle deadline decides.
    spec = spec_for(kind, max_requests=None)
    server = real_servers(spec)
    mark, prefix = server.log_mark(), unique_prefix("idle")
    client, transport = sync_client(**options_for(kind))
    with client:
        client.get(f"{server.url}{prefix}0")
        time.sleep(SHORT_IDLE)
        client.get(f"{server.url}{prefix}1")
        stats = origin_stats(transport, server)
        assert (stats.connections_opened, stats.reused) == (1, 1)
        time.sleep(LONG_IDLE)
        client.get(f"{server.url}{prefix}2")
        stats = origin_stats(transport, server)
    assert stats.connections_opened == 2
    assert stats.expired == 1
    assert stats.closed_by_server == 0
    per_port = connections(server.wait_records(3, since=mark, prefix=prefix))
    assert list(per_port.values()) == [2, 1]
    if kind in HINTLESS:
        assert stats.last_hint is None
        # This server never closed one of our idle connections here, so
        # nothing is learned yet (see test_hintless_server_close_is_caught).
        assert stats.learned_timeout is None


@pytest.mark.anyio
async def test_idle_expired_async(real_servers: StartServer) -> None:
    server = real_servers(spec_for("apache", max_requests=None))
    client, transport = async_client(keepalive_margin=1.0)
    async with client:
        await client.get(f"{server.url}/aidle/0")
        await anyio.sleep(SHORT_IDLE)
        await client.get(f"{server.url}/aidle/1")
        await anyio.sleep(LONG_IDLE)
        await client.get(f"{server.url}/aidle/2")
        stats = origin_stats(transport, server)
    assert (stats.connections_opened, stats.reused, stats.expired) == (2, 1, 1)
    assert stats.closed_by_server == 0


@pytest.mark.parametrize(
    "spec",
    [
        *(ServerSpec(kind, idle_timeout=IDLE_TIMEOUT) for kind in HINTLESS),
        ServerSpec("nginx", idle_timeout=IDLE_TIMEOUT, hint=False),
    ],
    ids=lambda spec: spec.label,
)
def test_hintless_server_close_is_caught(
    real_servers: StartServer, spec: ServerSpec
) -> None:
    """A hint-less server closing before ``keepalive_expiry`` (5 s): the
    reaper sees the close, learns the server's idle timeout from it, and
    from then on connections to that server expire before it closes them."""
    server = real_servers(spec)
    mark, prefix = server.log_mark(), unique_prefix("stale")
    client, transport = sync_client()
    with client:
        started = time.monotonic()
        client.get(f"{server.url}{prefix}0")
        answered = time.monotonic()
        learned = wait_server_close(transport, server.url).learned_timeout
        seen = time.monotonic()
        assert client.get(f"{server.url}{prefix}1").status_code == 200
        stats = origin_stats(transport, server)
        assert stats.closed_by_server == 1
        assert learned is not None
        # The server's idle timer starts after it answered, so after
        # `started`, and the pool's idle age before `answered`; the pool
        # (clock: time.monotonic) saw the close before `seen`. It learns the
        # age its reaper last saw the connection open at, up to
        # SEEN_OPEN_SLACK before the close. Those bounds widen only as much
        # as this machine was slow, and still tell the server's 2 s from the
        # pool's 5 s keepalive_expiry.
        slack = 0.05 + SEEN_OPEN_SLACK
        assert learned >= IDLE_TIMEOUT - (answered - started) - slack
        assert learned <= seen - started
        # Learned: the next idle gap past the timeout finds the connection
        # already expired by the pool, not closed by the server. The gap also
        # outlasts what was learned, should a loaded reaper have seen the
        # close late: the pool's deadline (learned - margin) is then past too.
        time.sleep(max(PAST_TIMEOUT, learned))
        assert client.get(f"{server.url}{prefix}2").status_code == 200
        stats = origin_stats(transport, server)
    assert stats.connections_opened == 3
    assert stats.closed_by_server == 1
    assert stats.expired == 1
    records = server.wait_records(3, since=mark, prefix=prefix)
    assert len(connections(records)) == 3
