"""The http2 workload of ``hintpool bench``: HTTP/2 over TLS against Node.

Theory of operation
-------------------
Node's ``http2`` module serves ``hello`` over TLS (a local trustme
certificate, ``allowHTTP1`` so the HTTP/1.1 row talks to the same server).
At concurrency 1, 10 and 100, three clients send GET requests through
httpx, taking turns within each round:

* ``hintpool h2``: ``hintpool.AsyncHTTPTransport(http2=True)``;
* ``httpx h2``: ``httpx.AsyncHTTPTransport(http2=True)``, the baseline;
* ``hintpool h1``: hintpool's HTTP/1.1 to the same server, for reference.

Each run reports the client's CPU time per request (``time.process_time``:
the server is another process) and requests per second; the report gives
medians of the rounds and hintpool h2's ratio to httpx h2 (CPU time of
httpx over hintpool's: above 1 is faster). The workload is skipped, with
one line, when ``h2`` is not installed or ``node`` is not on PATH.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

import hintpool

__all__ = ["HTTP2", "missing", "run_http2"]

HTTP2 = "http2"
CONCURRENCY = (1, 10, 100)
WARM_UP = 5  # requests per worker before the clock starts

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


def missing() -> str | None:
    """Why the workload cannot run here, or None."""
    if importlib.util.find_spec("h2") is None:
        return "h2 not installed (pip install 'hintpool[http2]')"
    if shutil.which("node") is None:
        return "node not found on PATH"
    return None


def run_http2(requests: int, rounds: int) -> dict[str, Any]:
    """Run the workload; ``{"skipped": reason}`` when it cannot."""
    reason = missing()
    if reason is not None:
        return {"skipped": reason}
    import trustme

    ca = trustme.CA()
    with _node_server(ca) as url:
        results = {}
        for concurrency in CONCURRENCY:
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in CONTENDERS}
            for _ in range(rounds):
                for name, factory in CONTENDERS.items():
                    ctx = ssl.create_default_context()
                    ca.configure_trust(ctx)
                    run = asyncio.run(_timed(factory, ctx, url, requests, concurrency))
                    runs[name].append(run)
            results[str(concurrency)] = _medians(runs)
    return {"requests": requests, "rounds": rounds, "results": results}


@contextmanager
def _node_server(ca: Any) -> Iterator[str]:
    cert = ca.issue_cert("127.0.0.1")
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
            yield f"https://127.0.0.1:{int(node.stdout.readline())}/"
        finally:
            node.terminate()
            node.wait(10)
            if node.stdout is not None:
                node.stdout.close()


async def _timed(
    factory: Factory, ctx: ssl.SSLContext, url: str, requests: int, concurrency: int
) -> dict[str, Any]:
    errors: dict[str, int] = {}

    async def worker(count: int) -> None:
        for _ in range(count):
            try:
                (await client.get(url)).raise_for_status()
            except Exception as exc:  # counted, as in the other workloads
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1

    async with httpx.AsyncClient(transport=factory(ctx)) as client:
        await asyncio.gather(*[worker(WARM_UP) for _ in range(concurrency)])
        errors.clear()
        per_worker = max(1, requests // concurrency)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*[worker(per_worker) for _ in range(concurrency)])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_worker * concurrency
    return {"cpu_us": cpu / done * 1e6, "req_per_s": done / wall, "errors": errors}


def _medians(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, measured in runs.items():
        errors: dict[str, int] = {}
        for run in measured:
            for error, count in run["errors"].items():
                errors[error] = errors.get(error, 0) + count
        out[name] = {
            "cpu_us_per_request": statistics.median(r["cpu_us"] for r in measured),
            "req_per_s": statistics.median(r["req_per_s"] for r in measured),
            "errors": errors,
        }
    mine, theirs = out["hintpool h2"], out["httpx h2"]
    mine["ratio_vs_httpx_h2"] = (
        theirs["cpu_us_per_request"] / mine["cpu_us_per_request"]
        if mine["cpu_us_per_request"]
        else None
    )
    return out


def http2_table(document: dict[str, Any]) -> tuple[str, tuple[str, ...], list[Any]]:
    """(title, headers, rows) for the report."""
    title = (
        f"http2: GET over TLS against Node's http2 server, "
        f"{document['requests']} requests per run, medians of "
        f"{document['rounds']} rounds (ratio: httpx h2's CPU time over "
        "hintpool h2's)"
    )
    headers = ("concurrency", "client", "CPU us/req", "req/s", "ratio", "errors")
    rows = []
    for concurrency, results in document["results"].items():
        for name, result in results.items():
            ratio = result.get("ratio_vs_httpx_h2")
            errors = ", ".join(f"{n} {e}" for e, n in result["errors"].items())
            rows.append(
                (
                    concurrency,
                    name,
                    f"{result['cpu_us_per_request']:,.1f}",
                    f"{result['req_per_s']:,.0f}",
                    "\u2013" if ratio is None else f"{ratio:.2f}x",
                    errors or "0",
                )
            )
    return title, headers, rows
