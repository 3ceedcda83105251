#!/usr/bin/env python
"""Sequential GETs on one keep-alive connection: FastConnection against
httpcore's HTTP11Connection and urllib3, the same server for all.

    python benchmarks/bench_socket_connection.py [--requests N] [--rounds R]
                                                 [--server auto|node|python]

Every contender sends the same ``GET /`` (answered ``200 hello``) over one
connection, reads the body to its end and closes the response, N times per
round. Rounds interleave the contenders so drift hits them alike; the report
gives the median round as requests per second and the calling thread's CPU
time per request. With ``node`` on PATH the server is Node.js ``http`` in its
own process (so the CPU column is the client's alone); otherwise it is
hintpool's in-process h11 server, much slower, which only ranks the clients.
Traffic stays on 127.0.0.1; every loop is bounded by N.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import httpcore

from hintpool._local.bench_server import start_bench_server
from hintpool._socket_connection import FastConnection

Run = Callable[[int], None]


def fast_connection(host: str, port: int) -> tuple[Run, Callable[[], None]]:
    conn = FastConnection.open(httpcore.Origin(b"http", host.encode(), port), timeout=5)
    req = httpcore.Request(
        b"GET", f"http://{host}:{port}/", headers=[(b"Host", host.encode())]
    )

    def run(n: int) -> None:
        for _ in range(n):
            response = conn.handle_request(req)
            for _chunk in response.stream:  # type: ignore[union-attr]
                pass
            response.stream.close()  # type: ignore[union-attr]
        assert conn.is_idle()

    return run, conn.close


def httpcore_http11(host: str, port: int) -> tuple[Run, Callable[[], None]]:
    stream = httpcore.SyncBackend().connect_tcp(host, port, timeout=5)
    conn = httpcore.HTTP11Connection(
        httpcore.Origin(b"http", host.encode(), port), stream
    )
    req = httpcore.Request(
        b"GET", f"http://{host}:{port}/", headers=[(b"Host", host.encode())]
    )

    def run(n: int) -> None:
        for _ in range(n):
            response = conn.handle_request(req)
            for _chunk in response.stream:  # type: ignore[union-attr]
                pass
            response.close()
        assert conn.is_idle()

    return run, conn.close


def urllib3_pool(host: str, port: int) -> tuple[Run, Callable[[], None]]:
    import urllib3

    pool = urllib3.HTTPConnectionPool(host, port, maxsize=1, retries=False)

    def run(n: int) -> None:
        for _ in range(n):
            response = pool.urlopen("GET", "/", preload_content=True)
            assert response.data == b"hello"
        assert pool.num_connections == 1

    return run, pool.close


def urllib3_connection(host: str, port: int) -> tuple[Run, Callable[[], None]]:
    import urllib3.connection

    conn = urllib3.connection.HTTPConnection(host, port, timeout=5)

    def run(n: int) -> None:
        for _ in range(n):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            response.release_conn()

    return run, conn.close


CONTENDERS: dict[str, Callable[[str, int], tuple[Run, Callable[[], None]]]] = {
    "hintpool FastConnection": fast_connection,
    "httpcore HTTP11Connection": httpcore_http11,
    "urllib3 HTTPConnectionPool.urlopen": urllib3_pool,
    "urllib3 HTTPConnection (http.client)": urllib3_connection,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", choices=["auto", "node", "python"], default="auto")
    args = parser.parse_args()

    with start_bench_server(["127.0.0.1"], args.server) as server:
        host, port = server.addresses[0]
        print(f"server: {server.kind}; {args.requests} requests x {args.rounds} rounds")
        wall: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        cpu: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for _ in range(args.rounds):
            for name, make in CONTENDERS.items():
                # A new connection per round: the server closes connections
                # idle for 5 s, which the other contenders' turns can exceed.
                run, close = make(host, port)
                try:
                    run(min(500, args.requests))  # warm up
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    run(args.requests)
                    wall[name].append(time.perf_counter() - started)
                    cpu[name].append(time.thread_time() - started_cpu)
                finally:
                    close()
    base = statistics.median(wall["hintpool FastConnection"])
    print(f"{'client':40} {'req/s':>9} {'µs/req':>8} {'CPU µs/req':>11} {'vs ours':>8}")
    for name in CONTENDERS:
        median = statistics.median(wall[name])
        per = median / args.requests * 1e6
        cpu_per = statistics.median(cpu[name]) / args.requests * 1e6
        rate = args.requests / median
        print(f"{name:40} {rate:9.0f} {per:8.1f} {cpu_per:11.1f} {median / base:7.2f}x")


if __name__ == "__main__":
    main()
