#!/usr/bin/env python
"""Requests per second: httpx's default transport vs hintpool's, one run.

    python benchmarks/bench_core.py [--requests N] [--rounds R] [--origins K]

Starts a local Node.js ``http`` server (keep-alive, ``Keep-Alive: timeout=5``)
on 127.0.0.1 and measures, alternating the contenders round by round:

* ``httpx.AsyncClient`` at 1, 10 and 100 concurrent requests,
* ``httpx.Client`` sequentially,
* with ``--origins K`` (default 1000): hintpool with K idle connections to K
  origins (127.0.0.x addresses, one server listening on 0.0.0.0... no: on
  each 127.0.1.x address) against the single-origin case.

Prints the median req/s of the rounds and the ratio hintpool / httpx.
Traffic stays on the loopback interface; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

import hintpool

NODE_SERVER = r"""
const http = require('http');
const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end('hello');
});
server.keepAliveTimeout = 5000;
server.listen(0, '0.0.0.0', () => {
  console.log(server.address().port);
});
"""


def start_node() -> tuple[subprocess.Popen[str], int]:
    node = shutil.which("node")
    if node is None:
        sys.exit("bench_core: Node.js (`node`) is needed for the benchmark server")
    proc = subprocess.Popen(
        [node, "-e", NODE_SERVER], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


async def run_async(
    client: httpx.AsyncClient, urls: list[str], total: int, concurrency: int
) -> float:
    per_task = total // concurrency

    async def worker(offset: int) -> None:
        for i in range(per_task):
            r = await client.get(urls[(offset + i) % len(urls)])
            assert r.status_code == 200

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return per_task * concurrency / (time.perf_counter() - start)


def run_sync(client: httpx.Client, url: str, total: int) -> float:
    start = time.perf_counter()
    for _ in range(total):
        assert client.get(url).status_code == 200
    return total / (time.perf_counter() - start)


def median_table(results: dict[str, dict[str, list[float]]]) -> None:
    print(f"{'workload':<28}{'httpx req/s':>14}{'hintpool req/s':>16}{'ratio':>8}")
    for workload, by_name in results.items():
        base = statistics.median(by_name["httpx"])
        ours = statistics.median(by_name["hintpool"])
        print(f"{workload:<28}{base:>14,.0f}{ours:>16,.0f}{ours / base:>7.2f}x")


async def async_rounds(
    port: int, args: argparse.Namespace, results: dict[str, dict[str, list[float]]]
) -> None:
    url = f"http://127.0.0.1:{port}/"
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    factories: dict[str, Callable[[], httpx.AsyncClient]] = {
        "httpx": lambda: httpx.AsyncClient(),
        "hintpool": lambda: httpx.AsyncClient(transport=hintpool.AsyncHTTPTransport()),
    }
    for concurrency in (1, 10, 100):
        key = f"async, {concurrency} concurrent"
        results[key] = {"httpx": [], "hintpool": []}
        for _ in range(args.rounds):
            for name, make in factories.items():
                async with make() as client:
                    await run_async(client, [url], concurrency * 5, concurrency)
                    rate = await run_async(client, [url], args.requests, concurrency)
                results[key][name].append(rate)
    if args.origins:
        # K origins: 127.0.1.x addresses (loopback), one connection each idle
        # in the pool, requests spread over them.
        urls = [
            f"http://127.0.{1 + i // 250}.{1 + i % 250}:{port}/"
            for i in range(args.origins)
        ]
        key = f"async, {args.origins} origins, C=10"
        results[key] = {"httpx": [], "hintpool": []}
        key1 = f"async, 1 origin + {args.origins} idle, C=10"
        results[key1] = {"httpx": [], "hintpool": []}
        many: dict[str, Callable[[], httpx.AsyncClient]] = {
            "httpx": lambda: httpx.AsyncClient(limits=limits_many),
            "hintpool": lambda: httpx.AsyncClient(
                transport=hintpool.AsyncHTTPTransport(limits=limits_many)
            ),
        }
        limits_many = httpx.Limits(
            max_connections=args.origins + 10,
            max_keepalive_connections=args.origins + 10,
        )
        del limits
        for _ in range(args.rounds):
            for name, make in many.items():
                async with make() as client:
                    await run_async(client, urls, len(urls), 10)  # warm: 1 each
                    rate = await run_async(client, urls, args.requests, 10)
                    results[key][name].append(rate)
                    rate1 = await run_async(client, [url], args.requests, 10)
                    results[key1][name].append(rate1)


def sync_rounds(
    port: int, args: argparse.Namespace, results: dict[str, dict[str, list[float]]]
) -> None:
    url = f"http://127.0.0.1:{port}/"
    key = "sync, sequential"
    results[key] = {"httpx": [], "hintpool": []}
    for _ in range(args.rounds):
        with httpx.Client() as client:
            run_sync(client, url, 20)
            results[key]["httpx"].append(run_sync(client, url, args.requests))
        with httpx.Client(transport=hintpool.HTTPTransport()) as client:
            run_sync(client, url, 20)
            results[key]["hintpool"].append(run_sync(client, url, args.requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--origins", type=int, default=1000)
    args = parser.parse_args()
    proc, port = start_node()
    try:
        results: dict[str, dict[str, list[float]]] = {}
        asyncio.run(async_rounds(port, args, results))
        sync_rounds(port, args, results)
    finally:
        proc.terminate()
        proc.wait(5)
    print(
        f"Python {sys.version.split()[0]}, httpx {httpx.__version__}, "
        f"hintpool {hintpool.__version__}; {args.requests} requests x "
        f"{args.rounds} rounds, median"
    )
    median_table(results)


_Awaitable = Awaitable  # re-exported for type checkers of older Pythons

if __name__ == "__main__":
    main()
