"""``hintpool demo``: the keep-alive race, httpx's default transport vs hintpool.

Theory of operation
-------------------
Local servers (in this process, one per origin, half of them TLS) announce
``Keep-Alive: timeout=2, max=5`` and close idle connections after 2 s, like
a real server; a delay proxy in front of each adds 12.5 ms each way.  The
same seeded schedule of bursts and idle gaps (see
:mod:`hintpool._local.race`) runs through ``httpx.AsyncClient`` with its
default transport and through ``hintpool.AsyncHTTPTransport`` at the same
time, each against its own servers so the servers can count connections for
httpx, which keeps no statistics.  Bursts alternate GET and POST: a POST
is not idempotent, so no client may retry it after the race, and the POST
row shows what the race costs.  Then a table (or ``--json``) compares them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

import hintpool

from .._local.loop import LocalServerError
from .._local.origins import LocalOrigins, loopback_hosts
from .._local.race import (
    ONE_WAY_DELAY,
    POST_BODY,
    SERVER_MAX_REQUESTS,
    SERVER_TIMEOUT,
    Burst,
    Outcome,
    make_schedule,
    percentile,
    race_server_config,
    run_async,
)
from .._local.tls import LocalTLS, local_tls
from ._demo_report import CONTENDERS, LABELS, heading, print_table

__all__ = ["add_arguments", "heading", "run"]

DURATION, QUICK_DURATION = 40.0, 9.0
METHODS = ("GET", "POST")
#: PoolStatistics fields that may not exist yet in this version of hintpool.
OPTIONAL_COUNTERS = ("retries", "tls_handshakes_full", "tls_handshakes_resumed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help=f"run ~{QUICK_DURATION:.0f} s, not ~40"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document, nothing else"
    )
    parser.add_argument("--seed", type=int, default=7, help="schedule seed")
    parser.add_argument(
        "--origins", type=_origins, default=4, help="origins (1-8), every 2nd TLS"
    )
    parser.add_argument(
        "--duration", type=_duration, default=None, help="seconds of traffic"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port the local servers listen on (default: any free port)",
    )


def _bounded(kind: Callable[[str], Any], low: float, high: float, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be in {low:g}..{high:g}")
        return value

    return parse


_origins = _bounded(int, 1, 8, "origins")
_duration = _bounded(float, 1, 600, "duration")
_port = _bounded(int, 0, 65535, "port")


@dataclass
class Side:
    """One contender's run: its origins, client, schedule outcomes."""

    name: str
    origins: LocalOrigins
    outcomes: list[Outcome] = field(default_factory=list)
    stats: Any = None


def run(args: argparse.Namespace) -> int:
    try:
        import rich  # noqa: F401  (the cli extra: fail early and clearly)
        import trustme  # noqa: F401
    except ImportError as exc:
        print(
            f"hintpool demo: {exc.name} is missing; "
            "install the cli extra: python -m pip install 'hintpool[cli]'",
            file=sys.stderr,
        )
        return 1
    duration = args.duration or (QUICK_DURATION if args.quick else DURATION)
    schedules = [
        make_schedule(args.seed + i, duration, methods=METHODS)
        for i in range(args.origins)
    ]
    try:
        sides, tls = _start_sides(args.origins, args.port)
    except LocalServerError as exc:
        print(f"hintpool demo: cannot start the local servers: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    try:
        asyncio.run(_race(sides, tls, schedules, show_progress=not args.json))
        results = {side.name: _results(side) for side in sides}
    except KeyboardInterrupt:
        print("hintpool demo: interrupted", file=sys.stderr)
        return 130
    finally:
        for side in sides:
            side.origins.stop()
    config = _config(args, duration, schedules, time.monotonic() - started)
    if args.json:
        print(json.dumps({"config": config, "results": results}, indent=2))
    else:
        print_table(config, results)
    return 0


def _start_sides(count: int, port: int) -> tuple[list[Side], LocalTLS]:
    """Start *count* origins per contender, each on its own loopback address."""
    hosts = loopback_hosts(2 * count)
    tls = local_tls(sorted(set(hosts)))
    config = race_server_config()
    contexts = [tls.server_context if i % 2 else None for i in range(count)]
    sides: list[Side] = []
    try:
        for k, name in enumerate(CONTENDERS):
            side_hosts = hosts[k * count : (k + 1) * count]
            # All on 127.0.0.1 (no other loopback address): keep ports apart.
            side_port = port + k * count if port and hosts[0] == hosts[-1] else port
            origins = LocalOrigins(
                side_hosts, config, contexts, ONE_WAY_DELAY, side_port
            )
            origins.start()
            sides.append(Side(name, origins))
    except BaseException:
        for side in sides:
            side.origins.stop()
        raise
    return sides, tls


def _client(name: str, tls: LocalTLS) -> httpx.AsyncClient:
    if name == "httpx":
        return httpx.AsyncClient(verify=tls.client_context())
    transport = hintpool.AsyncHTTPTransport(verify=tls.client_context())
    return httpx.AsyncClient(transport=transport)


async def _race(
    sides: list[Side],
    tls: LocalTLS,
    schedules: list[list[Burst]],
    show_progress: bool,
) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    total = sum(b.requests for schedule in schedules for b in schedule)
    progress = Progress(
        TextColumn("{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
        transient=True,
    )
    with progress:
        await asyncio.gather(
            *(
                _play(side, _client(side.name, tls), schedules, progress, total)
                for side in sides
            )
        )


async def _play(
    side: Side,
    client: httpx.AsyncClient,
    schedules: list[list[Burst]],
    progress: Any,
    total: int,
) -> None:
    task = progress.add_task(LABELS[side.name], total=total)
    side.outcomes = [Outcome() for _ in schedules]

    async def send(method: str, url: str) -> None:
        content = POST_BODY if method == "POST" else None
        response = await client.request(method, url, content=content)
        response.raise_for_status()

    async with client:
        await asyncio.gather(
            *(
                run_async(
                    send,
                    origin.url + "/",
                    schedule,
                    outcome,
                    asyncio.sleep,
                    lambda: progress.advance(task),
                )
                for origin, schedule, outcome in zip(
                    side.origins.origins, schedules, side.outcomes
                )
            )
        )
        transport = client._transport
        if isinstance(transport, hintpool.AsyncHTTPTransport):
            side.stats = transport.statistics()


def _results(side: Side) -> dict[str, Any]:
    """One contender's numbers: client-side where it keeps any, else server-side."""
    errors: dict[str, int] = {}
    latencies: list[float] = []
    by_method = {m: {"requests": 0, "failed": 0} for m in METHODS}
    for outcome in side.outcomes:
        latencies += outcome.latencies
        for method, counts in outcome.by_method().items():
            for key, count in counts.items():
                by_method.setdefault(method, {"requests": 0, "failed": 0})
                by_method[method][key] += count
        for message, count in outcome.errors.items():
            errors[message] = errors.get(message, 0) + count
    server = _server_side(side.origins)
    stats = side.stats
    if stats is None:  # httpx keeps no statistics: what its servers saw
        client: dict[str, Any] = {
            "retries": 0,  # httpx never retries a request (retries= is connects)
            "connections_opened": server["connections_opened"],
            "retired_by_max": server["closed_after_max"],
            "expired_before_server_timeout": None,
            "tls_handshakes_full": server["tls_handshakes_full"],
            "tls_handshakes_resumed": server["tls_handshakes_resumed"],
        }
    else:
        client = {
            "retries": getattr(stats, "retries", None),
            "connections_opened": stats.connections_opened,
            "retired_by_max": stats.retired_by_max,
            "expired_before_server_timeout": stats.expired,
            "tls_handshakes_full": getattr(stats, "tls_handshakes_full", None),
            "tls_handshakes_resumed": getattr(stats, "tls_handshakes_resumed", None),
        }
    return {
        "requests": sum(o.requests for o in side.outcomes),
        "failed": sum(errors.values()),
        "by_method": by_method,
        "errors": errors,
        **client,
        "latency_ms": {f"p{q}": _ms(percentile(latencies, q)) for q in (50, 95, 99)},
        "server": server,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _server_side(origins: LocalOrigins) -> dict[str, int]:
    records = [r for o in origins.origins for r in o.server.connections]
    return {
        "connections_opened": len(records),
        "requests_served": sum(r.requests for r in records),
        "closed_idle": sum(r.reason == "idle" for r in records),
        "closed_after_max": sum(r.reason == "max" for r in records),
        "requests_after_close": sum(r.request_after_close for r in records),
        "tls_handshakes_full": sum(r.tls_resumed is False for r in records),
        "tls_handshakes_resumed": sum(r.tls_resumed is True for r in records),
    }


def _config(
    args: argparse.Namespace,
    duration: float,
    schedules: Sequence[list[Burst]],
    elapsed: float,
) -> dict[str, Any]:
    return {
        "quick": bool(args.quick),
        "seed": args.seed,
        "origins": args.origins,
        "tls_origins": args.origins // 2,
        "keep_alive": f"timeout={SERVER_TIMEOUT}, max={SERVER_MAX_REQUESTS}",
        "server_idle_timeout_s": SERVER_TIMEOUT,
        "server_max_requests": SERVER_MAX_REQUESTS,
        "rtt_ms": round(2 * ONE_WAY_DELAY * 1000, 1),
        "duration_s": duration,
        "bursts": sum(len(s) for s in schedules),
        "requests_per_contender": sum(b.requests for s in schedules for b in s),
        "bursts_per_origin": [len(s) for s in schedules],
        "requests_per_origin": [sum(b.requests for b in s) for s in schedules],
        "elapsed_s": round(elapsed, 1),
        "versions": {
            "python": sys.version.split()[0],
            "httpx": httpx.__version__,
            "hintpool": hintpool.__version__,
        },
    }
