#!/usr/bin/env python
"""CPU time per request of ``AsyncConnectionPool.request()`` on asyncio, and
where it goes: the bench's async workloads for hintpool alone, quicker to
repeat than ``hintpool bench``, with an optional profile.

    python benchmarks/profile_pool_asyncio.py --origins 1000 --concurrency 10
    python benchmarks/profile_pool_asyncio.py --concurrency 100 --profile
    python benchmarks/profile_pool_asyncio.py --concurrency 10 --aiohttp

Like the bench: the benchmark server (Node.js when ``node`` is on PATH), a
fresh pool on a fresh loop per round, warmed with one request per origin plus
20, then ``--requests`` GETs by ``--concurrency`` workers spread round-robin
over the origins. Prints the client's CPU µs per request, user and system
(the server is another process) and req/s, each the median of the rounds;
``--profile`` prints cProfile's top functions of the last round. Not a test:
figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import resource
import statistics
import time
from collections.abc import Awaitable
from typing import Any, Callable

import hintpool
from hintpool._local.bench_server import start_bench_server
from hintpool._local.origins import loopback_hosts

Get = Callable[[str], Awaitable[None]]


async def _drive(get: Get, urls: list[str], total: int, concurrency: int) -> None:
    per_worker = max(1, total // concurrency)

    async def worker(offset: int) -> None:
        for i in range(per_worker):
            await get(urls[(offset + i * concurrency) % len(urls)])

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


async def _hintpool_round(
    urls: list[str], args: argparse.Namespace, profiler: cProfile.Profile | None
) -> tuple[float, float, float]:
    limit = len(urls) + args.concurrency
    pool = hintpool.AsyncConnectionPool(
        max_connections=limit, max_keepalive_connections=limit
    )
    async with pool:

        async def get(url: str) -> None:
            response = await pool.request("GET", url)
            assert response.status == 200

        return await _timed(get, urls, args, profiler)


async def _aiohttp_round(
    urls: list[str], args: argparse.Namespace, profiler: cProfile.Profile | None
) -> tuple[float, float, float]:
    import aiohttp

    limit = len(urls) + args.concurrency
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> None:
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200

        return await _timed(get, urls, args, profiler)


async def _timed(
    get: Get,
    urls: list[str],
    args: argparse.Namespace,
    profiler: cProfile.Profile | None,
) -> tuple[float, float, float]:
    await _drive(get, urls, len(urls) + 20, args.concurrency)
    if profiler is not None:
        profiler.enable()
    GC_TIMES.clear()
    gc.callbacks.append(_gc_timer)
    before, start = _rusage(), time.perf_counter()
    try:
        await _drive(get, urls, args.requests, args.concurrency)
    finally:
        gc.callbacks.remove(_gc_timer)
    elapsed, after = time.perf_counter() - start, _rusage()
    GC_PER_ROUND.append(
        {g: (len(t), 1e6 * sum(t) / args.requests) for g, t in GC_TIMES.items()}
    )
    if profiler is not None:
        profiler.disable()
    n = args.requests
    user = 1e6 * (after.ru_utime - before.ru_utime) / n
    system = 1e6 * (after.ru_stime - before.ru_stime) / n
    return n / elapsed, user, system


#: Garbage collections of the timed phase: generation -> seconds of each.
GC_TIMES: dict[int, list[float]] = {}
GC_PER_ROUND: list[dict[int, tuple[int, float]]] = []
_gc_started = [0.0]


def _gc_timer(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        elapsed = time.perf_counter() - _gc_started[0]
        GC_TIMES.setdefault(info["generation"], []).append(elapsed)


def _rusage() -> resource.struct_rusage:
    return resource.getrusage(resource.RUSAGE_SELF)


def _loop_factory(uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop]:
    if uvloop:
        import uvloop as uv

        return uv.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--origins", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--aiohttp", action="store_true", help="also aiohttp")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 2 * args.origins + 1000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    clients: dict[str, Any] = {"hintpool": _hintpool_round}
    if args.aiohttp:
        clients["aiohttp"] = _aiohttp_round
    results: dict[str, list[tuple[float, float, float]]] = {
        name: [] for name in clients
    }
    profiler = cProfile.Profile() if args.profile else None
    with start_bench_server(loopback_hosts(args.origins)) as server:
        urls = server.urls()
        for r in range(args.rounds):
            for name, client in clients.items():
                last = r == args.rounds - 1 and name == "hintpool"
                loop = _loop_factory(args.uvloop)()
                try:
                    coro = client(urls, args, profiler if last else None)
                    results[name].append(loop.run_until_complete(coro))
                finally:
                    loop.close()
    print(f"server: {server.kind}; origins={args.origins} C={args.concurrency}")
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        user = statistics.median(r[1] for r in runs)
        system = statistics.median(r[2] for r in runs)
        print(
            f"{name:10} {rate:9,.0f} req/s  CPU us/req: {user + system:6.1f}"
            f" (user {user:5.1f}, system {system:5.1f})"
        )
    for name, index in zip(clients, range(len(clients))):
        rounds = GC_PER_ROUND[index :: len(clients)]
        print(f"{name:10} garbage collections per round (count, wall us/req):")
        for gen in range(3):
            counts = [r.get(gen, (0, 0.0)) for r in rounds]
            row = "  ".join(f"{c:3d} {t:6.1f}" for c, t in counts)
            print(f"    gen {gen}: {row}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
