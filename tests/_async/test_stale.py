"""Stale connections: the one safe retry, and learned idle timeouts.

Against the test tree's real server. To stage the keep-alive race
deterministically, some tests turn off the readability check at checkout:
that is the situation of a server FIN still in flight when the request is
written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

import hintpool

from ..concurrency import async_sleep
from ..fixtures_server import ServerFactory


def race_client(
    **kwargs: object,
) -> tuple[httpx.AsyncClient, hintpool.AsyncHTTPTransport]:
    transport = hintpool.AsyncHTTPTransport(**kwargs)  # type: ignore[arg-type]
    # The FIN has not arrived yet as far as the pool can tell.
    transport.pool._state.server_closed = lambda conn: False
    return httpx.AsyncClient(transport=transport), transport


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
async def test_idempotent_request_is_retried_once_on_a_new_connection(
    server_factory: ServerFactory, method: str
) -> None:
    # A "lying" server: it closes after each response without saying so.
    srv = server_factory(max_requests=1, close_on_last=False)
    client, transport = race_client()
    async with client:
        await client.get(srv.url + "/")
        srv.wait_closed(1)
        r = await client.request(method, srv.url + "/")
        assert r.status_code == 200
    stats = transport.statistics()
    assert stats.retries == 1
    assert stats.closed_by_server == 1
    assert stats.connections_opened == 2
    assert srv.requests_served == 2


@pytest.mark.anyio
async def test_post_without_idempotency_key_is_never_retried(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(max_requests=1, close_on_last=False)
    client, transport = race_client()
    async with client:
        await client.get(srv.url + "/")
        srv.wait_closed(1)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post(srv.url + "/echo", content=b"pay once")
        stats = transport.statistics()
        assert (stats.retries, stats.open) == (0, 0)
        # Nothing reached the server twice; the next request works.
        assert (await client.get(srv.url + "/")).status_code == 200
    assert srv.requests_served == 2


@pytest.mark.anyio
async def test_post_with_idempotency_key_is_retried(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(max_requests=1, close_on_last=False)
    client, transport = race_client()
    async with client:
        await client.get(srv.url + "/")
        srv.wait_closed(1)
        r = await client.post(
            srv.url + "/echo", content=b"once", headers={"Idempotency-Key": "k1"}
        )
        assert r.content == b"once"
    assert transport.statistics().retries == 1


@pytest.mark.anyio
async def test_streamed_body_is_not_retried(server_factory: ServerFactory) -> None:
    srv = server_factory(max_requests=1, close_on_last=False)
    client, transport = race_client()

    async def body() -> AsyncIterator[bytes]:
        yield b"streamed"

    async with client:
        await client.get(srv.url + "/")
        srv.wait_closed(1)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.put(srv.url + "/echo", content=body())
    assert transport.statistics().retries == 0


@pytest.mark.anyio
async def test_retry_stale_false_turns_it_off(server_factory: ServerFactory) -> None:
    srv = server_factory(max_requests=1, close_on_last=False)
    client, transport = race_client(retry_stale=False)
    async with client:
        await client.get(srv.url + "/")
        srv.wait_closed(1)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(srv.url + "/")
    assert transport.statistics().retries == 0


@pytest.mark.anyio
async def test_failure_on_a_fresh_connection_is_not_retried(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory()
    client, transport = race_client()
    async with client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(srv.url + "/fault/close-no-response")
    stats = transport.statistics()
    assert (stats.retries, stats.connections_opened) == (0, 1)


@pytest.mark.anyio
async def test_stale_check_at_checkout_counts_closed_by_server(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(max_requests=1, close_on_last=False)
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(srv.url + "/")
        srv.wait_closed(1)
        await client.get(srv.url + "/")
    stats = transport.statistics()
    assert (stats.closed_by_server, stats.retries) == (1, 0)


@pytest.mark.anyio
async def test_request_that_cannot_be_resent_meets_no_closed_connection(
    server_factory: ServerFactory,
) -> None:
    # The server closes right after its response without saying so. A POST
    # sent at once (no turn of the loop in between) must still not meet
    # that connection: it could not be sent again.
    srv = server_factory(max_requests=1, close_on_last=False)
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(srv.url + "/")
        srv.wait_closed(1)
        response = await client.post(srv.url + "/", content=b"once")
    assert response.status_code == 200
    stats = transport.statistics()
    assert (stats.closed_by_server, stats.retries) == (1, 0)


@pytest.mark.anyio
async def test_learns_the_idle_timeout_of_a_hintless_server(
    server_factory: ServerFactory,
) -> None:
    # No Keep-Alive header; the server closes idle connections after 1 s.
    srv = server_factory(keep_alive=None, idle_timeout=1.0)
    transport = hintpool.AsyncHTTPTransport(keepalive_margin=0.5)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(srv.url + "/")
        await async_sleep(1.3)  # the reaper watches and sees the close
        stats = transport.statistics().origins[srv.url]
        assert stats.closed_by_server == 1
        assert stats.learned_timeout is not None
        assert 0.9 <= stats.learned_timeout <= 1.3
        # From now on: expire 0.5 s before the learned time, never race.
        await client.get(srv.url + "/")
        await async_sleep(0.7)
        await client.get(srv.url + "/")
        stats = transport.statistics().origins[srv.url]
    assert stats.expired == 1
    assert stats.closed_by_server == 1
    assert srv.requests_after_close == 0


@pytest.mark.anyio
async def test_a_real_hint_wins_over_a_learned_timeout(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(keep_alive=None, idle_timeout=1.0)
    transport = hintpool.AsyncHTTPTransport(keepalive_margin=0.5)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(srv.url + "/")
        await async_sleep(1.3)
        assert transport.statistics().origins[srv.url].learned_timeout is not None
        srv.config.keep_alive = "timeout=30"
        await client.get(srv.url + "/")
        await async_sleep(0.7)  # past the learned window, within the hint's
        await client.get(srv.url + "/")
        stats = transport.statistics().origins[srv.url]
    assert stats.reused == 1
