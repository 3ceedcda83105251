#!/usr/bin/env python
"""Memory per idle connection and per remembered origin (tracemalloc).

    python scripts/memory_per.py                    # 500 connections, 2,000 origins
    python scripts/memory_per.py --connections 1000 --origins 5000
    python scripts/memory_per.py --no-record        # don't update the figures

Not part of the test run. A server subprocess (asyncio, minimal HTTP/1.1,
``Keep-Alive: timeout=120``, never closes an idle connection) listens on
``--origins`` loopback addresses 127.0.x.y. Measured in this process with
tracemalloc (Python objects only; the kernel's socket buffers are not in
it), after a warm-up request so that imports and caches are not counted:

* per idle connection: ``--connections`` requests at once to one origin,
  so the pool ends with that many idle connections; the heap growth over
  them, for each wire (asyncio fast wire, httpcore's wire, the sync pool's
  blocking sockets);
* per remembered origin: one request to each of ``--origins`` origins with
  ``max_keepalive_connections=0``, so every connection is closed and only
  what the pool remembers about each origin (statistics, last hint) stays.

The figures go to ``scripts/reliability_figures.json`` for
``scripts/reliability_table.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import hintpool  # noqa: E402

SERVER = r"""
import asyncio, json, resource, sys

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
hosts = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(int(sys.argv[1]))]
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=120\r\n\r\nhello"
)

class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, _, self.buf = self.buf.partition(b"\r\n\r\n")
            # Answer a little later, so that concurrent requests overlap.
            asyncio.get_running_loop().call_later(
                0.05, self.transport.write, RESPONSE
            )

async def main():
    loop = asyncio.get_running_loop()
    ports = []
    for host in hosts:
        server = await loop.create_server(Conn, host, 0, backlog=2048)
        ports.append(server.sockets[0].getsockname()[1])
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def idle_async(url: str, count: int, wire: str) -> float:
    pool = hintpool.AsyncConnectionPool(
        max_connections=count + 1, max_keepalive_connections=count + 1, wire=wire
    )
    async with pool:
        await pool.request("GET", url)
        before = heap()
        await asyncio.gather(*(pool.request("GET", url) for _ in range(count)))
        idle = pool.statistics().idle
        grown = heap() - before
    return grown / max(1, idle - 1)


def idle_sync(url: str, count: int) -> float:
    pool = hintpool.ConnectionPool(
        max_connections=count + 1, max_keepalive_connections=count + 1
    )
    with pool:
        pool.request("GET", url)
        before = heap()
        with ThreadPoolExecutor(count) as threads:
            list(threads.map(lambda _: pool.request("GET", url), range(count)))
        idle = pool.statistics().idle
        grown = heap() - before
    return grown / max(1, idle - 1)


def per_origin(urls: list[str]) -> float:
    pool = hintpool.ConnectionPool(
        max_keepalive_connections=0, max_origins=len(urls) + 1
    )
    with pool:
        pool.request("GET", urls[0])
        before = heap()
        for url in urls[1:]:
            pool.request("GET", url)
        remembered = len(pool.statistics().origins)
        grown = heap() - before
    return grown / max(1, remembered - 1)


def measure(urls: list[str], connections: int) -> dict[str, Any]:
    tracemalloc.start()
    rows: dict[str, Callable[[], float]] = {
        "asyncio fast wire": lambda: asyncio.run(
            idle_async(urls[0], connections, "auto")
        ),
        "asyncio httpcore wire": lambda: asyncio.run(
            idle_async(urls[0], connections, "httpcore")
        ),
        "sync": lambda: idle_sync(urls[0], connections),
    }
    per_connection = {}
    for name, run in rows.items():
        per_connection[name] = round(run())
        print(f"idle connection, {name}: {per_connection[name]:,} bytes", flush=True)
    origin = round(per_origin(urls))
    print(f"remembered origin: {origin:,} bytes", flush=True)
    tracemalloc.stop()
    return {"per_idle_connection": per_connection, "per_origin": origin}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--origins", type=int, default=2_000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.origins)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        hosts = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(args.origins)]
        urls = [f"http://{h}:{p}/" for h, p in zip(hosts, ports)]
        figures = measure(urls, args.connections)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    if not args.no_record:
        from fuzz_hints import record  # the same figures file

        record(
            "memory",
            {
                **figures,
                "connections": args.connections,
                "origins": args.origins,
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d"),
            },
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
