"""Pre-warmed replacements against real local servers (async pools).

The server announces ``Keep-Alive: timeout=5, max=N`` counted down, Apache
style, and closes after 3 requests. Between requests the test waits until
no pre-warm is in flight (a condition, not a delay), so the counts are
exact. Sync pools do not pre-warm (the shared reaper thread must not block
on one pool's connects): checked here too.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import anyio
import httpcore
import pytest
import trio
import trio.testing
import trustme

from hintpool import AsyncConnectionPool, ConnectionPool

from ._async.test_connection_pool import response
from .fixtures_server import ServerFactory

SERVER = {"keep_alive": "timeout=5, max={left}", "max_requests": 3}


async def settled(pool: AsyncConnectionPool) -> None:
    """Until no pre-warm is being opened (bounded)."""
    with anyio.fail_after(5):
        while any(o.prewarming for o in pool._state.origins.values()):
            await anyio.sleep(0.001)


async def at_once(pool: AsyncConnectionPool, url: str, count: int) -> None:
    """``count`` requests in flight together (each holds its connection
    until all have their headers), then their bodies read."""
    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(pool.stream("GET", url))]
        for _ in range(count - 1):
            streams.append(await stack.enter_async_context(pool.stream("GET", url)))
        await settled(pool)
        for response in streams:
            await response.aread()


async def requests(pool: AsyncConnectionPool, url: str, count: int) -> None:
    for _ in range(count):
        response = await pool.request("GET", url)
        assert response.status == 200
        await settled(pool)


@pytest.mark.anyio
async def test_next_connection_is_opened_before_the_last_response(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(**SERVER)
    async with AsyncConnectionPool(prewarm=True) as pool:
        await requests(pool, srv.url + "/", 9)
        stats = pool.statistics()
        assert stats.prewarmed == 3
        assert stats.prewarm_used == 2  # the third waits for a 10th request
        assert stats.connections_opened == 4  # one opened by a request
        assert stats.reused == 6
        assert srv.requests_served == 9
    stats = pool.statistics()
    assert stats.prewarm_wasted == 1  # closed unused with the pool
    assert (stats.open, stats.prewarm_failed, stats.connect_errors) == (0, 0, 0)
    origin = stats.origins[srv.url]
    assert (origin.prewarmed, origin.prewarm_used, origin.prewarm_wasted) == (3, 2, 1)


@pytest.mark.anyio
async def test_on_by_default_off_by_keyword_and_never_in_sync_pools(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(**SERVER)
    async with AsyncConnectionPool() as pool:
        await requests(pool, srv.url + "/", 9)
        assert pool.statistics().prewarmed == 3
    async with AsyncConnectionPool(prewarm=False) as pool:
        await requests(pool, srv.url + "/", 9)
        stats = pool.statistics()
        assert (stats.connections_opened, stats.prewarmed) == (3, 0)
    with ConnectionPool() as sync_pool:
        for _ in range(9):
            sync_pool.request("GET", srv.url + "/")
        stats = sync_pool.statistics()
    assert (stats.connections_opened, stats.prewarmed) == (3, 0)


@pytest.mark.anyio
async def test_prewarmed_tls_connection_resumes_the_session(
    server_factory: ServerFactory,
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    srv = server_factory(host="localhost", tls=server_ctx, **SERVER)
    async with AsyncConnectionPool(ssl_context=client_ctx, prewarm=True) as pool:
        await requests(pool, f"https://localhost:{srv.port}/", 9)
        stats = pool.statistics()
    assert stats.prewarmed == 3
    assert stats.tls_handshakes_full == 1
    assert stats.tls_handshakes_resumed == 3


@pytest.mark.anyio
async def test_failed_prewarm_is_counted_and_never_raised(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(**SERVER)
    async with AsyncConnectionPool(prewarm=True) as pool:
        connect = pool._connector.connect
        calls = 0

        async def refuse_the_second(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:  # the first pre-warm
                raise httpcore.ConnectError("refused (on purpose)")
            return await connect(*args)

        pool._connector.connect = refuse_the_second  # type: ignore[method-assign]
        await requests(pool, srv.url + "/", 4)
        stats = pool.statistics()
    assert stats.prewarm_failed == 1
    assert stats.connect_errors == 0  # not the caller's failure
    # The 3rd response (max=0) started another pre-warm: the 4th request
    # found it ready.
    assert (stats.connections_opened, stats.prewarmed, stats.prewarm_used) == (2, 1, 1)
    assert srv.requests_served == 4


@pytest.mark.anyio
async def test_close_cancels_a_prewarm_in_flight(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(**SERVER)
    pool = AsyncConnectionPool(prewarm=True)
    async with pool:
        started = anyio.Event()
        connect = pool._connector.connect

        async def stall_prewarms(*args: Any) -> Any:
            if pool.statistics().connections_opened:  # a pre-warm
                started.set()
                await anyio.sleep_forever()
            return await connect(*args)

        pool._connector.connect = stall_prewarms  # type: ignore[method-assign]
        await pool.request("GET", srv.url + "/")
        await pool.request("GET", srv.url + "/")  # max=1: pre-warm starts
        with anyio.fail_after(5):
            await started.wait()
        assert pool.statistics().open == 2  # the pre-warm holds a slot
    stats = pool.statistics()
    assert (stats.open, stats.prewarmed, stats.prewarm_failed) == (0, 0, 0)
    assert not any(o.prewarming for o in pool._state.origins.values())


@pytest.mark.anyio
async def test_a_request_waits_for_the_prewarm_in_flight(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(**SERVER)
    url = srv.url + "/"
    async with AsyncConnectionPool(prewarm=True) as pool:
        release = anyio.Event()
        connect = pool._connector.connect

        async def slow_prewarms(*args: Any) -> Any:
            if pool.statistics().connections_opened:  # a pre-warm
                await release.wait()
            return await connect(*args)

        pool._connector.connect = slow_prewarms  # type: ignore[method-assign]
        await pool.request("GET", url)
        await pool.request("GET", url)  # max=1: the pre-warm starts
        await pool.request("GET", url)  # max=0: retired
        (origin,) = pool._state.origins.values()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.request, "GET", url)
            with anyio.fail_after(5):
                while not origin.prewarm_takers:
                    await anyio.sleep(0.001)
            release.set()
        stats = pool.statistics()
    assert (stats.connections_opened, stats.prewarmed, stats.prewarm_used) == (2, 1, 1)
    assert srv.requests_served == 4


MOCK_CLOCK = pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}))],
)


def mock_pool(responses: int) -> AsyncConnectionPool:
    """Pre-warming on the mock backend (every mock connection replays
    ``responses`` canned ``timeout=5`` responses) and trio's clock."""
    canned = [response("timeout=5")] * responses
    return AsyncConnectionPool(
        network_backend=httpcore.AsyncMockBackend(canned),
        clock=trio.current_time,
        prewarm=True,
    )


@pytest.mark.anyio
@MOCK_CLOCK
async def test_expiring_connection_of_a_busy_origin_is_replaced() -> None:
    # Virtual time (trio's MockClock): the sleeps below take no real time.
    pool = mock_pool(3)
    async with pool:
        await pool.request("GET", "http://example.test/")
        await anyio.sleep(1)
        await pool.request("GET", "http://example.test/")  # busy: 2 within 5 s
        await anyio.sleep(4.5)  # idle deadline 4 s after: expired, replaced
        stats = pool.statistics()
        assert (stats.expired, stats.prewarmed, stats.idle) == (1, 1, 1)
        await pool.request("GET", "http://example.test/")
        assert pool.statistics().prewarm_used == 1
        # Nobody comes any more. Requests came 4.5 s apart, so the next
        # expiry (4 s after the last) is replaced once more; that one is
        # wasted, and not replaced again.
        await anyio.sleep(20)
        stats = pool.statistics()
    assert (stats.expired, stats.prewarmed, stats.prewarm_wasted) == (3, 2, 1)
    assert (stats.open, stats.connections_opened) == (0, 3)


@pytest.mark.anyio
async def test_overlapping_requests_keep_a_spare_connection(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory(keep_alive="timeout=5")
    url = srv.url + "/"
    async with AsyncConnectionPool(prewarm=True) as pool:
        await requests(pool, url, 2)
        # The second of two at once opens its own: a spare is opened for
        # the next overlap.
        await at_once(pool, url, 2)
        stats = pool.statistics()
        assert (stats.connections_opened, stats.prewarmed) == (3, 1)
        # Three at once: the third takes the spare, and another is opened.
        await at_once(pool, url, 3)
        stats = pool.statistics()
        assert (stats.connections_opened, stats.prewarmed) == (4, 2)
        assert (stats.prewarm_used, stats.idle) == (1, 4)
        # One at a time: the spares stay at the bottom, nothing more opens.
        await requests(pool, url, 5)
        assert pool.statistics().connections_opened == 4
    assert srv.requests_served == 12


@pytest.mark.anyio
@MOCK_CLOCK
async def test_a_spare_is_kept_only_while_the_overlap_is_recent() -> None:
    pool = mock_pool(60)
    url = "http://example.test/"
    async with pool:
        await pool.request("GET", url)
        await at_once(pool, url, 2)  # at 0 s
        assert pool.statistics().prewarmed == 1
        await anyio.sleep(0.5)
        # One request a second. The idle connections expire 4 s after their
        # last use (5 s announced, 1 s margin); a request that then takes
        # the last idle one reserves a new spare while the overlap is at
        # most two timeouts (10 s) old: at 4.5 s and 8.5 s.
        for _ in range(20):
            await anyio.sleep(1)
            await pool.request("GET", url)
        stats = pool.statistics()
        assert (stats.prewarmed, stats.prewarm_used) == (3, 0)
        assert (stats.expired, stats.idle) == (4, 1)
    assert pool.statistics().prewarm_wasted == 3


@pytest.mark.anyio
async def test_a_prewarm_that_connects_as_the_pool_closes_is_closed(
    server_factory: ServerFactory,
) -> None:
    # The pre-warm's connect completes in the same loop turn as close():
    # anyio does not cancel a task whose wait is already over, so it went on
    # to park its new connection idle in the pool close() had just emptied,
    # and the transport was left to the garbage collector.
    srv = server_factory(**SERVER)
    pool = AsyncConnectionPool(prewarm=True)
    opened: list[Any] = []
    async with pool:
        closing = anyio.Event()
        connect = pool._connector.connect

        async def connect_as_the_pool_closes(*args: Any) -> Any:
            if not pool.statistics().connections_opened:
                return await connect(*args)
            with anyio.CancelScope(shield=True):  # no cancellation reaches it
                await closing.wait()
                opened.append(await connect(*args))
            return opened[-1]

        pool._connector.connect = connect_as_the_pool_closes  # type: ignore[method-assign]
        await pool.request("GET", srv.url + "/")
        await pool.request("GET", srv.url + "/")  # max=1: the pre-warm starts
        closing.set()  # runs once close() waits for the pre-warm's task
    ((connection, _, _),) = opened
    try:
        assert connection.is_closed()
    finally:
        await connection.aclose()
    stats = pool.statistics()
    assert (stats.open, stats.idle, stats.prewarmed) == (0, 0, 0)
    assert stats.prewarm_failed == 0  # cancelled, not failed
    assert not any(o.prewarming for o in pool._state.origins.values())
