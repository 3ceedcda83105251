#!/usr/bin/env python
"""Reconnect cost with and without TLS session resumption, in one run.

    python benchmarks/bench_tls.py [--connections N] [--latency-connections M]
                                   [--rtt SECONDS] [--key rsa|ecdsa]

Starts hintpool's local TLS server on 127.0.0.1 (trustme certificate) and a
delay proxy in front of it, then opens new connections with the session
cache on and off, for TLS 1.2 and 1.3, with the sync pool and the asyncio
pool (``max_keepalive_connections=0``: every request needs a new
connection). For each case it prints:

* handshake: client wall time of the TLS handshake per connection, direct
  to the server (from ``statistics().tls_handshake_seconds``);
* client CPU: per connection, direct (``time.thread_time()`` of the
  calling thread: the server runs in another thread of this process);
* +server CPU: ``time.process_time()``, client and server together (what
  resumption saves the server shows here: no certificate signature);
* first request: wall time of connect + handshake + request + response on a
  new connection through the proxy (default RTT 25 ms), median.

Traffic stays on the loopback interface; every loop is bounded.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import trustme

import hintpool
from hintpool._local import DelayProxy, LocalServer, ServerConfig


@dataclass
class Result:
    handshake_us: float
    cpu_us: float
    process_cpu_us: float
    first_request_ms: float
    resumed: int
    connections: int


def server_context(cert: trustme.LeafCert, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def run_sync(ctx: ssl.SSLContext, url: str, n: int, cache: bool) -> Result:
    with hintpool.ConnectionPool(
        ssl_context=ctx, max_keepalive_connections=0, tls_session_cache=cache
    ) as pool:
        pool.request("GET", url)  # the first connection: always a full handshake
        before = pool.statistics()
        latencies = []
        cpu_start, both_start = time.thread_time(), time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            pool.request("GET", url)
            latencies.append(time.perf_counter() - start)
        cpu = time.thread_time() - cpu_start
        both = time.process_time() - both_start
        after = pool.statistics()
    return _result(before, after, latencies, (cpu, both), n)


def run_asyncio(ctx: ssl.SSLContext, url: str, n: int, cache: bool) -> Result:
    async def main() -> Result:
        async with hintpool.AsyncConnectionPool(
            ssl_context=ctx, max_keepalive_connections=0, tls_session_cache=cache
        ) as pool:
            await pool.request("GET", url)
            before = pool.statistics()
            latencies = []
            cpu_start, both_start = time.thread_time(), time.process_time()
            for _ in range(n):
                start = time.perf_counter()
                await pool.request("GET", url)
                latencies.append(time.perf_counter() - start)
            cpu = time.thread_time() - cpu_start
            both = time.process_time() - both_start
            after = pool.statistics()
        return _result(before, after, latencies, (cpu, both), n)

    result: Result = anyio.run(main, backend="asyncio")
    return result


def _result(
    before: hintpool.PoolStatistics,
    after: hintpool.PoolStatistics,
    latencies: list[float],
    cpu: tuple[float, float],
    n: int,
) -> Result:
    handshake = after.tls_handshake_seconds - before.tls_handshake_seconds
    return Result(
        handshake_us=handshake / n * 1e6,
        cpu_us=cpu[0] / n * 1e6,
        process_cpu_us=cpu[1] / n * 1e6,
        first_request_ms=statistics.median(latencies) * 1e3,
        resumed=after.tls_handshakes_resumed - before.tls_handshakes_resumed,
        connections=n,
    )


Runner = Callable[[ssl.SSLContext, str, int, bool], Result]


def measure(
    runner: Runner,
    client_ctx: ssl.SSLContext,
    direct_url: str,
    proxied_url: str,
    args: argparse.Namespace,
    cache: bool,
) -> Result:
    direct = runner(client_ctx, direct_url, args.connections, cache)
    proxied = runner(client_ctx, proxied_url, args.latency_connections, cache)
    direct.first_request_ms = proxied.first_request_ms
    return direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--latency-connections", type=int, default=30)
    parser.add_argument("--rtt", type=float, default=0.025)
    parser.add_argument("--key", choices=["rsa", "ecdsa"], default="rsa")
    args = parser.parse_args()
    key_type = trustme.KeyType.RSA if args.key == "rsa" else trustme.KeyType.ECDSA
    ca = trustme.CA(key_type=key_type)
    cert = ca.issue_cert("127.0.0.1", "localhost", key_type=key_type)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    runners: list[tuple[str, Runner]] = [("sync", run_sync), ("asyncio", run_asyncio)]
    print(
        f"{args.key.upper()} key, {args.connections} direct connections, "
        f"{args.latency_connections} through a {args.rtt * 1e3:.0f} ms RTT proxy\n"
    )
    header = (
        f"{'pool':8} {'TLS':8} {'cache':6} {'resumed':>9} {'handshake µs':>13} "
        f"{'client CPU µs':>14} {'+server CPU µs':>15} {'1st request ms':>15}"
    )
    print(header)
    print("-" * len(header))
    config = ServerConfig(keep_alive="timeout=5")
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with LocalServer("127.0.0.1", config, server_context(cert, version)) as srv:
            proxy = DelayProxy("127.0.0.1", srv.port, delay=args.rtt / 2)
            with proxy:
                direct_url = f"https://127.0.0.1:{srv.port}/"
                proxied_url = f"https://127.0.0.1:{proxy.port}/"
                for name, runner in runners:
                    for cache in (False, True):
                        r = measure(
                            runner, client_ctx, direct_url, proxied_url, args, cache
                        )
                        print(
                            f"{name:8} {version.name:8} {'on' if cache else 'off':6} "
                            f"{r.resumed:>4}/{r.connections:<4} "
                            f"{r.handshake_us:>13.0f} {r.cpu_us:>14.0f} "
                            f"{r.process_cpu_us:>15.0f} "
                            f"{r.first_request_ms:>15.1f}"
                        )


if __name__ == "__main__":
    main()
