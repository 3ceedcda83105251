#!/usr/bin/env python
"""Sequential GETs on one connection: AsyncFastConnection vs httpcore's
AsyncHTTP11Connection, against the benchmark server (Node.js when ``node``
is on PATH, else the in-process h11 server).

    python benchmarks/bench_wire_asyncio.py [--requests N] [--rounds R] [--uvloop]

Each round sends N requests one after another on one connection (open
excluded), reading every body and closing every response, for each client;
prints requests/s (wall clock) and the client's CPU time per request (the
server is another process, so this is ours alone and less sensitive to a
busy machine), each the median of the rounds. Not a test: figures depend
on the machine and its load.
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

Client = Callable[[str, int, int], Awaitable[tuple[float, float]]]


def make_request(url: str, host: bytes) -> httpcore.Request:
    return httpcore.Request(
        "GET", url, headers=[(b"Host", host)], extensions={"timeout": {"read": 5.0}}
    )


async def fast(host: str, port: int, n: int) -> tuple[float, float]:
    origin = httpcore.Origin(b"http", host.encode(), port)
    conn = await AsyncFastConnection.open(origin, timeout=5)
    url, hostport = f"http://{host}:{port}/", f"{host}:{port}".encode()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        response = await conn.handle_async_request(make_request(url, hostport))
        await response.aread()
        await response.aclose()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert conn.is_idle()
    await conn.aclose()
    return n / elapsed, cpu / n


async def httpcore_h11(host: str, port: int, n: int) -> tuple[float, float]:
    origin = httpcore.Origin(b"http", host.encode(), port)
    stream = await httpcore.AnyIOBackend().connect_tcp(host, port, timeout=5)
    conn = httpcore.AsyncHTTP11Connection(origin, stream)
    url, hostport = f"http://{host}:{port}/", f"{host}:{port}".encode()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        response = await conn.handle_async_request(make_request(url, hostport))
        await response.aread()
        await response.aclose()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await conn.aclose()
    return n / elapsed, cpu / n


def run(
    client: Client, host: str, port: int, n: int, use_uvloop: bool
) -> tuple[float, float]:
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
        results: dict[str, tuple[float, float]] = {}
        run(fast, host, port, 200, False)  # warm up the server
        for name, client, use_uvloop in cases:
            rounds = [
                run(client, host, port, args.requests, use_uvloop)
                for _ in range(args.rounds)
            ]
            rate = statistics.median(r for r, _ in rounds)
            cpu = statistics.median(c for _, c in rounds)
            results[name] = (rate, cpu)
            shown = ", ".join(f"{r:,.0f}" for r, _ in rounds)
            print(
                f"{name:32} {rate:8,.0f} req/s {cpu * 1e6:6.1f} us CPU/req"
                f"  (rounds: {shown})"
            )
        base_rate, base_cpu = results["httpcore AsyncHTTP11Connection"]
        for name, (rate, cpu) in results.items():
            print(
                f"{name:32} {rate / base_rate:5.2f}x httpcore's req/s, "
                f"{cpu / base_cpu:5.2f}x its CPU per request"
            )


if __name__ == "__main__":
    main()
