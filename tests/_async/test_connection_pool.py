"""The async pool driven through httpcore's mock network backend.

No sockets and no sleeping: the responses are canned bytes and time is a
FakeClock handed to the pool.
"""

from __future__ import annotations

from typing import Callable

import httpcore
import pytest

import hintpool
from hintpool import AsyncConnectionPool

from ..clock import FakeClock
from ..concurrency import AsyncTaskGroup

ORIGIN = "http://example.test:80"


def response(keep_alive: str | None = None, connection: str | None = None) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
    if keep_alive is not None:
        head += b"Keep-Alive: " + keep_alive.encode() + b"\r\n"
    if connection is not None:
        head += b"Connection: " + connection.encode() + b"\r\n"
    return head + b"\r\nhello"


def make_pool(
    responses: list[bytes], clock: FakeClock | None = None, **kwargs: object
) -> AsyncConnectionPool:
    backend = httpcore.AsyncMockBackend(responses)
    return AsyncConnectionPool(
        network_backend=backend,
        clock=clock or FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )


async def get(pool: AsyncConnectionPool, path: str = "/") -> httpcore.Response:
    return await pool.request("GET", "http://example.test" + path)


@pytest.mark.anyio
async def test_reuses_connection_within_hinted_timeout() -> None:
    clock = FakeClock()
    pool = make_pool([response("timeout=5")] * 3, clock)
    async with pool:
        assert (await get(pool)).content == b"hello"
        clock.advance(3.9)  # 5 s announced, minus the 1 s margin: 4 s
        await get(pool)
        stats = pool.statistics()
    assert stats.connections_opened == 1
    assert stats.reused == 1
    assert stats.requests == 2
    assert stats.origins[ORIGIN].last_hint == hintpool.KeepAlive(timeout=5)


@pytest.mark.anyio
async def test_connection_expires_margin_before_hinted_timeout() -> None:
    clock = FakeClock()
    pool = make_pool([response("timeout=5")] * 3, clock)
    async with pool:
        await get(pool)
        clock.advance(4.0)
        await get(pool)
        stats = pool.statistics()
    assert stats.connections_opened == 2
    assert stats.expired == 1
    assert stats.reused == 0


@pytest.mark.anyio
async def test_tiny_timeout_means_no_reuse_after_idle() -> None:
    pool = make_pool([response("timeout=1")] * 2)
    async with pool:
        await get(pool)
        await get(pool)
        stats = pool.statistics()
    assert stats.connections_opened == 2
    assert stats.idle == 0


@pytest.mark.anyio
async def test_margin_and_cap_are_configurable() -> None:
    clock = FakeClock()
    pool = make_pool(
        [response("timeout=86400")] * 3,
        clock,
        keepalive_margin=0.0,
        max_keepalive_timeout=30.0,
    )
    async with pool:
        await get(pool)
        clock.advance(29.9)
        await get(pool)
        clock.advance(30.0)
        await get(pool)
        stats = pool.statistics()
    assert stats.connections_opened == 2
    assert stats.reused == 1
    assert stats.expired == 1


@pytest.mark.anyio
async def test_no_hint_falls_back_to_keepalive_expiry() -> None:
    clock = FakeClock()
    pool = make_pool([response()] * 3, clock, keepalive_expiry=2.0)
    async with pool:
        await get(pool)
        clock.advance(1.9)
        await get(pool)
        clock.advance(2.0)
        await get(pool)
        stats = pool.statistics()
    assert (stats.connections_opened, stats.reused, stats.expired) == (2, 1, 1)


@pytest.mark.anyio
async def test_keepalive_expiry_none_keeps_hintless_connections() -> None:
    clock = FakeClock()
    pool = make_pool([response()] * 2, clock, keepalive_expiry=None)
    async with pool:
        await get(pool)
        clock.advance(10_000)
        await get(pool)
        assert pool.statistics().reused == 1


@pytest.mark.anyio
async def test_max_counts_down_and_retires_the_connection() -> None:
    # Apache: "max=1" = one more request after this one, "max=0" = last.
    pool = make_pool(
        [response("timeout=5, max=1"), response("timeout=5, max=0")], prewarm=False
    )
    async with pool:
        await get(pool)
        await get(pool)
        stats = pool.statistics()
        assert stats.retired_by_max == 1
        assert stats.open == 0
        await get(pool)
        stats = pool.statistics()
    assert stats.connections_opened == 2
    assert stats.origins[ORIGIN].retired_by_max == 1


@pytest.mark.anyio
async def test_max_zero_on_first_response_means_no_reuse() -> None:
    pool = make_pool([response("timeout=5, max=0")])
    async with pool:
        await get(pool)
        assert pool.statistics().open == 0


@pytest.mark.anyio
async def test_connection_close_is_not_reused() -> None:
    pool = make_pool([response("timeout=5", connection="close")])
    async with pool:
        await get(pool)
        await get(pool)
        stats = pool.statistics()
    assert stats.connections_opened == 2
    assert stats.reused == 0


@pytest.mark.anyio
async def test_malformed_hint_is_no_hint() -> None:
    clock = FakeClock()
    pool = make_pool([response("timeout=banana, max=-3")] * 2, clock)
    async with pool:
        await get(pool)
        clock.advance(4.9)  # keepalive_expiry (5 s) applies
        await get(pool)
        stats = pool.statistics()
    assert stats.reused == 1
    assert stats.origins[ORIGIN].last_hint is None


@pytest.mark.anyio
async def test_unread_body_closes_the_connection() -> None:
    pool = make_pool([response("timeout=5")] * 2)
    async with pool:
        async with pool.stream("GET", "http://example.test/"):
            pass  # body never read
        stats = pool.statistics()
        assert (stats.open, stats.idle) == (0, 0)
        await get(pool)
        assert pool.statistics().connections_opened == 2


@pytest.mark.anyio
async def test_idle_limit_counts_idle_connections_only() -> None:
    pool = make_pool(
        [response("timeout=5")] * 2, max_connections=3, max_keepalive_connections=1
    )
    async with pool:
        async with pool.stream("GET", "http://example.test/") as r1:
            async with pool.stream("GET", "http://example.test/") as r2:
                assert pool.statistics().active == 2
                await r2.aread()
            await r1.aread()
        stats = pool.statistics()
    assert stats.idle == 1
    assert stats.evicted == 1


@pytest.mark.anyio
async def test_pool_timeout_when_no_slot_frees() -> None:
    pool = make_pool([response("timeout=5")] * 2, max_connections=1)
    async with pool:
        async with pool.stream("GET", "http://example.test/") as first:
            with pytest.raises(hintpool.PoolTimeout) as info:
                await pool.request(
                    "GET",
                    "http://example.test/",
                    extensions={"timeout": {"pool": 0.01}},
                )
            assert isinstance(info.value, httpcore.PoolTimeout)
            assert pool.statistics().waiting == 0
            await first.aread()
        stats = pool.statistics()
    assert stats.open == 1


def waiting(pool: AsyncConnectionPool, count: int) -> Callable[[], bool]:
    return lambda: pool.statistics().waiting == count


@pytest.mark.anyio
async def test_waiter_gets_the_released_connection() -> None:
    pool = make_pool([response("timeout=5")] * 2, max_connections=1)
    order: list[str] = []
    async with pool:
        async with AsyncTaskGroup() as tg:
            async with pool.stream("GET", "http://example.test/") as first:

                async def second() -> None:
                    await get(pool)
                    order.append("second")

                tg.start_soon(second)
                await tg.wait_until(waiting(pool, 1))
                await first.aread()
                order.append("first")
        stats = pool.statistics()
    assert order == ["first", "second"]
    assert (stats.connections_opened, stats.reused) == (1, 1)


@pytest.mark.anyio
async def test_waiters_for_other_origins_get_a_slot() -> None:
    pool = make_pool([response("timeout=5")] * 2, max_connections=1)
    async with pool:
        async with AsyncTaskGroup() as tg:
            async with pool.stream("GET", "http://example.test/") as first:
                tg.start_soon(pool.request, "GET", "http://other.test/")
                await tg.wait_until(waiting(pool, 1))
                await first.aread()
        stats = pool.statistics()
        # Per-origin entries are built when read: read them before close.
        other = stats.origins["http://other.test:80"]
    assert stats.connections_opened == 2
    assert stats.evicted == 1  # made way for the waiter of the other origin
    assert other.idle == 1
    assert stats.origins["http://other.test:80"].idle == 0  # closed since


@pytest.mark.anyio
async def test_server_disconnect_maps_and_frees_the_slot() -> None:
    pool = make_pool([])  # the server closes without a byte
    async with pool:
        with pytest.raises(hintpool.RemoteProtocolError) as info:
            await get(pool)
        assert isinstance(info.value, httpcore.RemoteProtocolError)
        stats = pool.statistics()
    assert (stats.open, stats.active, stats.idle) == (0, 0, 0)


@pytest.mark.anyio
async def test_garbage_response_maps_to_remote_protocol_error() -> None:
    pool = make_pool([b"NOT HTTP AT ALL\r\n\r\n"])
    async with pool:
        with pytest.raises(hintpool.RemoteProtocolError):
            await get(pool)
        assert pool.statistics().open == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.test/", "unsupported protocol"),
        ("example.test/", "missing an 'http://'"),
    ],
)
async def test_unsupported_urls(url: str, message: str) -> None:
    pool = make_pool([])
    async with pool:
        request = httpcore.Request("GET", url, headers=[(b"Host", b"x")])
        with pytest.raises(hintpool.UnsupportedProtocol, match=message):
            await pool.handle_async_request(request)


@pytest.mark.anyio
async def test_closed_pool_opens_a_new_connection() -> None:
    pool = make_pool([response("timeout=5")] * 3)
    await get(pool)
    await pool.aclose()
    await get(pool)  # as httpcore's pool does: usable after close
    await get(pool)
    stats = pool.statistics()
    assert (stats.connections_opened, stats.reused, stats.idle) == (2, 1, 1)
    await pool.aclose()


@pytest.mark.anyio
async def test_a_request_waiting_at_close_is_served() -> None:
    pool = make_pool([response("timeout=5")] * 2, max_connections=1)
    async with AsyncTaskGroup() as tg:
        async with pool.stream("GET", "http://example.test/") as first:
            tg.start_soon(pool.request, "GET", "http://example.test/")
            await tg.wait_until(waiting(pool, 1))
            await pool.aclose()  # used to fail the waiter with PoolClosed
            await first.aread()
    stats = pool.statistics()
    # The connection out at close time was not handed on: the waiter got
    # its slot and a new connection.
    assert (stats.requests, stats.connections_opened, stats.reused) == (2, 2, 0)
    assert (stats.waiting, stats.idle) == (0, 1)
    await pool.aclose()


@pytest.mark.anyio
async def test_close_closes_idle_connections() -> None:
    pool = make_pool([response("timeout=5")])
    async with pool:
        await get(pool)
        assert pool.statistics().idle == 1
    stats = pool.statistics()
    assert (stats.open, stats.idle) == (0, 0)


@pytest.mark.anyio
async def test_statistics_and_repr() -> None:
    pool = make_pool([response("timeout=5, max=9")] * 2)
    async with pool:
        await get(pool)
        await pool.request("GET", "http://other.test:8080/")
        stats = pool.statistics()
        text = repr(pool)
    assert set(stats.origins) == {ORIGIN, "http://other.test:8080"}
    assert stats.open == stats.idle + stats.active == 2
    assert stats.requests == sum(o.requests for o in stats.origins.values())
    assert text == "<AsyncConnectionPool open=2 idle=2 origins=2>"
    with pytest.raises(AttributeError):
        stats.requests = 3  # type: ignore[misc]


@pytest.mark.anyio
async def test_lifo_reuse_most_recent_first() -> None:
    clock = FakeClock()
    # prewarm=False: the overlap below would keep a spare, reused first.
    pool = make_pool([response("timeout=5")] * 3, clock, prewarm=False)
    async with pool:
        async with pool.stream("GET", "http://example.test/") as r1:
            async with pool.stream("GET", "http://example.test/") as r2:
                await r1.aread()
                await r1.aclose()
                clock.advance(1)
                await r2.aread()
        # r2's connection went idle last: it has the furthest deadline.
        clock.advance(3.5)  # r1's connection is past its 4 s window now
        await get(pool)
        stats = pool.statistics()
    assert stats.reused == 1
    assert stats.connections_opened == 2  # r2's connection served the request


@pytest.mark.anyio
async def test_connect_retries_back_off_then_give_up(
    monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    pool = AsyncConnectionPool(retries=2)
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(pool._connector, "_sleep", no_wait)
    with pytest.raises(hintpool.ConnectError):
        await pool.request("GET", f"http://127.0.0.1:{refused_port}/")
    assert delays == [0.0, 0.5]  # three attempts, httpcore's backoff
    await pool.aclose()
