"""The race workload of ``hintpool bench``: failed requests, not speed.

Every contender plays the same seeded schedule (see
:mod:`hintpool._local.race`) against its own origin -- a server announcing
``Keep-Alive: timeout=2, max=5`` behind a 25 ms RTT delay proxy -- all at the
same time: async contenders on one event loop, sync ones in threads.  The
bursts alternate GET and POST: aiohttp and urllib3 retry a GET that met a
closed connection on their own, so only the POST count shows what the race
costs a client that cannot be retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._local.origins import LocalOrigins, loopback_hosts
from .._local.race import (
    ONE_WAY_DELAY,
    Outcome,
    make_schedule,
    percentile,
    race_server_config,
    run_async,
    run_sync,
)
from ._bench_contenders import Contender

__all__ = ["run_race"]

#: Connections each contender may keep: one origin, sequential requests.
CONNECTIONS = 4
METHODS = ("GET", "POST")


def run_race(contenders: list[Contender], duration: float, seed: int) -> dict[str, Any]:
    """Play the race schedule through every contender at once; per-name results."""
    # Every gap falls in the last 30 ms before the servers' timeout or just
    # after it, so the 25 ms-wide race window covers most of them (the demo
    # mixes in short gaps and longer bursts; here we only count failures).
    schedule = make_schedule(
        seed,
        duration,
        near_share=1.0,
        before=0.03,
        after=0.005,
        burst_sizes=(1, 2, 3),
        methods=METHODS,
    )
    hosts = loopback_hosts(len(contenders), first=100)
    config = race_server_config()
    outcomes = {c.name: Outcome() for c in contenders}
    with LocalOrigins(hosts, config, [None] * len(hosts), ONE_WAY_DELAY) as origins:
        urls = [o.url + "/" for o in origins.origins]
        asyncio.run(_play_all(contenders, urls, schedule, outcomes))
    return {
        name: {
            "requests": outcome.requests,
            "failed": outcome.failed,
            "by_method": outcome.by_method(),
            "error_types": dict(outcome.errors),
            "p99_ms": _ms(percentile(outcome.latencies, 99)),
        }
        for name, outcome in outcomes.items()
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def _play_all(
    contenders: list[Contender],
    urls: list[str],
    schedule: Any,
    outcomes: dict[str, Outcome],
) -> None:
    async def play_async(contender: Contender, url: str) -> None:
        assert contender.async_session is not None
        async with contender.async_session(CONNECTIONS, False) as get:

            async def send(method: str, url: str) -> None:
                await get(url, method)

            await run_async(
                send, url, schedule, outcomes[contender.name], asyncio.sleep
            )

    def play_sync(contender: Contender, url: str) -> None:
        assert contender.sync_session is not None
        with contender.sync_session(CONNECTIONS, False) as get:
            run_sync(
                lambda method, url: get(url, method),
                url,
                schedule,
                outcomes[contender.name],
            )

    await asyncio.gather(
        *(
            play_async(c, url)
            if c.mode == "async"
            else asyncio.to_thread(play_sync, c, url)
            for c, url in zip(contenders, urls)
        )
    )
