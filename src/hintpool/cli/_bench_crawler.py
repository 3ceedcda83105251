"""The crawler workload of ``hintpool bench``: one slow origin among fast ones.

Theory of operation
-------------------
A crawler fetches from many sites through one pool with a global limit
(``max_connections=20``) and, to be polite, a per-site limit (4).  Here 99
fast origins answer at once and one slow origin takes 2 s per response; 40
tasks fetch from the fast origins round-robin, and in the run "with the slow
origin" 20 more tasks keep asking the slow one.  A pool whose queue is one
FIFO, or that has no per-origin cap, lets the slow origin's requests take or
hold the slots the fast origins need; a pool that caps the slow origin at 4
connections and hands freed slots to the oldest waiter *that can use one*
keeps the fast origins' throughput.  Each contender runs once without and
once with the slow origin; the report gives the fast origins' requests per
second in both, their ratio, and the fast requests' p99 latency.

hintpool takes ``max_connections_per_origin`` only in versions that have it
(:func:`supports_per_origin_cap`); without it its row runs uncapped and says
so.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

import hintpool

from .._local.race import percentile

__all__ = ["SLOW_SECONDS", "crawler_contenders", "run_crawler"]

MAX_CONNECTIONS = 20
PER_ORIGIN = 4
SLOW_SECONDS = 2
FAST_TASKS = 40
SLOW_TASKS = 20
#: Every request may wait this long for a slot: we measure throughput here,
#: not timeouts (httpx's default pool timeout is 5 s).
TIMEOUT = 60.0

Fetch = Callable[[str], Awaitable[None]]
Session = Callable[[], Any]  # an async context manager yielding a Fetch


def supports_per_origin_cap() -> bool:
    """Whether the installed hintpool's pools take ``max_connections_per_origin``."""
    return (
        "max_connections_per_origin"
        in inspect.signature(hintpool.AsyncConnectionPool).parameters
    )


@asynccontextmanager
async def _hintpool() -> AsyncIterator[Fetch]:
    options: dict[str, Any] = {
        "max_connections": MAX_CONNECTIONS,
        "max_keepalive_connections": MAX_CONNECTIONS,
    }
    if supports_per_origin_cap():
        options["max_connections_per_origin"] = PER_ORIGIN
    timeout = {"connect": TIMEOUT, "read": TIMEOUT, "pool": TIMEOUT}
    async with hintpool.AsyncConnectionPool(**options) as pool:

        async def fetch(url: str) -> None:
            response = await pool.request("GET", url, extensions={"timeout": timeout})
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")

        yield fetch


@asynccontextmanager
async def _httpx() -> AsyncIterator[Fetch]:
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT) as client:

        async def fetch(url: str) -> None:
            (await client.get(url)).raise_for_status()

        yield fetch


@asynccontextmanager
async def _aiohttp() -> AsyncIterator[Fetch]:
    import aiohttp

    from ._bench_aiohttp import aiohttp_session

    connector = {"limit": MAX_CONNECTIONS, "limit_per_host": PER_ORIGIN}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp_session(connector, timeout=timeout) as session:

        async def fetch(url: str) -> None:
            async with session.get(url) as response:
                await response.read()
                response.raise_for_status()

        yield fetch


def crawler_contenders(aiohttp: bool = True) -> dict[str, Session]:
    """name -> session factory; the hintpool row's name says its cap."""
    capped = supports_per_origin_cap()
    name = "hintpool pool" + (
        f" (per-origin cap {PER_ORIGIN})" if capped else " (no per-origin cap)"
    )
    found: dict[str, Session] = {
        name: _hintpool,
        "httpx default": _httpx,
    }
    if aiohttp:
        found[f"aiohttp (limit_per_host={PER_ORIGIN})"] = _aiohttp
    return found


async def _crawl(
    session: Session, fast: list[str], slow: str | None, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    slow_done = 0
    async with session() as fetch:
        for url in fast[:FAST_TASKS]:  # warm: one connection per origin
            await fetch(url)
        stop = time.perf_counter() + seconds

        async def fast_worker(first: int) -> None:
            i = first
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    await fetch(fast[i % len(fast)])
                except Exception as exc:  # counted and shown
                    name = type(exc).__name__
                    errors[name] = errors.get(name, 0) + 1
                else:
                    latencies.append(time.perf_counter() - started)
                i += FAST_TASKS

        async def slow_worker(url: str) -> None:
            nonlocal slow_done
            while True:
                await fetch(url)
                slow_done += 1

        slow_tasks = []
        if slow is not None:
            slow_tasks = [
                asyncio.ensure_future(slow_worker(slow)) for _ in range(SLOW_TASKS)
            ]
        started = time.perf_counter()
        await asyncio.gather(*(fast_worker(i) for i in range(FAST_TASKS)))
        elapsed = time.perf_counter() - started
        for task in slow_tasks:
            task.cancel()
        await asyncio.gather(*slow_tasks, return_exceptions=True)
    p99 = percentile(latencies, 99)
    return {
        "fast_requests": len(latencies),
        "fast_req_per_s": round(len(latencies) / elapsed, 1),
        "fast_p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "slow_responses": slow_done,
        "errors": errors,
    }


def run_crawler(urls: list[str], seconds: float, aiohttp: bool) -> dict[str, Any]:
    """Each contender without, then with, the slow origin ``urls[0]``."""
    slow = urls[0].rstrip("/") + f"/delay/{SLOW_SECONDS}"
    fast = urls[1:]
    results: dict[str, Any] = {}
    for name, session in crawler_contenders(aiohttp).items():
        alone = asyncio.run(_crawl(session, fast, None, seconds))
        mixed = asyncio.run(_crawl(session, fast, slow, seconds))
        base = alone["fast_req_per_s"]
        results[name] = {
            "without_slow": alone,
            "with_slow": mixed,
            "fast_throughput_ratio": (
                round(mixed["fast_req_per_s"] / base, 3) if base else None
            ),
        }
    return {
        "seconds": seconds,
        "origins": len(urls),
        "max_connections": MAX_CONNECTIONS,
        "per_origin_cap": PER_ORIGIN,
        "slow_seconds": SLOW_SECONDS,
        "fast_tasks": FAST_TASKS,
        "slow_tasks": SLOW_TASKS,
        "results": results,
    }
