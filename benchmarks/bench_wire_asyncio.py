#!/usr/bin/env python
"""Sequential GETs on one connection: AsyncFastConnection vs httpcore's
AsyncHTTP11Connection, against the benchmark server (Node.js when ``node``
is on PATH, else the in-process h11 server).

    python benchmarks/bench_wire_asyncio.py [--requests N] [--rounds R] [--uvloop]

Each round sends N requests one after another on one connection (open
excluded), reading every body and closing every response, for each client;
prints requests/s per round and the median. Not a test: figures depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable
from typing import Callable

import httpcore

from hintpool._asyncio_connection import AsyncFastConnection
from hintpool._local.bench_server import start_bench_server

Client = Callable[[str, int, int], Awaitable[float]]


def make_request(url: str, host: bytes) -> httpcore.Request:
    return httpcore.Request(
        "GET", url, headers=[(b"Host", host)], extensions={"timeout": {"read": 5.0}}
    )


async def fast(host: str, port: int, n: int) -> float:
    origin = httpcore.Origin(b"http", host.encode(), port)
    conn = await AsyncFastConnection.open(origin, timeout=5)
    url, hostport = f"http://{host}:{port}/", f"{host}:{port}".encode()
    start = time.perf_counter()
    for _ in range(n):
        response = await conn.handle_async_request(make_request(url, hostport))
        await response.aread()
        await response.aclose()
    elapsed = time.perf_counter() - start
    assert conn.is_idle()
    await conn.aclose()
    return n / elapsed


async def httpcore_h11(host: str, port: int, n: int) -> float:
    origin = httpcore.Origin(b"http", host.encode(), port)
    stream = await httpcore.AnyIOBackend().connect_tcp(host, port, timeout=5)
    conn = httpcore.AsyncHTTP11Connection(origin, stream)
    url, hostport = f"http://{host}:{port}/", f"{host}:{port}".encode()
    start = time.perf_counter()
    for _ in range(n):
        response = await conn.handle_async_request(make_request(url, hostport))
        await response.aread()
        await response.aclose()
    elapsed = time.perf_counter() - start
    await conn.aclose()
    return n / elapsed


def run(client: Client, host: str, port: int, n: int, use_uvloop: bool) -> float:
    if use_uvloop:
        import uvloop

        return uvloop.run(client(host, port, n))
    return asyncio.run(client(host, port, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="also on uvloop")
    parser.add_argument("--server", choices=["auto", "node", "python"], default="auto")
    args = parser.parse_args()
    with start_bench_server(["127.0.0.1"], args.server) as server:
        host, port = server.addresses[0]
        print(f"server: {server.kind}; {args.requests} sequential GETs per round")
        cases: list[tuple[str, Client, bool]] = [
            ("httpcore AsyncHTTP11Connection", httpcore_h11, False),
            ("AsyncFastConnection", fast, False),
        ]
        if args.uvloop:
            cases.append(("AsyncFastConnection (uvloop)", fast, True))
        results: dict[str, float] = {}
        run(fast, host, port, 200, False)  # warm up the server
        for name, client, use_uvloop in cases:
            rates = [
                run(client, host, port, args.requests, use_uvloop)
                for _ in range(args.rounds)
            ]
            results[name] = statistics.median(rates)
            shown = ", ".join(f"{r:,.0f}" for r in rates)
            print(f"{name:34} {results[name]:9,.0f} req/s  (rounds: {shown})")
        base = results["httpcore AsyncHTTP11Connection"]
        for name, rate in results.items():
            print(f"{name:34} {rate / base:5.2f}x httpcore")


if __name__ == "__main__":
    main()
