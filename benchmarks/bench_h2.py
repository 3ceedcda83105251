#!/usr/bin/env python
"""HTTP/2 through hintpool against httpx's own HTTP/2 transport, one run.

    python benchmarks/bench_h2.py [--requests N] [--rounds R]

Starts Node's ``http2`` module on 127.0.0.1 (TLS with a trustme certificate,
``allowHTTP1`` so the HTTP/1.1 row talks to the same server) and sends GET
requests through httpx with three transports, at concurrency 1, 10 and 100:

* ``hintpool h2``: ``hintpool.AsyncHTTPTransport(http2=True)``;
* ``httpx h2``: ``httpx.AsyncHTTPTransport(http2=True)``;
* ``hintpool h1``: hintpool's HTTP/1.1 over the same TLS server, for
  reference.

For each it prints the client's CPU time per request (``time.process_time``:
the server is another process) and requests per second, medians of the
rounds; contenders take turns within each round. Needs ``node`` on PATH.
Traffic stays on the loopback interface; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import httpx
import trustme

import hintpool

SERVER_JS = """
const http2 = require('http2');
const fs = require('fs');
const server = http2.createSecureServer({
  key: fs.readFileSync(process.argv[2]), cert: fs.readFileSync(process.argv[3]),
  allowHTTP1: true,
});
server.on('request', (req, res) => { res.end('hello'); });
server.listen(0, '127.0.0.1', () => { console.log(server.address().port); });
"""

Factory = Callable[[ssl.SSLContext], httpx.AsyncBaseTransport]
CONTENDERS: dict[str, Factory] = {
    "hintpool h2": lambda ctx: hintpool.AsyncHTTPTransport(verify=ctx, http2=True),
    "httpx h2": lambda ctx: httpx.AsyncHTTPTransport(verify=ctx, http2=True),
    "hintpool h1": lambda ctx: hintpool.AsyncHTTPTransport(verify=ctx),
}


async def _timed(
    factory: Factory, ctx: ssl.SSLContext, url: str, requests: int, concurrency: int
) -> tuple[float, float]:
    transport = factory(ctx)
    async with httpx.AsyncClient(transport=transport) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                response = await client.get(url)
                assert response.status_code == 200

        await asyncio.gather(*[worker(5) for _ in range(concurrency)])  # warm up
        per_worker = max(1, requests // concurrency)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*[worker(per_worker) for _ in range(concurrency)])
        done = per_worker * concurrency
        return (
            (time.process_time() - cpu) / done * 1e6,
            done / (time.perf_counter() - wall),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with tempfile.TemporaryDirectory() as tmp:
        key, crt, js = (os.path.join(tmp, n) for n in ("key.pem", "cert.pem", "s.js"))
        cert.private_key_pem.write_to_path(key)
        cert.cert_chain_pems[0].write_to_path(crt)
        with open(js, "w") as f:
            f.write(SERVER_JS)
        node = subprocess.Popen(
            ["node", js, key, crt], stdout=subprocess.PIPE, text=True
        )
        try:
            assert node.stdout is not None
            url = f"https://127.0.0.1:{int(node.stdout.readline())}/"
            _run(ctx, url, args.requests, args.rounds)
        finally:
            node.terminate()
            node.wait(10)


def _run(ctx: ssl.SSLContext, url: str, requests: int, rounds: int) -> None:
    print(f"{'concurrency':>11} {'contender':>12} {'CPU us/req':>11} {'req/s':>8}")
    for concurrency in (1, 10, 100):
        results: dict[str, list[tuple[float, float]]] = {n: [] for n in CONTENDERS}
        for _ in range(rounds):
            for name, factory in CONTENDERS.items():
                results[name].append(
                    asyncio.run(_timed(factory, ctx, url, requests, concurrency))
                )
        for name, runs in results.items():
            cpu = statistics.median(r[0] for r in runs)
            rate = statistics.median(r[1] for r in runs)
            print(f"{concurrency:>11} {name:>12} {cpu:>11.1f} {rate:>8.0f}")


if __name__ == "__main__":
    main()
