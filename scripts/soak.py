#!/usr/bin/env python
"""Soak the pool: a million requests across 10,000 origins, memory and FDs.

    python scripts/soak.py                                  # 1M requests, 10k origins
    python scripts/soak.py --requests 100000 --origins 1000 --seconds 120
    python scripts/soak.py --mode sync --threads 16         # the sync pool
    python scripts/soak.py --no-record                      # don't update figures

Not part of the test run. A server subprocess (asyncio, minimal HTTP/1.1)
listens on ``--origins`` loopback origins: addresses 127.0.x.y (Linux routes
all of 127.0.0.0/8 to loopback), each with its own port. The origins behave
differently by index: Apache-style ``timeout=5, max={left}`` (max 100),
no hint at all, ``timeout=2``, and ``Connection: close`` on every 10th
response; the server really closes idle connections after their timeout
(5 s when it announced none). Requests pick origins skewed toward a hot few
(most traffic to 1% of origins, the rest spread over all), so the pool
reuses, evicts, expires and forgets origins all the time.

The client is one hintpool pool (async on asyncio or trio with
``--concurrency`` tasks, or sync with ``--threads``), ``max_connections``
200, ``max_keepalive_connections`` 100, ``max_origins`` 1,000. Every
``--interval`` seconds it prints this process's RSS and open FDs and the
pool's statistics; memory and FDs must be flat after warm-up. Stops at
``--requests`` or ``--seconds``, whichever comes first; exits 1 on a
request error rate above 0.1% or a leak (open FDs above the pool's limit
plus a margin). The figures go to ``scripts/reliability_figures.json`` for
``scripts/reliability_table.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import anyio  # noqa: E402
import httpcore  # noqa: E402

import hintpool  # noqa: E402

FIGURES = ROOT / "scripts" / "reliability_figures.json"
MAX_CONNECTIONS = 200
MAX_KEEPALIVE = 100
MAX_ORIGINS = 1_000

SERVER = r"""
import asyncio, json, resource, sys

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
count = int(sys.argv[1])
hosts = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]

def response(kind, left):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
    close = False
    if kind == 0:
        head += b"Keep-Alive: timeout=5, max=%d\r\n" % left
        close = left == 0
    elif kind == 2:
        head += b"Keep-Alive: timeout=2\r\n"
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\nhello", close

class Conn(asyncio.Protocol):
    def __init__(self, kind):
        self.kind, self.served, self.buf, self.timer = kind, 0, b"", None
        self.idle = {0: 5.0, 1: 5.0, 2: 2.0, 3: 5.0}[kind]
    def connection_made(self, transport):
        self.transport = transport
        self.arm()
    def arm(self):
        loop = asyncio.get_running_loop()
        if self.timer:
            self.timer.cancel()
        self.timer = loop.call_later(self.idle, self.transport.close)
    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.served += 1
            left = max(0, 100 - self.served)
            body, close = response(self.kind, left)
            if self.kind == 3 and self.served % 10 == 0:
                body = body.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                close = True
            self.transport.write(body)
            if close:
                self.transport.close()
                return
        self.arm()
    def connection_lost(self, exc):
        if self.timer:
            self.timer.cancel()

async def main():
    loop = asyncio.get_running_loop()
    ports = []
    for i, host in enumerate(hosts):
        server = await loop.create_server(
            lambda kind=i % 4: Conn(kind), host, 0, backlog=1024
        )
        ports.append(server.sockets[0].getsockname()[1])
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until our parent goes

asyncio.run(main())
"""


def loopback_hosts(count: int) -> list[str]:
    # The same formula is in SERVER (a list of 10,000 is too long for argv).
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - not Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Soak:
    def __init__(self, args: argparse.Namespace, urls: list[str]) -> None:
        self.args = args
        self.urls = urls
        self.hot = urls[: max(1, len(urls) // 100)]
        self.sent = 0
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.lock = threading.Lock()
        self.deadline = time.monotonic() + args.seconds
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def pick(self, rng: random.Random) -> str:
        return rng.choice(self.hot) if rng.random() < 0.8 else rng.choice(self.urls)

    def take(self) -> bool:
        with self.lock:
            if self.sent >= self.args.requests or time.monotonic() > self.deadline:
                return False
            self.sent += 1
            return True

    def failed(self, exc: Exception) -> None:
        with self.lock:
            self.errors += 1
            name = type(exc).__name__
            self.error_kinds[name] = self.error_kinds.get(name, 0) + 1

    def sample(self, pool: Any) -> None:
        stats = pool.statistics()
        elapsed = time.monotonic() - self.started
        row = {
            "seconds": round(elapsed, 1),
            "requests": self.sent,
            "errors": self.errors,
            "rss_mib": round(rss_mib(), 1),
            "cpu_seconds": round(cpu_seconds(), 2),
            "fds": open_fds(),
            # The machine's 1-minute load: CPU per request depends on it.
            "load": round(os.getloadavg()[0], 2),
            "open": stats.open,
            "idle": stats.idle,
            "origins_remembered": len(stats.origins),
            "connections_opened": stats.connections_opened,
            "reused": stats.reused,
            "retired_by_max": stats.retired_by_max,
            "expired": stats.expired,
            "evicted": stats.evicted,
            "closed_by_server": stats.closed_by_server,
            "retries": stats.retries,
        }
        self.samples.append(row)
        rate = self.sent / elapsed if elapsed else 0.0
        print(
            f"{row['seconds']:>7.1f}s {self.sent:>9,} req ({rate:,.0f}/s) "
            f"err={self.errors} rss={row['rss_mib']:.1f}MiB fds={row['fds']} "
            f"open={stats.open} idle={stats.idle} origins={len(stats.origins)} "
            f"opened={stats.connections_opened:,} reused={stats.reused:,} "
            f"expired={stats.expired:,} evicted={stats.evicted:,} "
            f"closed_by_server={stats.closed_by_server:,} retries={stats.retries:,}",
            flush=True,
        )


def pool_kwargs() -> dict[str, Any]:
    return {
        "max_connections": MAX_CONNECTIONS,
        "max_keepalive_connections": MAX_KEEPALIVE,
        "max_origins": MAX_ORIGINS,
    }


async def run_async(soak: Soak) -> Any:
    pool = hintpool.AsyncConnectionPool(**pool_kwargs())
    timeout = {"connect": 10, "read": 10, "write": 10, "pool": 30}

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while soak.take():
            try:
                response = await pool.request(
                    "GET", soak.pick(rng), extensions={"timeout": timeout}
                )
                assert response.content == b"hello"
            except httpcore.TimeoutException as exc:
                soak.failed(exc)
            except hintpool.HintpoolError as exc:
                soak.failed(exc)

    async def sampler() -> None:
        while True:
            await anyio.sleep(soak.args.interval)
            soak.sample(pool)

    async with pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sampler)
            async with anyio.create_task_group() as workers:
                for i in range(soak.args.concurrency):
                    workers.start_soon(worker, i)
            tg.cancel_scope.cancel()
        soak.sample(pool)
    return pool


def run_sync(soak: Soak) -> Any:
    pool = hintpool.ConnectionPool(**pool_kwargs())
    timeout = {"connect": 10, "read": 10, "write": 10, "pool": 30}
    done = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while soak.take():
            try:
                response = pool.request(
                    "GET", soak.pick(rng), extensions={"timeout": timeout}
                )
                assert response.content == b"hello"
            except hintpool.HintpoolError as exc:
                soak.failed(exc)

    def sampler() -> None:
        while not done.wait(soak.args.interval):
            soak.sample(pool)

    with pool:
        threads = [
            threading.Thread(target=worker, args=(i,), daemon=True)
            for i in range(soak.args.threads)
        ]
        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(soak.args.seconds + 60)
        done.set()
        watcher.join(soak.args.interval + 5)
        soak.sample(pool)
    return pool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--origins", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=1_800.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument(
        "--mode", choices=["asyncio", "trio", "sync"], default="asyncio"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    hosts = loopback_hosts(args.origins)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(len(hosts))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        urls = [f"http://{h}:{p}/" for h, p in zip(hosts, ports)]
        print(
            f"{len(urls):,} origins on {hosts[0]} .. {hosts[-1]}; "
            f"mode={args.mode}; up to {args.requests:,} requests "
            f"or {args.seconds:.0f} s",
            flush=True,
        )
        soak = Soak(args, urls)
        baseline_fds = open_fds()
        if args.mode == "sync":
            run_sync(soak)
        else:
            anyio.run(run_async, soak, backend=args.mode)
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
    return report(args, soak, baseline_fds)


def report(args: argparse.Namespace, soak: Soak, baseline_fds: int) -> int:
    samples = soak.samples
    elapsed = samples[-1]["seconds"]
    warm = samples[min(len(samples) - 1, max(1, len(samples) // 5))]
    peak_rss = max(s["rss_mib"] for s in samples[samples.index(warm) :])
    peak_fds = max(s["fds"] for s in samples)
    leak = peak_fds > baseline_fds + MAX_CONNECTIONS + 16
    error_rate = soak.errors / max(1, soak.sent)
    print(
        f"\n{soak.sent:,} requests to {len(soak.urls):,} origins in {elapsed:.0f} s "
        f"({soak.sent / max(elapsed, 1e-9):,.0f}/s), errors {soak.errors} "
        f"{soak.error_kinds}; RSS after warm-up {warm['rss_mib']} MiB -> "
        f"peak {peak_rss} MiB -> end {samples[-1]['rss_mib']} MiB; FDs "
        f"{baseline_fds} at start, peak {peak_fds}, end {samples[-1]['fds']}"
    )
    if not args.no_record:
        from fuzz_hints import record  # the same figures file

        record(
            "soak",
            {
                "mode": args.mode,
                "requests": soak.sent,
                "origins": len(soak.urls),
                "seconds": elapsed,
                "requests_per_second": round(soak.sent / max(elapsed, 1e-9)),
                "errors": soak.errors,
                "error_kinds": soak.error_kinds,
                "fds_at_start": baseline_fds,
                "samples": samples,
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d"),
            },
        )
    if leak:
        print("FD count above the pool's limit: a leak?")
    return 1 if leak or error_rate > 0.001 else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
