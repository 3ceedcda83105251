"""``max_connections_per_origin`` against real local servers.

One slow origin whose responses are held open (``/hold``, answered when the
test says so: no fixed delay, no sleeping) and many fast ones: the slow
origin's backlog never holds up a request to a fast one. Counted, not timed.
"""

from __future__ import annotations

import httpcore
import pytest

from hintpool import AsyncConnectionPool

from ..concurrency import AsyncTaskGroup
from ..fixtures_server import ServerFactory

FAST_ORIGINS = 8
SLOW_REQUESTS = 10


@pytest.mark.anyio
async def test_slow_origin_at_its_cap_never_holds_up_fast_origins(
    server_factory: ServerFactory,
) -> None:
    slow = server_factory()
    fast = [server_factory() for _ in range(FAST_ORIGINS)]
    fast_labels = [srv.url for srv in fast]
    # Lists: appending is atomic in the threads of the generated sync test.
    done: dict[str, list[int]] = {"slow": [], "fast": []}

    def finished() -> tuple[int, int]:
        return len(done["slow"]), len(done["fast"])

    async def get(pool: AsyncConnectionPool, url: str, kind: str) -> None:
        response = await pool.request("GET", url)
        assert response.status == 200
        done[kind].append(response.status)

    async def fast_worker(pool: AsyncConnectionPool, worker: int, count: int) -> None:
        # Each worker sticks to one origin: with 2 workers per origin no
        # fast origin reaches its own cap in the first round.
        url = fast[worker % FAST_ORIGINS].url + "/"
        for _ in range(count):
            await get(pool, url, "fast")

    # prewarm=False: a spare for the slow origin would take a slot its queued
    # requests then wait for, and the waits counted below would vary.
    async with AsyncConnectionPool(
        max_connections=20, max_connections_per_origin=4, prewarm=False
    ) as pool:
        async with AsyncTaskGroup() as tg:
            for _ in range(SLOW_REQUESTS):
                tg.start_soon(get, pool, slow.url + "/hold", "slow")
            try:
                await tg.wait_until(
                    lambda: slow.held == 4 and pool.statistics().waiting == 6
                )

                # The 16 slots left, used by 16 requests at a time: none waits,
                # although 6 requests to the slow origin queued before them.
                async with AsyncTaskGroup() as fast_tg:
                    for n in range(16):
                        fast_tg.start_soon(fast_worker, pool, n, 5)
                stats = pool.statistics()
                assert finished() == (0, 80)
                assert sum(stats.origins[o].waited for o in fast_labels) == 0

                # More fast requests than slots (they may wait for each other):
                # every one of them is served while the slow origin is stuck.
                async with AsyncTaskGroup() as fast_tg:
                    for n in range(40):
                        fast_tg.start_soon(fast_worker, pool, n, 3)
                stats = pool.statistics()
                assert finished() == (0, 200)
                assert stats.origins[slow.url].open == 4
                assert stats.origins[slow.url].waited == SLOW_REQUESTS - 4
                assert slow.held == 4
            finally:
                slow.release_held()  # else a failure leaves the tasks stuck
        stats = pool.statistics()
    assert finished() == (SLOW_REQUESTS, 200)
    assert slow.connections_opened == 4  # the cap, and reuse after it
    assert stats.waiting == 0
    assert all(stats.origins[o].open <= 4 for o in fast_labels)


@pytest.mark.anyio
async def test_cap_of_one_serialises_an_origin(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory()
    async with AsyncConnectionPool(max_connections_per_origin=1) as pool:
        async with AsyncTaskGroup() as tg:
            for _ in range(5):
                tg.start_soon(pool.request, "GET", srv.url + "/")
        stats = pool.statistics()
    assert srv.connections_opened == 1
    assert stats.requests == 5
    assert stats.reused == 4


@pytest.mark.anyio
async def test_pool_timeout_frees_the_waiters_place(
    server_factory: ServerFactory,
) -> None:
    srv = server_factory()
    async with AsyncConnectionPool(max_connections_per_origin=1) as pool:
        async with AsyncTaskGroup() as tg:
            tg.start_soon(pool.request, "GET", srv.url + "/hold")
            await tg.wait_until(lambda: srv.held == 1)
            with pytest.raises(httpcore.PoolTimeout):
                await pool.request(
                    "GET", srv.url + "/", extensions={"timeout": {"pool": 0.01}}
                )
            assert pool.statistics().waiting == 0
            srv.release_held()
        response = await pool.request("GET", srv.url + "/")
        assert response.status == 200
    assert srv.connections_opened == 1
