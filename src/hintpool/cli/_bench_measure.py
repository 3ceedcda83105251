"""Timed runs for ``hintpool bench``: one contender, one workload, one round.

A run opens a fresh session, warms it (one request per origin plus a few
more, untimed), then sends up to ``requests`` requests with ``concurrency``
workers spread round-robin over the origins, and stops early at
``max_seconds``.  It returns the rate, the client process's CPU time per
request and the errors; a failed request is counted, never retried here.
An async run uses a fresh event loop: ``asyncio.run``'s, or one from the
contender's ``loop_factory`` (uvloop).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._bench_contenders import AsyncGet, Contender, LoopFactory, SyncGet

__all__ = ["Run", "Workload", "add_cpu_ratios", "add_ratios", "measure", "summary"]

T = TypeVar("T")

WARMUP_REQUESTS = 20


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    mode: str  # "sync" or "async"
    concurrency: int = 1
    origins: int = 1
    reconnect: bool = False  # a new connection per request
    share: float = 1.0  # of --requests, for the slow workloads


@dataclass
class Run:
    requests: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / self.requests if self.requests else 0.0

    def record_error(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1


def measure(
    contender: Contender,
    workload: Workload,
    urls: list[str],
    requests: int,
    max_seconds: float,
) -> Run:
    """One timed run of *workload* by *contender* against *urls*."""
    connections = len(urls) + workload.concurrency
    total = max(1, int(requests * workload.share))
    if workload.mode == "sync":
        assert contender.sync_session is not None
        with contender.sync_session(connections, workload.reconnect) as get:
            return _sync_run(get, urls, total, max_seconds)
    assert contender.async_session is not None
    return run_on_loop(
        _async_run(contender, workload, connections, urls, total, max_seconds),
        contender.loop_factory,
    )


def run_on_loop(
    coroutine: Coroutine[Any, Any, T], loop_factory: LoopFactory | None
) -> T:
    """``asyncio.run``, on a loop from *loop_factory* when given.

    ``asyncio.Runner`` takes a factory but needs Python 3.11: this does what
    ``asyncio.run`` does on 3.9 (run, then finish async generators and close).
    """
    if loop_factory is None:
        return asyncio.run(coroutine)
    try:
        loop = loop_factory()
    except BaseException:
        coroutine.close()  # never started: say so, or Python warns at GC
        raise
    try:
        return loop.run_until_complete(coroutine)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _sync_run(get: SyncGet, urls: list[str], total: int, max_seconds: float) -> Run:
    run = Run()
    _sync_loop(get, urls, len(urls) + WARMUP_REQUESTS, time.perf_counter() + 30, Run())
    cpu, start = time.process_time(), time.perf_counter()
    _sync_loop(get, urls, total, start + max_seconds, run)
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = time.process_time() - cpu
    return run


def _sync_loop(
    get: SyncGet, urls: list[str], total: int, deadline: float, run: Run
) -> None:
    for i in range(total):
        if time.perf_counter() > deadline:
            return
        try:
            get(urls[i % len(urls)])
        except Exception as exc:  # counted and reported
            run.record_error(exc)
        run.requests += 1


async def _async_run(
    contender: Contender,
    workload: Workload,
    connections: int,
    urls: list[str],
    total: int,
    max_seconds: float,
) -> Run:
    assert contender.async_session is not None
    run = Run()
    concurrency = workload.concurrency
    async with contender.async_session(connections, workload.reconnect) as get:
        warm = len(urls) + WARMUP_REQUESTS
        await _async_loop(get, urls, warm, concurrency, time.perf_counter() + 30, Run())
        cpu, start = time.process_time(), time.perf_counter()
        await _async_loop(get, urls, total, concurrency, start + max_seconds, run)
        run.seconds = time.perf_counter() - start
        run.cpu_seconds = time.process_time() - cpu
    return run


async def _async_loop(
    get: AsyncGet,
    urls: list[str],
    total: int,
    concurrency: int,
    deadline: float,
    run: Run,
) -> None:
    per_worker = max(1, total // concurrency)

    async def worker(offset: int) -> None:
        for i in range(per_worker):
            if time.perf_counter() > deadline:
                return
            try:
                await get(urls[(offset + i * concurrency) % len(urls)])
            except Exception as exc:  # counted and reported
                run.record_error(exc)
            run.requests += 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


def summary(runs: list[Run]) -> dict[str, Any]:
    """Median rate and CPU time over the rounds, errors summed."""
    from statistics import median

    errors: Counter[str] = Counter()
    for run in runs:
        errors.update(run.errors)
    return {
        "req_per_s": round(median(r.rate for r in runs), 1),
        "cpu_us_per_request": round(median(r.cpu_us_per_request for r in runs), 1),
        "rounds_req_per_s": [round(r.rate, 1) for r in runs],
        "requests": sum(r.requests for r in runs),
        "errors": sum(errors.values()),
        "error_types": dict(errors),
    }


def add_ratios(results: dict[str, dict[str, Any]], baselines: dict[str, str]) -> None:
    """Set ``ratio_vs_<key>`` on every result: its rate over the baseline's.

    *baselines* maps a key (``httpx_default``) to a contender name; a baseline
    that did not run gives ``None`` ratios.
    """
    for key, name in baselines.items():
        base = results.get(name, {}).get("req_per_s")
        for result in results.values():
            result[f"ratio_vs_{key}"] = (
                round(result["req_per_s"] / base, 2) if base else None
            )


def add_cpu_ratios(results: dict[str, dict[str, Any]], peer: str) -> None:
    """Set ``cpu_ratio_vs_<peer>`` on every result: the peer's CPU time per
    request over its own (above 1: less CPU than the peer), ``None`` when the
    peer did not run.  On a small machine where the server shares the
    client's cores, rates swing from run to run with the server's share of
    the CPU; the CPU each request costs the client stays steady."""
    base = results.get(peer, {}).get("cpu_us_per_request")
    for result in results.values():
        ours = result["cpu_us_per_request"]
        result[f"cpu_ratio_vs_{peer}"] = (
            round(base / ours, 2) if base and ours else None
        )
