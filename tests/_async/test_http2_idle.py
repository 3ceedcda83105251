"""HTTP/2 between requests: the server's silent close crossing a request,
and frames a server sends to an idle connection (PING, SETTINGS).

Against the scripted ``h2`` server of ``tests/h2_server.py`` (plain, prior
knowledge).
"""

from __future__ import annotations

import select
from collections.abc import Iterator

import httpx
import pytest

import hintpool

from ..clock import FakeClock
from ..concurrency import AsyncTaskGroup
from ..h2_server import H2Server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[H2Server]:
    with H2Server() as srv:
        yield srv


def h2c_client(**kwargs: object) -> httpx.AsyncClient:
    transport = hintpool.AsyncHTTPTransport(http1=False, http2=True, **kwargs)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport)


def origin_stats(client: httpx.AsyncClient) -> hintpool.OriginStatistics:
    transport = client._transport
    assert isinstance(transport, hintpool.AsyncHTTPTransport)
    [stats] = transport.statistics().origins.values()
    return stats


async def test_get_meeting_a_silent_close_on_reuse_is_sent_again(
    server: H2Server,
) -> None:
    """Hypercorn's idle close: no GOAWAY, no frame of the response. A GET on
    a reused connection goes once more on a new one, as over HTTP/1.1."""
    server.silent_close_at = 2
    async with h2c_client() as client:
        assert (await client.get(f"{server.url}/a")).text == "GET /a 0"
        assert (await client.get(f"{server.url}/b")).text == "GET /b 0"
        stats = origin_stats(client)
    assert [path for _, _, _, path, _ in server.requests] == ["/a", "/b", "/b"]
    assert server.connections == 2
    assert (stats.retries, stats.goaway_retries) == (1, 0)
    assert stats.closed_by_server == 1
    assert stats.protocol_errors == 0


async def test_post_meeting_a_silent_close_is_not_sent_again(
    server: H2Server,
) -> None:
    server.silent_close_at = 2
    async with h2c_client() as client:
        await client.get(f"{server.url}/a")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{server.url}/b", content=b"x")
        stats = origin_stats(client)
        assert (stats.retries, stats.active, stats.open) == (0, 0, 0)
    assert len(server.requests) == 2


async def test_silent_close_on_a_fresh_connection_is_not_retried(
    server: H2Server,
) -> None:
    """A new connection's failure is not the keep-alive race."""
    server.silent_close_at = 1
    async with h2c_client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server.url}/a")
        assert origin_stats(client).retries == 0
    assert len(server.requests) == 1


async def test_no_retry_when_retry_stale_is_off(server: H2Server) -> None:
    server.silent_close_at = 2
    async with h2c_client(retry_stale=False) as client:
        await client.get(f"{server.url}/a")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server.url}/b")
    assert len(server.requests) == 2


def _readable(sock: object) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


@pytest.mark.parametrize("reaper", [True, False], ids=["reaper", "request"])
@pytest.mark.parametrize("frame", ["ping", "settings"])
async def test_an_idle_connection_answers_the_server_and_stays_open(
    server: H2Server, frame: str, reaper: bool
) -> None:
    """A PING or SETTINGS on an idle connection makes its socket readable;
    the connection acknowledges the frame (the reaper's pass, or the next
    request reading it) and carries the next requests."""
    clock = FakeClock()
    pool = hintpool.AsyncConnectionPool(
        http1=False, http2=True, keepalive_expiry=60.0, clock=clock
    )
    async with pool:
        await pool.request("GET", f"{server.url}/a")
        if frame == "ping":
            server.ping_idle()
        else:
            server.settings_idle()
        [conn] = next(iter(pool._state.origins.values())).idle

        def answered() -> bool:
            if frame == "ping":
                return server.pings_acked == 1
            # Both SETTINGS frames of the server's preface, then this one.
            return server.settings_acked == 3

        async with AsyncTaskGroup() as tg:
            # (A sync pool's reaper thread may answer first.)
            await tg.wait_until(lambda: _readable(conn.sock) or answered())
        clock.advance(1.0)
        if reaper:
            await pool._reap()  # answered now, without a request
            assert conn.connection.frames_waiting is False
        else:
            await pool.request("GET", f"{server.url}/b")
        async with AsyncTaskGroup() as tg:
            await tg.wait_until(answered)
        await pool.request("GET", f"{server.url}/c")
        [stats] = pool.statistics().origins.values()
    assert server.connections == 1
    assert (stats.closed_by_server, stats.expired) == (0, 0)
    assert stats.reused == (1 if reaper else 2)
