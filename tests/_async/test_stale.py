"""Stale connections: the one safe retry, and learned idle timeouts.

Against the test tree's real server. To stage the keep-alive race
deterministically, some tests turn off the readability check at checkout:
that is the situation of a server FIN still in flight when the request is
written.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

import hintpool
from hintpool._origin import SEEN_OPEN_SLACK

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


#: The test server's idle timeout and the pool's margin in the tests below.
SERVER_IDLE = 1.0
MARGIN = 0.5
#: Slack for the server's timer firing a hair early (clock granularity).
TIMER_SLACK = 0.05
#: Past the pool's deadline (learned - MARGIN) by this much when reusing.
PAST_DEADLINE = 0.2


async def learn_server_timeout(
    client: httpx.AsyncClient, transport: hintpool.AsyncHTTPTransport, url: str
) -> float:
    """One request, then idle until the reaper saw the server close it.

    The bounds on what was learned come from this test's own clock (the
    pool's default, time.monotonic), not from how fast the server thread
    and the reaper ran: a loaded machine only widens the window measured.
    """
    started = time.monotonic()
    await client.get(url + "/")
    answered = time.monotonic()
    deadline = answered + 10.0  # bounded: the reaper looks every few 100 ms
    while transport.statistics().origins[url].closed_by_server == 0:
        assert time.monotonic() < deadline, "the server's idle close went unseen"
        await async_sleep(0.02)
    seen = time.monotonic()
    stats = transport.statistics().origins[url]
    assert stats.closed_by_server == 1
    learned = stats.learned_timeout
    assert learned is not None
    # The server starts its idle timer after sending the response, so after
    # `started`, and the pool's idle clock starts before `answered`: the
    # connection was idle at least SERVER_IDLE - (answered - started) when it
    # closed. The pool learns the age at which its reaper last saw the
    # connection open: up to SEEN_OPEN_SLACK before the close, however late
    # the reaper ran (a longer gap teaches the age when the close was seen).
    lowest = SERVER_IDLE - (answered - started) - TIMER_SLACK - SEEN_OPEN_SLACK
    assert learned >= lowest
    # The close was seen before `seen`, and the idle clock began after
    # `started`: the learned age cannot exceed the time this test waited,
    # which tells the server's 1 s from keepalive_expiry's 5 s.
    assert learned <= seen - started
    return learned


@pytest.mark.anyio
async def test_learns_the_idle_timeout_of_a_hintless_server(
    server_factory: ServerFactory,
) -> None:
    # No Keep-Alive header; the server closes idle connections after 1 s.
    srv = server_factory(keep_alive=None, idle_timeout=SERVER_IDLE)
    transport = hintpool.AsyncHTTPTransport(keepalive_margin=MARGIN)
    async with httpx.AsyncClient(transport=transport) as client:
        learned = await learn_server_timeout(client, transport, srv.url)
        # From now on: expire MARGIN before the learned time, never race. The
        # idle gap follows from what was learned, so a late observation
        # (a larger learned value) cannot make the gap miss the deadline.
        await client.get(srv.url + "/")
        await async_sleep(learned - MARGIN + PAST_DEADLINE)
        await client.get(srv.url + "/")
        stats = transport.statistics().origins[srv.url]
    assert stats.expired == 1
    assert stats.closed_by_server == 1
    assert srv.requests_after_close == 0


@pytest.mark.anyio
async def test_a_real_hint_wins_over_a_learned_timeout(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(keep_alive=None, idle_timeout=SERVER_IDLE)
    transport = hintpool.AsyncHTTPTransport(keepalive_margin=MARGIN)
    async with httpx.AsyncClient(transport=transport) as client:
        learned = await learn_server_timeout(client, transport, srv.url)
        # The server now announces and keeps 30 s, so the idle gap below,
        # past the learned window however late the close was seen, never
        # reaches the server's own close.
        srv.config.keep_alive = "timeout=30"
        srv.config.idle_timeout = 30.0
        await client.get(srv.url + "/")
        await async_sleep(learned - MARGIN + PAST_DEADLINE)
        await client.get(srv.url + "/")
        stats = transport.statistics().origins[srv.url]
    assert stats.reused == 1
