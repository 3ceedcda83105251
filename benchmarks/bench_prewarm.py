#!/usr/bin/env python
"""Requests that wait for a handshake, with and without pre-warming.

    python benchmarks/bench_prewarm.py [--rate 20] [--seconds 10] [--rtt 0.025]

An API client sending a steady rate of GETs over TLS to hintpool's local
server announcing ``Keep-Alive: timeout=3, max=N`` (counted down, Apache
style: every 10th response is a connection's last), behind a delay proxy
(round trip ``--rtt``). Requests start on a fixed schedule, each in its own
task, so a slow one does not delay the next. For ``prewarm=False`` and
``prewarm=True``, one after the other, each on an event loop of its own, it
prints:

* handshake waits: requests that opened their own connection (connect and
  TLS handshake before the request could go out) =
  ``connections_opened - prewarmed``, and the same less the first
  request's connection, which no pool can avoid (the steady state);
* p50 / p99 latency of the requests;
* the most requests in flight at once (a stalled loop on a loaded machine
  makes bursts, and a burst needs new connections whatever pre-warming
  does);
* the pre-warm counters (opened, used, wasted).

Traffic stays on the loopback interface; every loop is bounded.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import time
from typing import Any

import anyio
import trustme

import hintpool
from hintpool._local import DelayProxy, LocalServer, ServerConfig


async def run(
    url: str, ca: trustme.CA, rate: float, seconds: float, prewarm: bool
) -> dict[str, Any]:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    latencies: list[float] = []
    total = int(rate * seconds)
    peak = in_flight = 0

    async with hintpool.AsyncConnectionPool(ssl_context=ctx, prewarm=prewarm) as pool:

        async def one() -> None:
            nonlocal peak, in_flight
            in_flight += 1
            peak = max(peak, in_flight)
            start = time.perf_counter()
            response = await pool.request("GET", url)
            assert response.status == 200
            latencies.append(time.perf_counter() - start)
            in_flight -= 1

        with anyio.fail_after(seconds * 3 + 30):
            async with anyio.create_task_group() as tg:
                t0 = time.perf_counter()
                for i in range(total):
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        await anyio.sleep(delay)
                    tg.start_soon(one)
        stats = pool.statistics()
    waits = stats.connections_opened - stats.prewarmed
    latencies.sort()
    return {
        "requests": len(latencies),
        "handshake_waits": waits,
        "handshake_waits_after_first": max(0, waits - 1),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "peak_in_flight": peak,
        "prewarmed": stats.prewarmed,
        "prewarm_used": stats.prewarm_used,
        "prewarm_wasted": stats.prewarm_wasted,
        "tls_resumed": stats.tls_handshakes_resumed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rtt", type=float, default=0.025)
    parser.add_argument("--max", type=int, default=10)
    args = parser.parse_args()

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    config = ServerConfig(
        keep_alive="timeout=3, max={left}",
        idle_timeout=3.0,
        max_requests=args.max,
    )
    with LocalServer("127.0.0.1", config, tls=server_ctx) as server:
        proxy = DelayProxy("127.0.0.1", server.port, delay=args.rtt / 2)
        with proxy:
            url = f"https://127.0.0.1:{proxy.port}/"
            print(
                f"{args.rate:g} req/s for {args.seconds:g} s, TLS, "
                f"Keep-Alive: timeout=3, max={args.max}, RTT {args.rtt * 1000:g} ms"
            )
            for prewarm in (False, True):
                result = anyio.run(run, url, ca, args.rate, args.seconds, prewarm)
                figures = ", ".join(
                    f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()
                )
                print(f"prewarm={prewarm}: {figures}")


if __name__ == "__main__":
    main()
