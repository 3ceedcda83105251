"""The HTTP/2 section of docs/servers.md (used by ``server_table.py``).

Each HTTP/2 server of the interop suite is started over TLS with a trustme
certificate and probed with the ``h2`` package on a raw socket: what ALPN
picks, its SETTINGS_MAX_CONCURRENT_STREAMS, how it ends an idle connection
(GOAWAY or a silent close, and when), what its per-connection request limit
does, and what a reload and a graceful shutdown send on an idle connection.
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.interop.servers import (
    HTTP2_KINDS,
    ServerSpec,
    TLSFiles,
    server_version,
    start_server,
)
from tests.interop.servers.probe_h2 import (
    Ending,
    measure_h2_idle_close,
    measure_h2_request_limit,
    measure_h2_shutdown,
)
from tests.interop.servers.tls import client_context, write_tls_files

__all__ = ["HEADER_H2", "H2Report", "probe_h2", "render_h2", "tls_setup"]

TIMEOUT = 2.0
LIMIT = 3
BOUND = 8.0
REPEATS = 3
NAMES = {
    "nginx": "nginx (HTTP/2)",
    "node": "Node.js http2",
    "hypercorn": "Hypercorn (HTTP/2)",
}
#: What retires the connections of a running server, and what shuts it down
#: gracefully; None: the server has no such thing.
RELOAD = {
    "nginx": ("`nginx -s reload`", signal.SIGHUP),
    "node": ("`session.close()` on every session", signal.SIGUSR2),
}
SHUTDOWN = {
    "nginx": ("`nginx -s quit`", signal.SIGQUIT),
    "node": ("`server.close()` + `session.close()`", signal.SIGINT),
    "hypercorn": ("SIGTERM", signal.SIGTERM),
}
LIMIT_KNOB = {
    "nginx": f"`keepalive_requests {LIMIT}`",
    "node": f"`session.close()` in request {LIMIT}'s handler",
    "hypercorn": f"`keep_alive_max_requests = {LIMIT}`",
}
HEADER_H2 = [
    "server",
    "version",
    "ALPN / `MAX_CONCURRENT_STREAMS`",
    f"idle timeout `{TIMEOUT:g} s` configured: ends an idle connection with",
    "default config: idle timeout / ends an idle connection with",
    f"request limit of {LIMIT}",
    "reload: idle connection gets",
    "graceful shutdown: idle connection gets",
]


@dataclass
class H2Report:
    kind: str
    version: str
    negotiated: str
    configured: str
    default: str
    limit: str
    reload: str
    shutdown: str

    def cells(self) -> list[str]:
        return [
            NAMES[self.kind],
            self.version,
            self.negotiated,
            self.configured,
            self.default,
            self.limit,
            self.reload,
            self.shutdown,
        ]


def tls_setup(directory: Path) -> tuple[TLSFiles, trustme.CA]:
    ca = trustme.CA()
    return write_tls_files(ca, directory), ca


def _ending(ending: Ending, closed: float | None = None) -> str:
    closed = ending.closed_after if closed is None else closed
    if closed is None:
        return f"still open after {BOUND:g} s"
    if ending.goaway_after is None:
        return f"no GOAWAY, close after {closed:.1f} s"
    return f"{ending.describe_goaway()}, close after {closed:.1f} s"


def _idle(spec: ServerSpec, ca: trustme.CA) -> tuple[str, str]:
    with start_server(spec) as server, ThreadPoolExecutor(REPEATS) as pool:
        results = list(
            pool.map(
                lambda _: measure_h2_idle_close(
                    server.host, server.port, client_context(ca), BOUND
                ),
                range(REPEATS),
            )
        )
    alpn, streams, ending = results[0]
    negotiated = f"`{alpn}` / {'not sent' if streams is None else streams}"
    closes = [e.closed_after for _, _, e in results]
    if any(c is None for c in closes):
        return negotiated, _ending(ending, None)
    median = statistics.median(c for c in closes if c is not None)
    return negotiated, _ending(ending, median)


def _limit(kind: str, files: TLSFiles, ca: trustme.CA) -> str:
    spec = ServerSpec(kind, tls=files, http2=True, max_requests=LIMIT)  # type: ignore[arg-type]
    with start_server(spec) as server:
        sent, ending = measure_h2_request_limit(
            server.host, server.port, client_context(ca), LIMIT + 2
        )
    answered = len(ending.answered)
    knob = LIMIT_KNOB[kind]
    if ending.goaway_after is None:
        return f"{knob}: no GOAWAY after {sent} requests"
    unanswered = sent - answered
    tail = ""
    if unanswered:
        tail = f", {unanswered} at or below it never answered"
    return (
        f"{knob}: {ending.describe_goaway()} after request {sent}, "
        f"{answered} answered{tail}"
    )


def _signalled(kind: str, files: TLSFiles, ca: trustme.CA, table: object) -> str:
    entry = table.get(kind)  # type: ignore[attr-defined]
    if entry is None:
        return "none"
    name, sig = entry
    spec = ServerSpec(kind, idle_timeout=5.0, tls=files, http2=True)  # type: ignore[arg-type]
    with start_server(spec) as server:
        ending = measure_h2_shutdown(
            server.host,
            server.port,
            client_context(ca),
            lambda: os.kill(server.process.pid, sig),
            BOUND,
        )
    # When it closes depends on how fast the server handles the signal
    # (nginx starts new workers first): only what it sends is shown.
    if ending.closed_after is None:
        return f"{name}: still open after {BOUND:g} s"
    sent = ending.describe_goaway() if ending.goaway_after is not None else "no GOAWAY"
    return f"{name}: {sent}, then close"


def probe_h2(kind: str, files: TLSFiles, ca: trustme.CA) -> H2Report:
    configured = ServerSpec(kind, idle_timeout=TIMEOUT, tls=files, http2=True)  # type: ignore[arg-type]
    default = ServerSpec(kind, idle_timeout=None, tls=files, http2=True)  # type: ignore[arg-type]
    with ThreadPoolExecutor(5) as pool:
        idle = pool.submit(_idle, configured, ca)
        idle_default = pool.submit(_idle, default, ca)
        limit = pool.submit(_limit, kind, files, ca)
        reload = pool.submit(_signalled, kind, files, ca, RELOAD)
        shutdown = pool.submit(_signalled, kind, files, ca, SHUTDOWN)
        negotiated, configured_close = idle.result()
        _, default_close = idle_default.result()
        return H2Report(
            kind,
            server_version(kind),  # type: ignore[arg-type]
            negotiated,
            configured_close,
            f"{DEFAULT_TIMEOUTS[kind]} / {default_close}",
            limit.result(),
            reload.result(),
            shutdown.result(),
        )


#: Documented defaults of the HTTP/2 idle timeout.
DEFAULT_TIMEOUTS = {
    "nginx": "75 s (`keepalive_timeout`)",
    "node": "none (`server.timeout` 0)",
    "hypercorn": "5 s (`keep_alive_timeout`)",
}


def probe_all() -> list[H2Report]:
    with tempfile.TemporaryDirectory(prefix="hintpool-h2-table-") as tmp:
        files, ca = tls_setup(Path(tmp))
        with ThreadPoolExecutor(len(HTTP2_KINDS)) as pool:
            futures = [pool.submit(probe_h2, kind, files, ca) for kind in HTTP2_KINDS]
            return [future.result() for future in futures]


def render_h2(reports: list[H2Report]) -> list[str]:
    lines = [
        "## HTTP/2",
        "",
        "HTTP/2 has no `Keep-Alive` header: a server ends a connection with a",
        "GOAWAY frame (RFC 9113 section 6.8) or just closes it. Each server",
        "is started over TLS (a trustme certificate, ALPN offering `h2` and",
        "`http/1.1`) and probed with the `h2` package on a raw socket: one",
        "request, then the time until the server closes the idle connection",
        f"(median of {REPEATS}) and whether a GOAWAY came first; requests one",
        "after another on one connection against its per-connection request",
        "limit; and what an idle connection gets when the server is reloaded",
        "or shut down gracefully.",
        "",
        "| " + " | ".join(HEADER_H2) + " |",
        "|" + "---|" * len(HEADER_H2),
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in reports]
    lines += ["", *H2_NOTES]
    return lines


#: Observed with requests in flight (timing-dependent, so not in the table
#: that ``--check`` compares): tests/interop/test_http2.py holds the pool to
#: losing none of them.
H2_NOTES = [
    "What hintpool makes of it, and what happens with requests in flight",
    "(60 streams open when the server retires the connection; timing",
    "decides the exact figures, so they are not in the table):",
    "",
    "* **nginx** sends GOAWAY `NO_ERROR` naming the last stream it will",
    "  answer, answers every stream up to it, then closes; streams above it",
    "  get no answer and are safe to send again on a new connection.",
    "  Since 1.19.7 `keepalive_timeout` and `keepalive_requests` govern",
    "  HTTP/2 connections too (`http2_idle_timeout` is gone). A reload lets",
    "  the old worker finish the streams in flight first; `nginx -s quit`",
    "  sent last-stream-id 1 with 60 streams open and answered none of",
    "  them. Its idle close is a GOAWAY and a FIN at once: a request",
    "  written in that window is above the last-stream-id and goes again.",
    "* **Node.js** `http2` has no idle timeout unless `server.setTimeout()`",
    "  is called; then it, `session.close()` and `server.close()` send",
    "  GOAWAY `NO_ERROR`, answer the streams up to its last-stream-id and",
    "  refuse later ones with RST_STREAM `REFUSED_STREAM`.",
    "* **Hypercorn** closes idle connections without a GOAWAY, as over",
    "  HTTP/1.1, so the learned timeout and the check for a closed",
    "  connection before reuse keep requests off them, and a GET that",
    "  crosses the close is sent again (a POST fails). Its",
    "  `keep_alive_max_requests` sends a GOAWAY whose last-stream-id covers",
    "  every stream it has received and then answers none of the ones in",
    "  flight; on SIGTERM it either finishes them and closes silently or",
    "  sends such a GOAWAY and resets the rest with `NO_ERROR`. Those",
    "  requests are lost to any client (they may have run), so the suite",
    "  shuts Hypercorn down between bursts, not during one.",
    "* httpx's own HTTP/2 transport (httpcore with `h2`) sends streams",
    "  above a GOAWAY's last-stream-id again, but `h2` closes its connection",
    "  state on GOAWAY and then rejects the responses to the streams below",
    "  it (`Invalid input ConnectionInputs.RECV_HEADERS in state",
    "  ConnectionState.CLOSED`), and it reuses a connection the server has",
    "  closed silently (Hypercorn's idle close) and fails that request.",
    "",
]
