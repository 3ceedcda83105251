"""hintpool's HTTP/2 connection: flow control, the request's timeouts, and
streams given up on, against the scripted server of ``tests/h2_server.py``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import hintpool

from ..h2_server import H2Server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[H2Server]:
    with H2Server() as srv:
        yield srv


def h2c_client(**kwargs: object) -> httpx.AsyncClient:
    transport = hintpool.AsyncHTTPTransport(http1=False, http2=True)
    return httpx.AsyncClient(transport=transport, **kwargs)  # type: ignore[arg-type]


def origin_stats(client: httpx.AsyncClient) -> hintpool.OriginStatistics:
    transport = client._transport
    assert isinstance(transport, hintpool.AsyncHTTPTransport)
    [stats] = transport.statistics().origins.values()
    return stats


async def test_a_body_over_the_flow_control_window_waits_for_window_updates(
    server: H2Server,
) -> None:
    """The server's window is 65,535 bytes: the rest of the body goes as
    its WINDOW_UPDATEs arrive."""
    body = bytes(range(256)) * 1200  # 307,200 bytes
    async with h2c_client() as client:
        response = await client.post(f"{server.url}/big", content=body)
        assert response.text == f"POST /big {len(body)}"
        again = await client.post(f"{server.url}/big2", content=body)
        assert again.text == f"POST /big2 {len(body)}"
    assert server.connections == 1
    assert [b for _, _, _, _, b in server.requests] == [body, body]


async def test_the_read_timeout_of_the_request_applies(server: H2Server) -> None:
    server.hold = 2  # the lone request is answered after hold_timeout (2 s)
    async with h2c_client() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(
                f"{server.url}/slow", timeout=httpx.Timeout(5.0, read=0.05)
            )
        server.hold = 1
        assert (await client.get(f"{server.url}/next")).status_code == 200
        stats = origin_stats(client)
    assert stats.active == 0
    assert stats.read_timeouts == 1


async def test_a_response_closed_unread_resets_its_stream_only(
    server: H2Server,
) -> None:
    """Closing a streamed response before its end resets that stream; the
    connection carries the next requests."""
    async with h2c_client() as client:
        async with client.stream("GET", f"{server.url}/a") as response:
            assert response.status_code == 200
        for path in ("/b", "/c"):
            assert (await client.get(f"{server.url}{path}")).status_code == 200
        stats = origin_stats(client)
    assert server.connections == 1
    assert (stats.active, stats.requests) == (0, 3)
