"""``hintpool bench``: hintpool against httpx, aiohttp, urllib3 and a raw-asyncio floor.

Theory of operation
-------------------
One benchmark server (Node.js ``http`` when ``node`` is on PATH, else the
in-process h11 server) listens on one or many loopback addresses.  For each
round, each workload runs every contender of its kind (sync or async) once,
in an order that rotates from round to round so no contender always runs
first or last; each run opens a fresh client, warms it, and sends the
workload's requests (see :mod:`._bench_measure`).  The report gives the
median over the rounds, the ratios against httpx's default transport and
against the fastest peer of the mode (aiohttp for async rows, urllib3 for
sync rows: issue #12's targets), and the error counts.  The race workload
(:mod:`._bench_race`) runs once, after the rounds, and counts failed
requests instead; the asyncio floor and custom-loop rows sit it out.  The
proxied workloads (:mod:`._bench_proxy`) run after the others, through a
squid of their own, with the async contenders that take a proxy.  The
crawler workload (:mod:`._bench_crawler`: fast origins' throughput beside a
slow one) and the api-client workload (:mod:`._bench_api`: requests that
waited for a handshake at a steady rate) come last, each with its own few
contenders, then the http2 workload (:mod:`._bench_h2`: HTTP/2 over TLS
against Node's ``http2`` module).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from .._local.bench_server import start_bench_server
from .._local.loop import LocalServerError
from .._local.origins import loopback_hosts
from . import _bench_contenders
from . import _bench_env as env
from ._bench_contenders import (
    AIOHTTP,
    HTTPX_DEFAULT_ASYNC,
    HTTPX_DEFAULT_SYNC,
    URLLIB3,
    Contender,
)
from ._bench_h2 import HTTP2
from ._bench_measure import (
    Run,
    Workload,
    add_cpu_ratios,
    add_ratios,
    measure,
    summary,
)
from ._bench_proxy import KEYS as PROXY_KEYS

__all__ = ["WORKLOADS", "add_arguments", "run", "tls_resumption_workloads"]

#: (requests, rounds, origins, race seconds, seconds per run): full, --quick.
DEFAULTS = {"full": (2000, 3, 1000, 20.0, 15.0), "quick": (400, 3, 100, 8.0, 5.0)}
#: Seconds per crawler run and per api-client run (one per client, in turn):
#: full, --quick.
CRAWLER_SECONDS = {"full": 6.0, "quick": 2.0}
API_SECONDS = {"full": 30.0, "quick": 5.0}
CRAWLER_ORIGINS = 100
MANY = "many-origins"
RACE = "race"
PROXY_RACE = "proxy-race"
CRAWLER = "crawler"
API_CLIENT = "api-client"


def workloads(origins: int) -> list[Workload]:
    """The throughput workloads, in report order (the race comes last)."""
    return [
        Workload("sync", "sync, sequential", "sync"),
        Workload("async-1", "async, C=1", "async", concurrency=1),
        Workload("async-10", "async, C=10", "async", concurrency=10),
        Workload("async-100", "async, C=100", "async", concurrency=100),
        Workload(
            MANY,
            f"{origins} origins, async, C=10",
            "async",
            concurrency=10,
            origins=origins,
            share=0.5,
        ),
        Workload(
            "reconnect-sync",
            "reconnect each request, sync",
            "sync",
            reconnect=True,
            share=0.5,
        ),
        Workload(
            "reconnect-async",
            "reconnect each request, C=10",
            "async",
            concurrency=10,
            reconnect=True,
            share=0.5,
        ),
        *tls_resumption_workloads(),
    ]


def tls_resumption_workloads() -> list[Workload]:
    """Hook for the TLS rows (issue #3): reconnects with and without resumption.

    They need an ``https`` benchmark server and contenders that resume TLS
    sessions; return their Workloads here and they join every table, the
    JSON and the plot.  None yet.
    """
    return []


WORKLOADS = [w.key for w in workloads(1)] + list(PROXY_KEYS) + [RACE, PROXY_RACE]
WORKLOADS += [CRAWLER, API_CLIENT, HTTP2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    full, quick = DEFAULTS["full"], DEFAULTS["quick"]
    add = parser.add_argument
    add("--quick", action="store_true", help="fewer requests and rounds: ~1 minute")
    add("--json", action="store_true", help="print one JSON document, nothing else")
    add("--plot", metavar="FILE.png", help="draw the results (needs matplotlib)")
    add("--requests", type=_count(1, 10**6), help=f"per run ({full[0]}; {quick[0]})")
    add("--rounds", type=_count(1, 100), help=f"per workload ({full[1]}; {quick[1]})")
    add("--origins", type=_count(1, 5000), help=f"many-origins ({full[2]}; {quick[2]})")
    add(
        "--race-seconds",
        type=_count(0, 600),
        help=f"length of the race workload ({full[3]:g}; {quick[3]:g}; 0: skip)",
    )
    add(
        "--crawler-seconds",
        type=_count(1, 600),
        help=f"per crawler run ({CRAWLER_SECONDS['full']:g}; "
        f"{CRAWLER_SECONDS['quick']:g})",
    )
    add(
        "--api-seconds",
        type=_count(1, 600),
        help=f"per api-client run, one per client ({API_SECONDS['full']:g}; "
        f"{API_SECONDS['quick']:g})",
    )
    add(
        "--workloads",
        type=_workload_list,
        default=WORKLOADS,
        help="comma-separated subset of: " + ",".join(WORKLOADS),
    )
    add("--server", choices=("auto", "node", "python"), default="auto")
    add("--seed", type=int, default=7, help="race schedule seed")


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}")
        return value

    return parse


def _workload_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload {', '.join(map(repr, unknown)) or repr(text)}; "
            f"choose from {','.join(WORKLOADS)}"
        )
    return names


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    size = "quick" if args.quick else "full"
    requests, rounds, origins, race, per_run = DEFAULTS[size]
    return {
        "quick": bool(args.quick),
        "requests": args.requests or requests,
        "rounds": args.rounds or rounds,
        "origins": args.origins or origins,
        "race_seconds": race if args.race_seconds is None else args.race_seconds,
        "max_seconds_per_run": per_run,
        "crawler_seconds": float(args.crawler_seconds or CRAWLER_SECONDS[size]),
        "api_seconds": float(args.api_seconds or API_SECONDS[size]),
        "workloads": args.workloads,
        "seed": args.seed,
        "server": args.server,
    }


def run(args: argparse.Namespace) -> int:
    from . import _bench_report as report

    if args.plot and not report.can_plot():
        _fail("--plot needs matplotlib: python -m pip install 'hintpool[bench]'")
        return 1
    settings = _settings(args)
    for note in _bench_contenders.skip_notes():
        print(note, file=sys.stderr)
    started = time.monotonic()
    try:
        found = _bench_contenders.contenders()
        document = _run_all(settings, found, quiet=args.json)
    except LocalServerError as exc:
        _fail(f"cannot start the benchmark server: {exc}")
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    document["config"]["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        report.print_table(document)
    if args.plot:
        try:
            report.plot(document, args.plot)
        except OSError as exc:
            _fail(f"cannot write {args.plot}: {exc.strerror or exc}")
            return 1
        if not args.json:
            print(f"Plot written to {args.plot}")
    return 0


def _fail(message: str) -> None:
    print(f"hintpool bench: {message}", file=sys.stderr)


def _run_all(
    settings: dict[str, Any], found: list[Contender], quiet: bool
) -> dict[str, Any]:
    chosen = [
        w for w in workloads(settings["origins"]) if w.key in settings["workloads"]
    ]
    origins = max((w.origins for w in chosen), default=1)
    env.raise_fd_limit(2 * origins + 1000)
    document: dict[str, Any] = {
        "config": settings,
        "machine": env.machine(),
        "skipped": _bench_contenders.missing(),
        "wire_keyword": _bench_contenders.supports_wire(),
        "workloads": [],
        "race": None,
        "proxy_race": None,
        "crawler": None,
        "api_client": None,
        "http2": None,
    }
    if chosen:
        with start_bench_server(loopback_hosts(origins), settings["server"]) as server:
            document["config"]["server"] = server.kind
            document["config"]["server_addresses"] = len(server.addresses)
            runs = _rounds(chosen, found, server.urls(), settings, quiet)
        document["workloads"] = [_report(w, found, runs) for w in chosen]
    document["workloads"] += _run_proxied(settings, found, quiet)
    race = settings["race_seconds"]
    if RACE in settings["workloads"] and race > 0:
        from ._bench_race import run_race

        with env.status(f"race workload ({race} s)", quiet):
            document["race"] = {
                "seconds": race,
                "results": run_race(
                    [c for c in found if c.in_race], race, settings["seed"]
                ),
            }
    if PROXY_RACE in settings["workloads"] and race > 0:
        document["proxy_race"] = _run_proxy_race(settings, found, quiet)
    _run_extra(settings, document, quiet)
    return document


def _run_extra(settings: dict[str, Any], document: dict[str, Any], quiet: bool) -> None:
    """The crawler and api-client workloads: their own servers and contenders."""
    aiohttp = "aiohttp" not in _bench_contenders.missing()
    if CRAWLER in settings["workloads"]:
        from ._bench_crawler import run_crawler

        seconds = settings["crawler_seconds"]
        hosts = loopback_hosts(CRAWLER_ORIGINS)
        env.raise_fd_limit(2 * CRAWLER_ORIGINS + 1000)
        status = env.status(f"crawler workload (2 x {seconds:g} s per client)", quiet)
        with status, start_bench_server(hosts, settings["server"]) as server:
            document["crawler"] = run_crawler(server.urls(), seconds, aiohttp)
            document["crawler"]["server"] = server.kind
    if API_CLIENT in settings["workloads"]:
        from ._bench_api import run_api_client

        seconds = settings["api_seconds"]
        with env.status(f"api-client workload ({seconds:g} s per client)", quiet):
            document["api_client"] = run_api_client(seconds, aiohttp)
    if HTTP2 in settings["workloads"]:
        from ._bench_h2 import run_http2

        requests, rounds = settings["requests"], settings["rounds"]
        with env.status(f"http2 workload ({rounds} rounds)", quiet):
            document["http2"] = run_http2(requests, rounds)
        if "skipped" in document["http2"]:
            print(
                f"http2 workload skipped: {document['http2']['skipped']}",
                file=sys.stderr,
            )


def _run_proxy_race(
    settings: dict[str, Any], found: list[Contender], quiet: bool
) -> dict[str, Any] | None:
    from ._bench_proxy_race import race_entry

    seconds = settings["race_seconds"]
    have_aiohttp = any(c.name == AIOHTTP for c in found)
    with env.status(f"race through squid ({seconds} s)", quiet):
        return race_entry(seconds, settings["seed"], have_aiohttp)


def _run_proxied(
    settings: dict[str, Any], found: list[Contender], quiet: bool
) -> list[dict[str, Any]]:
    """The workloads through squid (see :mod:`._bench_proxy`), if chosen."""
    from ._bench_proxy import proxied, proxy_workloads

    chosen = [w for w in proxy_workloads() if w.key in settings["workloads"]]
    if not chosen:
        return []
    have_aiohttp = any(c.name == AIOHTTP for c in found)
    with proxied(settings["server"], have_aiohttp) as ready:
        if ready is None:
            return []
        contenders, urls = ready
        runs: dict[tuple[str, str], list[Run]] = {}
        for workload in chosen:
            runs.update(
                _rounds([workload], contenders, urls[workload.key], settings, quiet)
            )
    return [_report(w, contenders, runs) for w in chosen]


def _rounds(
    chosen: list[Workload],
    found: list[Contender],
    urls: list[str],
    settings: dict[str, Any],
    quiet: bool,
) -> dict[tuple[str, str], list[Run]]:
    runs: dict[tuple[str, str], list[Run]] = {}
    plan = [(w, c) for w in chosen for c in found if c.mode == w.mode]
    with env.progress(len(plan) * settings["rounds"], quiet) as advance:
        for round_number in range(settings["rounds"]):
            for workload in chosen:
                mine = [c for c in found if c.mode == workload.mode]
                shift = round_number % max(1, len(mine))
                for contender in mine[shift:] + mine[:shift]:
                    advance(f"{workload.key}: {contender.name}")
                    run = measure(
                        contender,
                        workload,
                        urls[: workload.origins],
                        settings["requests"],
                        settings["max_seconds_per_run"],
                    )
                    runs.setdefault((workload.key, contender.name), []).append(run)
    return runs


def _report(
    workload: Workload,
    found: list[Contender],
    runs: dict[tuple[str, str], list[Run]],
) -> dict[str, Any]:
    sync = workload.mode == "sync"
    baseline = HTTPX_DEFAULT_SYNC if sync else HTTPX_DEFAULT_ASYNC
    peer = URLLIB3 if sync else AIOHTTP
    results = {
        c.name: summary(runs[workload.key, c.name])
        for c in found
        if (workload.key, c.name) in runs
    }
    add_ratios(results, {"httpx_default": baseline, peer: peer})
    add_cpu_ratios(results, peer)
    return {
        "key": workload.key,
        "title": workload.title,
        "mode": workload.mode,
        "concurrency": workload.concurrency,
        "origins": workload.origins,
        "baseline": baseline,
        "peer": peer,
        "results": results,
    }
