"""Probe real servers and write docs/servers.md (the Keep-Alive behaviour table).

    python scripts/server_table.py            # regenerate docs/servers.md
    python scripts/server_table.py --check    # fail if it no longer matches
    python scripts/server_table.py --stdout   # print, write nothing
    python scripts/server_table.py --spread 100  # time 100 idle closes each

Servers are started by the interop suite's own code (tests/interop/servers),
all at once in threads, each on 127.0.0.1: one started with a 2 s idle
timeout and a per-connection limit of 3 (where the server has one), one with
its default config. Raw-socket probes record what each sends and when it
really closes an idle connection (``server_table_h2.py`` does the HTTP/2
section the same way, after the rest); the proxies (squid, tinyproxy, microsocks,
Dante) are probed at the same time by ``proxy_table.py``. ``--check``
compares behaviour exactly and times within a tolerance (they jitter); a
different server version is only reported. A missing server fails the run
when HINTPOOL_REQUIRE_SERVERS=1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import proxy_table  # noqa: E402 - next to this script
import server_table_h2  # noqa: E402 - next to this script
from server_table_check import compare  # noqa: E402 - next to this script

from tests.interop.servers import (  # noqa: E402 - after the path set-up
    KINDS,
    RunningServer,
    ServerSpec,
    ServerUnavailable,
    server_version,
    start_server,
)
from tests.interop.servers.probe import (  # noqa: E402
    ProbeConnection,
    measure_idle_close,
)

DOC = ROOT / "docs" / "servers.md"
TIMEOUT = 2.0
#: A sub-second part, to see how servers round what they announce.
FRACTIONAL = 1.5
LIMIT = 3
#: Idle closes are timed up to this long; nginx's 75 s default is not.
BOUND = 8.0
REPEATS = 3
#: ``--spread``: idle timeout and concurrent probes per server.
SPREAD_TIMEOUT = 1.0
SPREAD_PARALLEL = 10
#: What ``--spread 100`` measured (seconds from the arrival of the response's
#: last byte to the server's close, timeout 1 s; Node's is 2 s, a second
#: late): earliest, median, latest over 100 closes per server, 10 probes at a
#: time, with ``stress-ng --cpu 2``, a CI run and other jobs loading both cores
#: (load average 6).
#: Written into the page, not re-measured by ``--check``.
SPREAD = {
    "apache": (1.0001, 1.0023, 1.0340),
    "nginx": (0.9993, 1.0030, 1.0240),
    "node": (1.9996, 2.0029, 2.0328),
    "uvicorn": (0.9994, 1.0027, 1.0327),
    "hypercorn": (1.0006, 1.0044, 1.0231),
    "gunicorn": (1.0018, 1.0131, 1.0355),
}
SPREAD_RUNS = 100
NAMES = {
    "apache": "Apache httpd",
    "nginx": "nginx",
    "node": "Node.js http",
    "uvicorn": "uvicorn",
    "hypercorn": "Hypercorn",
    "gunicorn": "gunicorn (gthread)",
}
#: Documented defaults, for servers that do not announce theirs.
DEFAULT_TIMEOUTS = {
    "nginx": "75 s",
    "uvicorn": "5 s",
    "hypercorn": "5 s",
    "gunicorn": "2 s",
}
HEADER = [
    "server",
    "version",
    "`Keep-Alive` sent",
    f"with a limit of {LIMIT} requests",
    f"`timeout={TIMEOUT:g}` configured: closes idle after",
    "default config: idle timeout / closes after",
    f"`{FRACTIONAL:g} s` configured: announced / closes after",
]


@dataclass
class Report:
    kind: str
    version: str
    when: str
    limit: str
    configured_close: str
    default_close: str
    fractional: str

    def cells(self) -> list[str]:
        return [
            NAMES[self.kind],
            self.version,
            self.when,
            self.limit,
            self.configured_close,
            self.default_close,
            self.fractional,
        ]


def _seconds(value: float | None) -> str:
    return f"still open after {BOUND:g} s" if value is None else f"{value:.1f} s"


def _median_close(spec: ServerSpec) -> tuple[str | None, str]:
    with start_server(spec) as server, ThreadPoolExecutor(REPEATS) as pool:
        results = list(
            pool.map(
                lambda _: measure_idle_close(server.host, server.port, BOUND),
                range(REPEATS),
            )
        )
    header = results[0][0].keep_alive_header
    times = [t for _, t in results]
    if any(t is None for t in times):
        return header, _seconds(None)
    return header, _seconds(statistics.median(t for t in times if t is not None))


def _when(kind: str, spec: ServerSpec) -> str:
    with start_server(spec) as server:
        # Fresh connections: the first response's header is the one shown.
        with ProbeConnection(server.host, server.port) as conn:
            unasked = conn.request("/table/plain", keep_alive=False)
        with ProbeConnection(server.host, server.port) as conn:
            asked = conn.request("/table/asked")
    if asked.keep_alive_header is None:
        return "never"
    if unasked.keep_alive_header is None:
        return (
            f"`{asked.keep_alive_header}`, only to requests with "
            "`Connection: keep-alive`"
        )
    extra = " with `keepalive_timeout T T;`" if kind == "nginx" else ""
    return f"`{asked.keep_alive_header}` on every HTTP/1.1 response{extra}"


def _limit(spec: ServerSpec) -> str:
    if spec.max_requests is None:
        return "no per-connection limit"
    with start_server(spec) as server:
        return _count_down(server)


def _count_down(server: RunningServer) -> str:
    """The ``max`` values on one connection until the server closes it."""
    seen = []
    with ProbeConnection(server.host, server.port) as conn:
        for index in range(LIMIT + 3):
            exchange = conn.request(f"/table/limit/{index}")
            if exchange.connection_header == "close":
                maxes = [h for h in seen if h is not None]
                sent = ", ".join(f"`max={m}`" for m in maxes) or "no `max`"
                return f"{sent}, then `Connection: close` on request {index + 1}"
            hint = exchange.hint
            seen.append(None if hint is None else hint.max)
    return f"no close after {LIMIT + 3} requests"


def _configured(kind: str) -> ServerSpec:
    limit = LIMIT if kind in ("apache", "nginx", "node") else None
    return ServerSpec(kind, idle_timeout=TIMEOUT, max_requests=limit)  # type: ignore[arg-type]


def probe(kind: str) -> Report:
    version = server_version(kind)  # type: ignore[arg-type]
    configured = _configured(kind)
    when = _when(kind, configured)
    limit = _limit(configured)
    _, configured_close = _median_close(configured)
    default_spec = ServerSpec(kind, idle_timeout=None, hint=False)  # type: ignore[arg-type]
    default_header, default_close = _median_close(default_spec)
    if kind == "nginx" and default_header is None:
        when += "; none by default"
    advertised = (
        f"`{default_header}`" if default_header else DEFAULT_TIMEOUTS.get(kind, "?")
    )
    fractional = "whole seconds only"
    if kind in ("apache", "nginx", "node"):
        spec = ServerSpec(kind, idle_timeout=FRACTIONAL)  # type: ignore[arg-type]
        header, close = _median_close(spec)
        fractional = f"`{header}` / {close}"
    return Report(
        kind,
        version,
        when,
        limit,
        configured_close,
        f"{advertised} / {default_close}",
        fractional,
    )


def spread(kind: str, runs: int) -> tuple[float, float, float]:
    """Earliest, median and latest of ``runs`` idle closes."""
    spec = ServerSpec(kind, idle_timeout=SPREAD_TIMEOUT)  # type: ignore[arg-type]
    bound = SPREAD_TIMEOUT + 3
    with start_server(spec) as server, ThreadPoolExecutor(SPREAD_PARALLEL) as pool:
        times = list(
            pool.map(
                lambda _: measure_idle_close(server.host, server.port, bound)[1],
                range(runs),
            )
        )
    closed = sorted(t for t in times if t is not None)
    if len(closed) < runs:
        raise RuntimeError(f"{kind}: {runs - len(closed)} connections never closed")
    return closed[0], statistics.median(closed), closed[-1]


def _spread_lines() -> list[str]:
    figures = [
        f"* {NAMES[kind]}: {low:.4f} / {mid:.4f} / {high:.4f} s"
        for kind, (low, mid, high) in SPREAD.items()
    ]
    return [
        "## How early, how late",
        "",
        f"`python scripts/server_table.py --spread {SPREAD_RUNS}` times",
        f"{SPREAD_RUNS} idle closes per server configured with a",
        f"{SPREAD_TIMEOUT:g} s timeout, {SPREAD_PARALLEL} connections at a time,",
        "from the kernel's arrival timestamp of the response's last byte",
        "(`SO_TIMESTAMPNS`) to the close seen by the probe. On a 2-core",
        "machine kept busy (`stress-ng --cpu 2`, a CI run and other jobs:",
        "load average 6), earliest / median / latest:",
        "",
        *figures,
        "",
        "What it shows:",
        "",
        "* **nginx can close early, by about a millisecond.** Its timers run",
        "  on a cached millisecond clock (`ngx_current_msec`, read once per",
        "  event-loop pass and truncated to whole milliseconds), so the idle",
        "  timer starts from a slightly stale time. uvicorn closed as early.",
        "  A server preempted between reading a request and arming its timer",
        "  would close early by as long as it was off the CPU: the interop",
        "  suite allows 50 ms (`tests/interop/test_close_time.py`).",
        "* Measured from when the client *read* the response instead, the",
        '  same loaded machine showed closes 20-80 ms "early" for nginx and',
        "  Apache alike: the client's own scheduling delay. hintpool counts",
        "  the idle deadline from the last byte it read, so both delays fall",
        "  inside `keepalive_margin`; its 1 s default covers them many times",
        "  over.",
        "",
    ]


def render(
    reports: list[Report],
    proxies: list[proxy_table.ProxyReport],
    h2_reports: list[server_table_h2.H2Report],
) -> str:
    lines = [
        "# Real servers and the `Keep-Alive` header",
        "",
        "<!-- Generated by scripts/server_table.py: do not edit by hand. -->",
        "",
        "Measured on loopback by `python scripts/server_table.py`, which starts",
        "each server with the interop suite's fixtures code",
        "(`tests/interop/servers/`) and probes it over a raw socket: the",
        "headers of responses to requests with and without",
        "`Connection: keep-alive`, the headers on one connection until the",
        "server closes it, and the time from the end of a response until the",
        f"server closes the idle connection (median of {REPEATS}; times above",
        f"{BOUND:g} s are not waited for). The last column is configured as",
        f"`KeepAliveTimeout {FRACTIONAL * 1000:g}ms`, `keepalive_timeout "
        f"{FRACTIONAL * 1000:g}ms {int(FRACTIONAL)}s;`",
        "(nginx's header parameter takes whole seconds) and",
        f"`server.keepAliveTimeout = {FRACTIONAL * 1000:g}`: all three round the",
        "announced timeout down, so what they announce is never late.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in reports]
    lines += [
        "",
        "What hintpool makes of it:",
        "",
        "* **Apache** counts `max` down and answers the request after `max=1`",
        "  with `Connection: close`: hintpool serves exactly as many requests",
        "  per connection as Apache allows (`MaxKeepAliveRequests` + 1). It",
        "  only announces anything because hintpool sends",
        "  `Connection: keep-alive`.",
        "* **nginx** announces the timeout only when configured with",
        "  `keepalive_timeout T T;`, never `max`; `keepalive_requests` ends a",
        "  connection with `Connection: close`. Without the hint hintpool falls",
        "  back to `keepalive_expiry` (75 s of nginx default is longer than",
        "  httpx's 5 s, so that is safe).",
        "* **Node.js** repeats `max=maxRequestsPerSocket` unchanged and ends",
        "  the connection with `Connection: close`; it closes idle",
        "  connections about a second after the `timeout` it announces, so",
        "  the margin is slack rather than protection.",
        "* **uvicorn, Hypercorn, gunicorn** announce nothing: hintpool uses",
        "  `keepalive_expiry` (5 s by default), which is *longer* than",
        "  gunicorn's 2 s default. Set `keepalive_expiry` below the server's",
        "  timeout, or rely on the stale check that catches the server's close",
        "  before a request is written.",
        "",
        *_spread_lines(),
        *server_table_h2.render_h2(h2_reports),
        *proxy_table.render(proxies),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare, write nothing")
    mode.add_argument("--stdout", action="store_true", help="print, write nothing")
    mode.add_argument(
        "--spread", type=int, metavar="N", help="time N idle closes per server"
    )
    args = parser.parse_args(argv)
    if args.spread:
        for kind in KINDS:
            low, mid, high = spread(kind, args.spread)
            print(f'    "{kind}": ({low:.4f}, {mid:.4f}, {high:.4f}),', flush=True)
        return 0
    require = os.environ.get("HINTPOOL_REQUIRE_SERVERS") == "1"
    reports: list[Report] = []
    proxies: list[proxy_table.ProxyReport] = []
    missing = False
    with ThreadPoolExecutor(len(KINDS) + 1) as pool:
        futures = {kind: pool.submit(probe, kind) for kind in KINDS}
        proxy_future = pool.submit(proxy_table.main_probe)
        for kind, future in futures.items():
            try:
                reports.append(future.result())
            except ServerUnavailable as exc:
                print(f"{kind}: {exc}", file=sys.stderr)
                missing = True
        try:
            proxies = proxy_future.result()
        except ServerUnavailable as exc:
            print(f"proxies: {exc}", file=sys.stderr)
            missing = True
    # After the others, not beside them: their load made the idle closes
    # these time look a few hundred milliseconds late.
    h2_reports: list[server_table_h2.H2Report] = []
    try:
        h2_reports = server_table_h2.probe_all()
    except ServerUnavailable as exc:
        print(f"HTTP/2: {exc}", file=sys.stderr)
        missing = True
    if missing:
        print("some servers are missing: table not written", file=sys.stderr)
        return 0 if not (args.check or require) else 1
    text = render(reports, proxies, h2_reports)
    if args.stdout:
        print(text)
        return 0
    if args.check:
        problems = compare(DOC.read_text() if DOC.exists() else "", text, HEADER)
        for problem in problems:
            print(f"docs/servers.md is stale: {problem}", file=sys.stderr)
        if problems:
            print("regenerate with: python scripts/server_table.py", file=sys.stderr)
        return 1 if problems else 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
