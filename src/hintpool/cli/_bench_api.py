"""The api-client workload of ``hintpool bench``: steady traffic, handshake waits.

Theory of operation
-------------------
An API client sends a steady 20 requests per second over TLS to a server
that announces ``Keep-Alive: timeout=3, max=10`` (and enforces both) behind
a 25 ms round trip.  Every tenth request on a connection is its last, so a
client opens a new connection about every half second; the request that
has to wait for it pays a TCP and a TLS handshake, two more round trips.
A pool that opens the replacement before it is needed (hintpool's
pre-warming) saves the request that wait.

Every contender gets its own origin (server + delay proxy, all set up
alike) and the contenders run one after another, each on an event loop of
its own, on the same schedule (a request every 50 ms, not waiting for the
previous one).  Run side by side on one loop, they started their first
handshakes in the same instant and each one's latency carried the other
three's CPU; one at a time, a contender measures only itself.

A request waited for a handshake when the connection it went out on was
not ready when it was sent: it opened that connection, or it took over a
pre-warm still connecting.  The server, in the same process and on the same
clock, sees such a request right after the connection's handshake, while a
connection that was ready ahead sat idle first; so a connection whose
first request was read within ``JOINED`` of its handshake counts one
waiting request.  The first request always waits, so the count is also
given without it (the steady state); the headline, like the issue's
target, counts it.  Two more counts bound it: the requests that opened a
connection (the server's connections less the ones the pool pre-warmed:
exact, but blind to a take-over) and the requests that took two round trips
or more (a request on an open connection takes one; on a loaded machine
this also catches requests slowed by the CPU).  The servers count the connections and
TLS handshakes (full / resumed) each contender made.

hintpool takes ``prewarm`` only in versions that have it
(:func:`supports_prewarm`); then it runs twice, with and without.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

import hintpool

from .._local.origins import LocalOrigins, loopback_hosts
from .._local.race import percentile
from .._local.server import ConnectionRecord, ServerConfig
from .._local.tls import local_tls
from ._bench_aiohttp import aiohttp_session

__all__ = ["RATE", "api_contenders", "run_api_client", "supports_prewarm"]

RATE = 20  # requests per second
ONE_WAY_DELAY = 0.0125  # 25 ms round trip
SERVER_TIMEOUT = 3
SERVER_MAX = 10
#: A request slower than this waited for a handshake (TCP + TLS: 2 RTTs).
HANDSHAKE_WAIT = 4 * ONE_WAY_DELAY
#: A first request read this soon after its connection's handshake was sent
#: the moment the connection was ready: it was waiting for it.
JOINED = 0.005

Fetch = Callable[[str], Awaitable[None]]
#: What the pool itself counted (hintpool only), read before it closes.
Counts = Callable[[], dict[str, int]]
Session = Callable[[ssl.SSLContext], Any]  # async CM -> (Fetch, Counts | None)
POOL_COUNTS = ("connections_opened", "prewarmed", "prewarm_used", "prewarm_wasted")


def supports_prewarm() -> bool:
    """Whether the installed hintpool's pools take ``prewarm``."""
    return "prewarm" in inspect.signature(hintpool.AsyncConnectionPool).parameters


def _hintpool(prewarm: bool | None) -> Session:
    @asynccontextmanager
    async def session(
        ctx: ssl.SSLContext,
    ) -> AsyncIterator[tuple[Fetch, Counts | None]]:
        options: dict[str, Any] = {"ssl_context": ctx}
        if prewarm is not None:
            options["prewarm"] = prewarm
        async with hintpool.AsyncConnectionPool(**options) as pool:

            async def fetch(url: str) -> None:
                response = await pool.request("GET", url)
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")

            def counts() -> dict[str, int]:
                stats = pool.statistics()
                return {name: getattr(stats, name, 0) for name in POOL_COUNTS}

            yield fetch, counts

    return session


@asynccontextmanager
async def _httpx(ctx: ssl.SSLContext) -> AsyncIterator[tuple[Fetch, None]]:
    async with httpx.AsyncClient(verify=ctx) as client:

        async def fetch(url: str) -> None:
            (await client.get(url)).raise_for_status()

        yield fetch, None


@asynccontextmanager
async def _aiohttp(ctx: ssl.SSLContext) -> AsyncIterator[tuple[Fetch, None]]:
    async with aiohttp_session({"ssl": ctx}) as session:

        async def fetch(url: str) -> None:
            async with session.get(url) as response:
                await response.read()
                response.raise_for_status()

        yield fetch, None


def api_contenders(aiohttp: bool = True) -> dict[str, Session]:
    found: dict[str, Session] = {}
    if supports_prewarm():
        found["hintpool pool (pre-warm)"] = _hintpool(True)
        found["hintpool pool (no pre-warm)"] = _hintpool(False)
    else:
        found["hintpool pool"] = _hintpool(None)
    found["httpx default"] = _httpx
    if aiohttp:
        found["aiohttp"] = _aiohttp
    return found


def server_config() -> ServerConfig:
    return ServerConfig(
        keep_alive=f"timeout={SERVER_TIMEOUT}, max={{left}}",
        idle_timeout=float(SERVER_TIMEOUT),
        max_requests=SERVER_MAX,
    )


def run_api_client(seconds: float, aiohttp: bool) -> dict[str, Any]:
    """Every contender in turn, each against its own TLS origin."""
    contenders = api_contenders(aiohttp)
    hosts = loopback_hosts(len(contenders), first=120)
    tls = local_tls(sorted(set(hosts)))
    contexts = [tls.server_context] * len(hosts)
    results = {}
    with LocalOrigins(hosts, server_config(), contexts, ONE_WAY_DELAY) as origins:
        for (name, session), origin in zip(contenders.items(), origins.origins):
            url = origin.url + "/"
            outcome = asyncio.run(_play(session, tls.client_context(), url, seconds))
            results[name] = _with_server_counts(outcome, origin.server.connections)
    return {
        "seconds": seconds,
        "rate": RATE,
        "schedule": "one contender after another, each on its own event loop",
        "keep_alive": f"timeout={SERVER_TIMEOUT}, max={SERVER_MAX}",
        "rtt_ms": round(2 * ONE_WAY_DELAY * 1000, 1),
        "handshake_wait_ms": round(HANDSHAKE_WAIT * 1000, 1),
        "joined_ms": round(JOINED * 1000, 1),
        "results": results,
    }


def _with_server_counts(
    outcome: dict[str, Any], records: list[ConnectionRecord]
) -> dict[str, Any]:
    outcome["server_connections"] = len(records)
    outcome["tls_full"] = sum(r.tls_resumed is False for r in records)
    outcome["tls_resumed"] = sum(r.tls_resumed is True for r in records)
    # Every connection but a pre-warmed one was opened by a request that
    # waited for it: exact, whatever the machine's load.
    prewarmed = (outcome["pool"] or {}).get("prewarmed", 0)
    opened = len(records) - prewarmed
    requests = outcome["requests"]
    outcome["opened_by_a_request"] = opened
    outcome["opened_share"] = round(opened / max(1, requests), 4)
    joined = sum(
        r.first_request_at is not None and r.first_request_at - r.ready_at < JOINED
        for r in records
    )
    outcome["waited_for_connection"] = joined
    outcome["waited_for_connection_share"] = round(joined / max(1, requests), 4)
    # No pool can have a connection before the first request asks for one.
    outcome["waited_after_first"] = max(0, joined - 1)
    outcome["waited_after_first_share"] = round(
        max(0, joined - 1) / max(1, requests - 1), 4
    )
    return outcome


async def _play(
    session: Session, ctx: ssl.SSLContext, url: str, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def one(fetch: Fetch) -> None:
        began = time.perf_counter()
        try:
            await fetch(url)
        except Exception as exc:  # counted and shown
            name = type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
        else:
            latencies.append(time.perf_counter() - began)

    async with session(ctx) as (fetch, counts):
        tasks = []
        start = time.perf_counter()
        for i in range(int(seconds * RATE)):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(fetch)))
        await asyncio.gather(*tasks)
        pool_counts = None if counts is None else counts()
    waited = sum(latency >= HANDSHAKE_WAIT for latency in latencies)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "requests": len(latencies) + sum(errors.values()),
        "waited_for_handshake": waited,
        "waited_share": round(waited / len(latencies), 4) if latencies else None,
        "p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "p99_over_p50": round(p99 / p50, 2) if p50 and p99 else None,
        "errors": errors,
        "pool": pool_counts,
    }
