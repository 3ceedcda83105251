"""The race through squid's CONNECT tunnels: failed requests, not speed.

The race workload's schedule and servers (:mod:`hintpool._local.race`:
``Keep-Alive: timeout=2, max=5``, here over TLS, one origin per contender),
reached through a real squid, with the delay proxy (25 ms RTT) between the
clients and squid. Inside a tunnel the origin's hint arrives untouched, and
the origin's idle close reaches the client through squid. The proxied async
contenders (:mod:`._bench_proxy`) play at the same time on one loop.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import ExitStack
from typing import Any

from .._local.delay_proxy import DelayProxy
from .._local.origins import LocalOrigins, loopback_hosts
from .._local.race import (
    ONE_WAY_DELAY,
    Outcome,
    make_schedule,
    percentile,
    race_server_config,
)
from .._local.squid import start_squid
from . import _bench_proxy
from ._bench_proxy import BenchCA, proxy_contenders
from ._bench_race import _ms, _play_all

__all__ = ["TITLE", "race_entry", "run_proxy_race"]

TITLE = (
    "race through squid (CONNECT + TLS): the same bursts against origins sending "
    "Keep-Alive: timeout=2, 25 ms RTT between clients and squid ({seconds:g} s)"
)


def race_entry(seconds: float, seed: int, have_aiohttp: bool) -> dict[str, Any] | None:
    """The document's ``proxy_race`` entry; None (after one line on stderr)
    when it cannot run."""
    reason = _bench_proxy.skip_reason()
    if reason is not None:
        print(f"proxy race skipped: {reason}", file=sys.stderr)
        return None
    return {
        "seconds": seconds,
        "title": TITLE.format(seconds=seconds),
        "results": run_proxy_race(seconds, seed, have_aiohttp),
    }


def run_proxy_race(duration: float, seed: int, have_aiohttp: bool) -> dict[str, Any]:
    """Per-contender results, as :func:`._bench_race.run_race` gives them."""
    schedule = make_schedule(
        seed, duration, near_share=1.0, before=0.03, after=0.005, burst_sizes=(1, 2, 3)
    )
    ca = BenchCA()
    with ExitStack() as stack:
        squid = stack.enter_context(start_squid())
        host, port = squid.rsplit("/", 1)[1].split(":")
        delay = DelayProxy(host, int(port), delay=ONE_WAY_DELAY)
        delay.start()
        stack.callback(delay.stop)
        contenders = proxy_contenders(delay.url(), ca.client_context, have_aiohttp)
        hosts = loopback_hosts(len(contenders), first=100)
        contexts = [ca.server_context(h) for h in hosts]
        origins = stack.enter_context(
            LocalOrigins(hosts, race_server_config(), contexts)
        )
        urls = [o.url + "/" for o in origins.origins]
        outcomes = {c.name: Outcome() for c in contenders}
        asyncio.run(_play_all(contenders, urls, schedule, outcomes))
    return {
        name: {
            "requests": outcome.requests,
            "failed": outcome.failed,
            "error_types": dict(outcome.errors),
            "p99_ms": _ms(percentile(outcome.latencies, 99)),
        }
        for name, outcome in outcomes.items()
    }
