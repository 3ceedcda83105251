"""HTTP/2: ALPN, multiplexing, GOAWAY, REFUSED_STREAM, idle expiry.

Against the scripted ``h2`` server of ``tests/h2_server.py`` (TLS with a
trustme certificate, or plain for prior knowledge).
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import h2.errors
import httpx
import pytest
import trustme

import hintpool

from ..clock import FakeClock
from ..concurrency import AsyncTaskGroup
from ..fixtures_server import ServerFactory
from ..h2_server import H2Server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def _server_ctx(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ctx.set_alpn_protocols(alpn)
    return ctx


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[H2Server]:
    with H2Server(_server_ctx(ca, ["h2"])) as srv:
        yield srv


@pytest.fixture
def plain_server() -> Iterator[H2Server]:
    with H2Server() as srv:
        yield srv


def h2c_client(**kwargs: Any) -> httpx.AsyncClient:
    transport = hintpool.AsyncHTTPTransport(http1=False, http2=True, **kwargs)
    return httpx.AsyncClient(transport=transport)


async def get_all(
    client: httpx.AsyncClient, url: str, count: int, method: str = "GET"
) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def one(i: int) -> None:
        responses.append(await client.request(method, f"{url}/{i}", content=b"body"))

    async with AsyncTaskGroup() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return responses


def origin_stats(client: httpx.AsyncClient) -> hintpool.OriginStatistics:
    transport = client._transport
    assert isinstance(transport, hintpool.AsyncHTTPTransport)
    [stats] = transport.statistics().origins.values()
    return stats


async def test_alpn_h2_multiplexes_on_one_connection(
    tls_server: H2Server, client_ctx: ssl.SSLContext
) -> None:
    tls_server.hold = 20  # answered only once all 20 are open at once
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx, http2=True)
    async with httpx.AsyncClient(transport=transport) as client:
        responses = await get_all(client, tls_server.url, 20)
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert {r.status_code for r in responses} == {200}
        stats = origin_stats(client)
    assert tls_server.connections == 1
    assert stats.http_version == "HTTP/2"
    assert stats.concurrent_streams_peak == 20
    assert (stats.connections_opened, stats.requests, stats.reused) == (1, 20, 19)
    assert (stats.open, stats.idle) == (1, 1)


async def test_prior_knowledge_with_a_connection_limit_of_one(
    plain_server: H2Server,
) -> None:
    plain_server.hold = 10
    limits = httpx.Limits(max_connections=1)
    async with h2c_client(limits=limits) as client:
        responses = await get_all(client, plain_server.url, 10)
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert client._transport.statistics().waiting == 0  # type: ignore[attr-defined]
    assert plain_server.connections == 1


async def test_queued_requests_take_freed_streams(plain_server: H2Server) -> None:
    """The pool is full and the connection's two streams are taken: the
    queued requests go on streams as they free, on the one connection."""
    plain_server.max_streams = 2
    pool = hintpool.AsyncConnectionPool(http1=False, http2=True, max_connections=1)
    async with pool:
        await pool.request("GET", f"{plain_server.url}/warm")  # SETTINGS: 2
        # A third stream never opens, so each pair of answers is held for
        # hold_timeout: time for the other requests to queue, however slowly
        # the sync twin's threads start (with answers at once, a thread could
        # start after the first two were done and find a free stream).
        plain_server.hold = 3
        plain_server.hold_timeout = 0.3
        async with AsyncTaskGroup() as tg:
            for i in range(6):
                tg.start_soon(pool.request, "GET", f"{plain_server.url}/{i}")
        [stats] = pool.statistics().origins.values()
        assert pool.statistics().waiting == 0
    assert plain_server.connections == 1
    assert (stats.requests, stats.reused, stats.concurrent_streams_peak) == (7, 6, 2)
    assert stats.waited >= 1


async def test_an_idle_connection_is_shared_as_it_is_taken(
    plain_server: H2Server,
) -> None:
    """Taking an idle HTTP/2 connection shares it in the same step: a
    request that runs while the first closes a stale connection (an await)
    finds it, rather than opening another."""
    plain_server.max_streams = 2
    pool = hintpool.AsyncConnectionPool(http1=False, http2=True)
    async with pool:
        await pool.request("GET", f"{plain_server.url}/warm")  # SETTINGS: 2
        # Two connections: each holds its two streams until the other two
        # requests (threads in the sync test) have started.
        plain_server.hold = 3
        plain_server.hold_timeout = 0.5
        async with AsyncTaskGroup() as tg:
            for i in range(4):
                tg.start_soon(pool.request, "GET", f"{plain_server.url}/a{i}")
        [origin] = pool._state.origins.values()
        assert len(origin.idle) == 2
        stale = origin.idle[-1]  # taken first, found closed, closed: an await
        server_closed = pool._state.server_closed
        pool._state.server_closed = lambda c: c is stale or server_closed(c)
        plain_server.hold = 2  # answered only when both share a connection
        plain_server.hold_timeout = 2.0
        async with AsyncTaskGroup() as tg:
            for i in range(2):
                tg.start_soon(pool.request, "GET", f"{plain_server.url}/b{i}")
    assert plain_server.connections == 2
    numbers = {n for n, _, _, path, _ in plain_server.requests if "/b" in path}
    assert len(numbers) == 1


async def test_new_connection_assumes_the_origin_s_last_stream_limit(
    plain_server: H2Server,
) -> None:
    """The server said 2 streams at once: a new connection takes 2 before
    its own SETTINGS arrive, not 100."""
    plain_server.max_streams = 2
    pool = hintpool.AsyncConnectionPool(http1=False, http2=True)
    async with pool:
        await pool.request("GET", f"{plain_server.url}/warm")
        # Each connection holds its answers a while: all six in flight.
        plain_server.hold = 3
        plain_server.hold_timeout = 0.5
        async with AsyncTaskGroup() as tg:
            for i in range(6):
                tg.start_soon(pool.request, "GET", f"{plain_server.url}/{i}")
        [stats] = pool.statistics().origins.values()
    assert plain_server.connections == 3
    assert stats.concurrent_streams_peak == 2
    per_connection = [n for n, _, _, path, _ in plain_server.requests[1:]]
    assert sorted(per_connection) == [1, 1, 2, 2, 3, 3]


async def test_alpn_http11_server_gets_http11(
    ca: trustme.CA, client_ctx: ssl.SSLContext, server_factory: ServerFactory
) -> None:
    srv = server_factory(tls=_server_ctx(ca, ["http/1.1"]))
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx, http2=True)
    async with httpx.AsyncClient(transport=transport) as client:
        responses = await get_all(client, srv.url, 3)
        assert {r.http_version for r in responses} == {"HTTP/1.1"}
        response = await client.get(srv.url)
        assert response.http_version == "HTTP/1.1"
        stats = origin_stats(client)
    assert stats.http_version == "HTTP/1.1"
    assert stats.reused >= 1


async def test_tls_sessions_resume_on_http2(
    tls_server: H2Server, client_ctx: ssl.SSLContext
) -> None:
    tls_server.goaway_after = 1  # every connection serves one request
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx, http2=True)
    async with httpx.AsyncClient(transport=transport) as client:
        for i in range(4):
            response = await client.get(f"{tls_server.url}/{i}")
            assert response.http_version == "HTTP/2"
        stats = origin_stats(client)
    assert tls_server.connections == 4
    assert (stats.tls_handshakes_full, stats.tls_handshakes_resumed) == (1, 3)
    assert stats.goaways_received >= 3


async def test_goaway_resends_unprocessed_streams_whatever_the_method(
    plain_server: H2Server,
) -> None:
    plain_server.hold = 10
    plain_server.goaway_after = 4  # streams 1..7 processed, 9..19 not
    plain_server.goaway_connections = 1
    plain_server.hold_timeout = 0.2  # the 6 sent again do not make 10
    async with h2c_client() as client:
        responses = await get_all(client, plain_server.url, 10, method="POST")
        assert sorted(r.text for r in responses) == sorted(
            f"POST /{i} 4" for i in range(10)
        )
        stats = origin_stats(client)
    # Sent again: the ones above last_stream_id (6 when the ten streams
    # opened in order, as tasks do; threads may open them in any order).
    assert stats.goaway_retries == stats.requests - 10
    # (A thread that starts after the GOAWAY was read opens the second
    # connection without a retry.)
    assert 1 + (stats.goaway_retries > 0) <= plain_server.connections <= 2
    assert stats.goaways_received == 1
    assert stats.protocol_errors == 0
    # Every POST reached the server once.
    paths = [path for _, _, _, path, _ in plain_server.requests]
    assert sorted(paths) == sorted(f"/{i}" for i in range(10))


async def test_goaway_with_last_stream_zero_resends(plain_server: H2Server) -> None:
    plain_server.goaway_after = 1
    plain_server.goaway_last = 0  # "nothing processed"
    plain_server.goaway_connections = 1
    async with h2c_client() as client:
        response = await client.post(f"{plain_server.url}/x", content=b"abc")
        assert response.text == "POST /x 3"
        stats = origin_stats(client)
    assert (stats.goaways_received, stats.goaway_retries) == (1, 1)
    assert plain_server.connections == 2


async def test_goaway_with_an_error_fails_the_processed_streams_only(
    plain_server: H2Server,
) -> None:
    plain_server.hold = 3
    plain_server.hold_timeout = 0.2  # the one sent again does not make 3
    plain_server.goaway_after = 2
    plain_server.goaway_code = h2.errors.ErrorCodes.INTERNAL_ERROR
    plain_server.goaway_connections = 1
    outcomes: list[object] = []

    async def one(i: int) -> None:
        try:
            outcomes.append((await client.get(f"{plain_server.url}/{i}")).text)
        except httpx.RemoteProtocolError as exc:
            outcomes.append(exc)

    async with h2c_client() as client:
        async with AsyncTaskGroup() as tg:
            for i in range(3):
                tg.start_soon(one, i)
        stats = origin_stats(client)
        assert (stats.active, stats.goaways_received) == (0, 1)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    # The two the server had taken (up to last_stream_id) fail; a third
    # opened before the GOAWAY was read is sent again.
    assert len(failed) == 2
    assert len(outcomes) == 3
    assert stats.goaway_retries <= 1  # (a thread may start after the GOAWAY)
    assert stats.protocol_errors == 2


async def test_a_close_fails_each_stream_with_its_own_exception(
    plain_server: H2Server,
) -> None:
    """One exception object raised in three requests would gather all
    three tracebacks (and be written to by three threads at once)."""
    plain_server.hold = 4
    plain_server.hold_timeout = 30  # never answered: closed first
    failures: list[BaseException] = []

    async def one(i: int) -> None:
        try:
            await client.post(f"{plain_server.url}/{i}", content=b"x")
        except httpx.RemoteProtocolError as exc:
            failures.append(exc)

    async with h2c_client() as client:
        async with AsyncTaskGroup() as tg:
            for i in range(3):
                tg.start_soon(one, i)
            await tg.wait_until(lambda: len(plain_server.requests) == 3)
            plain_server.close_idle()
    assert len(failures) == 3
    chains = [_chain(exc) for exc in failures]
    assert sum(map(len, chains)) == len(set().union(*chains))


def _chain(exc: BaseException | None) -> set[int]:
    """The ids of ``exc`` and the exceptions it was raised from or in."""
    ids: set[int] = set()
    while exc is not None and id(exc) not in ids:
        ids.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return ids


async def test_refused_stream_is_sent_again(plain_server: H2Server) -> None:
    plain_server.refuse = 2
    async with h2c_client() as client:
        response = await client.delete(f"{plain_server.url}/r")
        assert response.status_code == 200
        stats = origin_stats(client)
    assert stats.retries == 2
    assert stats.goaway_retries == 0


async def test_reset_with_other_code_maps_to_httpx_error(
    plain_server: H2Server,
) -> None:
    plain_server.reset_code = h2.errors.ErrorCodes.INTERNAL_ERROR
    async with h2c_client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{plain_server.url}/r")
        stats = origin_stats(client)
        assert stats.protocol_errors == 1
        assert stats.active == 0
    assert len(plain_server.requests) == 1


async def test_streamed_body_is_not_sent_again(plain_server: H2Server) -> None:
    plain_server.goaway_after = 1
    plain_server.goaway_last = 0

    async def body() -> AsyncIterator[bytes]:
        yield b"once"

    async with h2c_client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{plain_server.url}/s", content=body())
        stats = origin_stats(client)
        assert (stats.open, stats.goaway_retries) == (0, 0)


async def test_zero_streams_allowed_ends_in_a_mapped_error(
    plain_server: H2Server,
) -> None:
    plain_server.max_streams = 0
    plain_server.refuse = 100  # and what it gets anyway, it refuses
    async with h2c_client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{plain_server.url}/z")
        stats = origin_stats(client)
        assert stats.active == 0
        assert stats.retries == 5  # then it gave up
        assert stats.protocol_errors == 1


async def test_goaway_last_stream_above_what_was_opened(
    plain_server: H2Server,
) -> None:
    plain_server.goaway_after = 1
    plain_server.goaway_last = 2**31 - 1
    plain_server.goaway_connections = 1
    async with h2c_client() as client:
        assert (await client.get(f"{plain_server.url}/a")).text == "GET /a 0"
        assert (await client.get(f"{plain_server.url}/b")).text == "GET /b 0"
        stats = origin_stats(client)
    assert (stats.goaways_received, stats.goaway_retries) == (1, 0)
    assert plain_server.connections == 2


async def test_h2_by_alpn_then_http11_spoken(
    tls_server: H2Server, client_ctx: ssl.SSLContext
) -> None:
    tls_server.speak_http1 = True
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx, http2=True)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(tls_server.url)
        stats = origin_stats(client)
        assert (stats.protocol_errors, stats.open) == (1, 0)


async def test_idle_http2_connection_expires_at_keepalive_expiry(
    plain_server: H2Server,
) -> None:
    clock = FakeClock()
    pool = hintpool.AsyncConnectionPool(
        http1=False, http2=True, keepalive_expiry=5.0, clock=clock
    )
    async with pool:
        await pool.request("GET", f"{plain_server.url}/a")
        clock.advance(4.9)
        await pool.request("GET", f"{plain_server.url}/b")
        assert plain_server.connections == 1
        clock.advance(5.0)
        await pool.request("GET", f"{plain_server.url}/c")
        stats = pool.statistics()
    assert plain_server.connections == 2
    assert stats.expired == 1


async def test_first_idle_close_teaches_the_timeout(plain_server: H2Server) -> None:
    clock = FakeClock()
    pool = hintpool.AsyncConnectionPool(
        http1=False, http2=True, keepalive_expiry=60.0, clock=clock
    )
    async with pool:
        await pool.request("GET", f"{plain_server.url}/a")
        [conn] = next(iter(pool._state.origins.values())).idle
        clock.advance(3.0)
        plain_server.close_idle()
        async with AsyncTaskGroup() as tg:
            await tg.wait_until(lambda: pool._state.server_closed(conn))
        await pool.request("GET", f"{plain_server.url}/b")
        [stats] = pool.statistics().origins.values()
    assert stats.closed_by_server == 1
    assert stats.goaways_received == 0  # a close without GOAWAY
    assert stats.learned_timeout == pytest.approx(3.0)
    assert plain_server.connections == 2


async def test_goaway_on_an_idle_connection_is_counted(
    plain_server: H2Server,
) -> None:
    """nginx's and Node's idle timeouts: GOAWAY on a connection with no
    request, then the close. Counted as a GOAWAY and as an idle close (it
    teaches the timeout as any idle close does)."""
    clock = FakeClock()
    pool = hintpool.AsyncConnectionPool(
        http1=False, http2=True, keepalive_expiry=60.0, clock=clock
    )
    async with pool:
        await pool.request("GET", f"{plain_server.url}/a")
        [conn] = next(iter(pool._state.origins.values())).idle
        clock.advance(3.0)
        plain_server.goaway_idle()
        async with AsyncTaskGroup() as tg:
            await tg.wait_until(lambda: pool._state.server_closed(conn))
        plain_server.ending = False
        await pool.request("GET", f"{plain_server.url}/b")
        async with AsyncTaskGroup() as tg:
            await tg.wait_until(lambda: conn.goaway)
        [stats] = pool.statistics().origins.values()
    assert (stats.goaways_received, stats.closed_by_server) == (1, 1)
    assert stats.learned_timeout == pytest.approx(3.0)
    assert plain_server.connections == 2


async def test_trace_emits_http2_events(plain_server: H2Server) -> None:
    names: list[str] = []

    async def trace(name: str, info: dict[str, Any]) -> None:
        names.append(name)

    async with h2c_client() as client:
        await client.get(plain_server.url, extensions={"trace": trace})
    assert "http2.send_request_headers.started" in names
    assert "http2.receive_response_headers.complete" in names


def test_missing_h2_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h2", None)
    with pytest.raises(ImportError, match=r"hintpool\[http2\]"):
        hintpool.AsyncHTTPTransport(http2=True)
    with pytest.raises(ImportError, match=r"hintpool\[http2\]"):
        hintpool.AsyncConnectionPool(http2=True)
    hintpool.AsyncHTTPTransport()  # HTTP/1.1 needs no h2


def test_http1_and_http2_both_off_is_refused() -> None:
    with pytest.raises(ValueError, match="http1 and http2"):
        hintpool.AsyncHTTPTransport(http1=False, http2=False)
