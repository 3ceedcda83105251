#!/usr/bin/env python
"""Which idle connection should a limit close? Crawler-shaped workloads.

    python benchmarks/bench_eviction.py [--origins 200] [--workers 200]
        [--per-origin 20] [--strategies spread,deadline,newest]

Starts the benchmark server (Node.js when on PATH) on one loopback address
per origin (127.0.x.y) and runs each workload once per eviction strategy
(``hintpool._evict``) with httpx's default limits (100 connections, 20 kept
idle) and with the limits docs/configuration.md recommends for crawlers.
Prints connections opened, requests sent on a reused connection and
connections evicted. Counts, not times, are the result: they do not depend
on the machine.

Workloads (every one sends origins x per-origin GETs, with ``workers``
requests in flight):

* ``depth-first``: each worker crawls its share of the origins one after
  another, all GETs of one origin before the next (worker w takes origins
  w, w + workers, ...).
* ``round-robin``: one queue of URLs cycling through the origins (a
  breadth-first crawl); the workers take the next URL when done.
* ``hot-tail``: one queue; 4 of 5 URLs go to 5 hot origins, the rest spread
  over the others (an API client that also follows links).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Callable
from typing import Optional

from hintpool import AsyncConnectionPool
from hintpool._local.bench_server import start_bench_server
from hintpool._local.origins import loopback_hosts

Limits = tuple[Optional[int], Optional[int]]


def depth_first(urls: list[str], workers: int, per: int) -> list[list[str]]:
    return [
        [url for url in urls[w::workers] for _ in range(per)] for w in range(workers)
    ]


def round_robin(urls: list[str], per: int) -> list[str]:
    return [url for _ in range(per) for url in urls]


def hot_tail(urls: list[str], per: int) -> list[str]:
    rng = random.Random(17)  # the same URL list for every strategy
    hot, tail = urls[:5], urls[5:]
    return [
        rng.choice(hot) if rng.random() < 0.8 else rng.choice(tail)
        for _ in range(len(urls) * per)
    ]


async def run(
    make_queues: Callable[[], list[list[str]] | list[str]],
    workers: int,
    strategy: str,
    limits: Limits,
) -> tuple[int, int, int, int]:
    pool = AsyncConnectionPool(
        max_connections=limits[0], max_keepalive_connections=limits[1]
    )
    pool._state.eviction = strategy
    work = make_queues()
    shared = iter(work) if work and isinstance(work[0], str) else None

    async def worker(index: int) -> None:
        own = iter(work[index]) if shared is None else shared
        for url in own:
            await pool.request("GET", url)  # type: ignore[arg-type]

    async with pool:
        count = workers if shared is not None else len(work)
        await asyncio.gather(*(worker(i) for i in range(count)))
        stats = pool.statistics()
    return stats.requests, stats.connections_opened, stats.reused, stats.evicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=200)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--per-origin", type=int, default=20)
    parser.add_argument("--strategies", default="unproven,deadline,newest")
    args = parser.parse_args()
    n, w, per = args.origins, args.workers, args.per_origin
    limit_sets: dict[str, Limits] = {
        "default (100, 20)": (100, 20),
        f"max_connections={w}, max_keepalive={n}": (w, n),
        f"max_connections=100, max_keepalive={n}": (100, n),
        f"max_connections={w}, max_keepalive=20": (w, 20),
        f"max_connections={w + n}, max_keepalive={n}": (w + n, n),
    }
    with start_bench_server(loopback_hosts(n)) as server:
        urls = server.urls("/")
        workloads: dict[str, Callable[[], list[list[str]] | list[str]]] = {
            "depth-first": lambda: depth_first(urls, w, per),
            "round-robin": lambda: round_robin(urls, per),
            "hot-tail": lambda: hot_tail(urls, per),
        }
        # The first crawl of a process meets cold caches and a cold server:
        # its timing hiccups can start a cascade of evictions in a full pool.
        asyncio.run(run(workloads["round-robin"], w, "deadline", (w + n, n)))
        print(f"{n} origins, {w} workers, {n * per} GETs per run")
        print(f"{'workload':12} {'limits':38} {'strategy':9} opened reused evicted")
        for name, make in workloads.items():
            for label, limits in limit_sets.items():
                for strategy in args.strategies.split(","):
                    _, opened, reused, evicted = asyncio.run(
                        run(make, w, strategy, limits)
                    )
                    print(
                        f"{name:12} {label:38} {strategy:9} "
                        f"{opened:6} {reused:6} {evicted:7}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
