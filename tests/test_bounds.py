"""Everything the pool remembers is bounded, however many origins come by.

* idle connections never exceed ``max_keepalive_connections`` (checked after
  every release, through the real pool);
* origins -- and with them per-origin statistics and learned idle
  timeouts -- stay within ``max_origins`` plus the origins that still have a
  connection open, while the pool's totals keep counting everything;
* the reaper watches at most ``MAX_WATCHED`` idle connections;
* the deadline heap stays proportional to the idle connections;
* the TLS session cache holds at most its size, through real handshakes.

The million-request version of this is ``scripts/soak.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
import trustme

import hintpool
from hintpool import AsyncConnectionPool
from hintpool._state import MAX_WATCHED

from .clock import FakeClock
from .fakenet import AsyncFakeNetwork, Behaviour
from .fixtures_server import ServerFactory
from .server import TestServer
from .tls_helpers import client_context, server_context


def run(fn: object, *args: object) -> object:
    return anyio.run(fn, *args)  # type: ignore[arg-type]


def test_idle_never_exceeds_max_keepalive_connections() -> None:
    clock = FakeClock()
    net = AsyncFakeNetwork(clock)
    pool = AsyncConnectionPool(
        network_backend=net, clock=clock, max_keepalive_connections=5
    )
    hosts = [f"h{i}.test" for i in range(12)]

    async def main() -> None:
        for round_ in range(4):
            responses = []
            for host in hosts * 2:
                request = hintpool_request(host)
                responses.append(await pool.handle_async_request(request))
            for response in responses:
                await response.aread()
                await response.aclose()
                stats = pool.statistics()
                assert stats.idle <= 5
                assert stats.open == stats.idle + stats.active
            clock.advance(round_)
        await pool.aclose()

    run(main)
    assert pool.statistics().evicted > 0


def hintpool_request(host: str) -> object:
    import httpcore

    return httpcore.Request("GET", f"http://{host}/", headers=[(b"Host", host)])


@pytest.mark.parametrize("max_origins", [1, 50])
def test_origins_and_statistics_stay_bounded(max_origins: int) -> None:
    clock = FakeClock()
    net = AsyncFakeNetwork(clock)
    pool = AsyncConnectionPool(
        network_backend=net,
        clock=clock,
        max_origins=max_origins,
        max_keepalive_connections=10,
    )
    total = 2_000

    async def main() -> None:
        for i in range(total):
            host = f"o{i}.test"
            # Half the origins send no hint and teach the pool a timeout.
            if i % 2:
                net.behaviours[host] = Behaviour(hint=None)
            await pool.request("GET", f"http://{host}/", headers={"Host": host})
            state = pool._state
            assert len(state.origins) <= max_origins + state.open_count
            assert len(pool.statistics().origins) <= max_origins + 10
        await pool.aclose()

    run(main)
    stats = pool.statistics()
    # Origins are forgotten when a new one comes, so those whose connections
    # closed since (here: at aclose) wait for the next new origin: the bound
    # is max_origins plus the connections that were open then.
    assert len(stats.origins) <= max_origins + 10
    # Forgotten origins still count in the totals.
    assert stats.requests == stats.connections_opened == total
    assert stats.evicted == total - 10


def test_learned_timeouts_are_forgotten_with_their_origin() -> None:
    clock = FakeClock()
    net = AsyncFakeNetwork(clock)
    pool = AsyncConnectionPool(
        network_backend=net, clock=clock, max_origins=20, max_keepalive_connections=0
    )
    pool._state.server_closed = net.fin_visible

    async def main() -> None:
        for i in range(200):
            host = f"l{i}.test"
            net.behaviours[host] = Behaviour(hint=None, idle_timeout=1.0)
            url = f"http://{host}/"
            pool._state.max_idle = 1  # let one connection idle to learn from
            await pool.request("GET", url, headers={"Host": host})
            clock.advance(1.5)
            net.fins_arrive()
            # Its replacement is not kept: the next origin's connection is
            # then the only idle one, whichever rule chooses what to evict.
            pool._state.max_idle = 0
            await pool.request("GET", url, headers={"Host": host})
        await pool.aclose()

    run(main)
    learned = [o for o in pool._state.origins.values() if o.learned_timeout]
    assert 0 < len(learned) <= 20
    assert len(pool._state.origins) <= 20
    assert pool.statistics().closed_by_server == 200


def test_reaper_watches_a_bounded_number_of_connections() -> None:
    clock = FakeClock()
    net = AsyncFakeNetwork(clock)
    for i in range(MAX_WATCHED + 100):
        net.behaviours[f"w{i}.test"] = Behaviour(hint=None)
    pool = AsyncConnectionPool(
        network_backend=net,
        clock=clock,
        max_connections=None,
        max_keepalive_connections=None,
    )

    async def main() -> None:
        for i in range(MAX_WATCHED + 100):
            host = f"w{i}.test"
            await pool.request("GET", f"http://{host}/", headers={"Host": host})
        assert len(pool._state.watched) == MAX_WATCHED
        # Hundreds of rounds on the same idle set: the heap does not grow.
        for _ in range(20):
            for i in range(0, MAX_WATCHED + 100, 7):
                host = f"w{i}.test"
                await pool.request("GET", f"http://{host}/", headers={"Host": host})
            assert len(pool._state._heap) <= 2 * pool._state.idle_count + 64
        await pool.aclose()

    run(main)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_servers(server_factory: ServerFactory, ca: trustme.CA) -> Iterator[list[str]]:
    ctx = server_context(ca.issue_cert("127.0.0.1"), "TLSv1.2")
    servers: list[TestServer] = [server_factory(tls=ctx) for _ in range(8)]
    yield [s.url for s in servers]


def test_tls_session_cache_is_bounded_through_real_handshakes(
    tls_servers: list[str], ca: trustme.CA
) -> None:
    transport = hintpool.HTTPTransport(
        verify=client_context(ca),
        tls_session_cache=3,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    with httpx.Client(transport=transport) as client:
        for _ in range(2):
            for url in tls_servers:
                assert client.get(url + "/").status_code == 200
                cache = transport.pool.tls_session_cache
                assert cache is not None and len(cache) <= 3
        stats = transport.statistics()
    # 8 origins through a 3-entry cache, in a cycle: LRU never resumes.
    assert stats.tls_handshakes_full == 16
