"""The proxies' rows of docs/servers.md (imported by server_table.py).

Each proxy is started with the interop suite's fixtures code
(tests/interop/servers/proxies.py): with a 2 s client idle timeout, with its
default config, and with 1 s for hintpool's learning check (a pool makes a
request, idles 3.5 s, makes another). Apache origins, plain and TLS,
announce ``timeout=5, max=3``; raw
socket probes send keep-alive requests through the proxy, forward
(absolute-form, HTTP proxies only) and through a tunnel (CONNECT or SOCKS5),
and time when the proxy closes the idle client connection. Closes are timed
from several probes started a fraction of a second apart, since squid's
timer counts whole seconds: the table gives the window they all fell in.
"""

from __future__ import annotations

import ssl
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import trustme

import hintpool
from tests.interop.servers import RunningServer, ServerSpec, start_server
from tests.interop.servers.probe import Exchange, ProbeConnection
from tests.interop.servers.proxies import (
    PROXY_KINDS,
    ProxySpec,
    RunningProxy,
    proxy_version,
    start_proxy,
)
from tests.interop.servers.proxy_probe import absolute_url, forward, tunnel
from tests.interop.servers.tls import client_context, write_tls_files

__all__ = ["HEADER", "ProxyReport", "origin_spec", "probe_proxy", "render"]

PROXY_TIMEOUT = 2.0
ORIGIN_TIMEOUT = 5.0
ORIGIN_MAX = 3
#: Idle closes are timed up to this long (squid's default is 2 minutes).
BOUND = 6.5
#: Probes per close measurement, started STAGGER seconds apart.
PROBES = 8
STAGGER = 0.125
#: The learning check: a proxy closing idle connections after 1 s, a first
#: request, this long idle (inside the origin's announced 5 s), a second.
LEARN_PROXY_TIMEOUT = 1.0
#: Closes within this many seconds of each other are one figure (their
#: median); wider ones are described by the window they fell in:
#: from EARLY before the configured timeout to LATE after it.
TIGHT = 0.3
EARLY = 1.0
LATE = 2.0
LEARN_IDLE = 3.5
NAMES = {
    "squid": "squid",
    "tinyproxy": "tinyproxy",
    "microsocks": "microsocks (SOCKS5)",
    "dante": "Dante (SOCKS5)",
}
SETTING = {
    "squid": "`client_idle_pconn_timeout`",
    "tinyproxy": "`Timeout`",
    "microsocks": "none",
    "dante": "`timeout.io`",
}
HEADER = [
    "proxy",
    "version",
    "idle timeout setting",
    "forward: what the client gets",
    f"forward, `{PROXY_TIMEOUT:g} s` configured: closes idle after",
    "forward, default config: closes idle after",
    "tunnel: the origin's hint",
    f"tunnel, `{PROXY_TIMEOUT:g} s` configured: closes idle after",
    "hintpool learns the proxy's timeout",
]


@dataclass
class ProxyReport:
    kind: str
    version: str
    forward_headers: str
    forward_close: str
    forward_default: str
    tunnel_hint: str
    tunnel_close: str
    learns: str

    def cells(self) -> list[str]:
        return [
            NAMES[self.kind],
            self.version,
            SETTING[self.kind],
            self.forward_headers,
            self.forward_close,
            self.forward_default,
            self.tunnel_hint,
            self.tunnel_close,
            self.learns,
        ]


def origin_spec() -> ServerSpec:
    return ServerSpec("apache", idle_timeout=ORIGIN_TIMEOUT, max_requests=ORIGIN_MAX)


@dataclass
class Origins:
    plain: RunningServer
    tls: RunningServer
    client_tls: ssl.SSLContext


def probe_proxy(kind: str, origins: Origins) -> ProxyReport:
    origin = origins.plain
    version = proxy_version(kind)  # type: ignore[arg-type]
    http = kind in ("squid", "tinyproxy")
    configured = ProxySpec(kind, idle_timeout=PROXY_TIMEOUT)  # type: ignore[arg-type]
    default = ProxySpec(kind, idle_timeout=None)  # type: ignore[arg-type]
    with start_proxy(configured) as proxy, ThreadPoolExecutor(4) as pool:
        # The close timings wait; run them side by side.
        tunnel_close = pool.submit(_closes, proxy, origin, "tunnel")
        forward_close = pool.submit(_closes, proxy, origin, "forward") if http else None
        forward_default = pool.submit(_default_close, default, origin) if http else None
        learns = pool.submit(_learns, kind, origins)
        headers = _forward_headers(proxy, origin) if http else "(tunnels only)"
        hint = _tunnel_hint(proxy, origin)
        return ProxyReport(
            kind,
            version,
            headers,
            forward_close.result() if forward_close else "-",
            forward_default.result() if forward_default else "-",
            hint,
            tunnel_close.result(),
            learns.result(),
        )


def _learns(kind: str, origins: Origins) -> str:
    """Whether hintpool's pool learns an idle timeout from the proxy's
    closes: forwarded (HTTP proxies) and in a tunnel (to the TLS origin
    through HTTP proxies, the plain one through SOCKS)."""
    spec = ProxySpec(kind, idle_timeout=LEARN_PROXY_TIMEOUT)  # type: ignore[arg-type]
    http = kind in ("squid", "tinyproxy")
    parts = []
    with start_proxy(spec) as proxy:
        if http:
            parts.append("forward: " + _learn_once(proxy, origins.plain, origins))
        target = origins.tls if http else origins.plain
        parts.append("tunnel: " + _learn_once(proxy, target, origins))
    return "; ".join(parts)


def _learn_once(proxy: RunningProxy, target: RunningServer, origins: Origins) -> str:
    # The margin well below the proxy's 1 s: with the default 1 s, a close
    # at 0.99 s of idle is "younger than the margin", taken for a reload,
    # and taught only on the second (squid's first close lands either side).
    with hintpool.ConnectionPool(
        proxy=proxy.url, ssl_context=origins.client_tls, keepalive_margin=0.25
    ) as pool:
        tunnelled = proxy.spec.scheme == "socks5" or target.url.startswith("https")
        key = target.url if tunnelled else proxy.url
        pool.request("GET", f"{target.url}/table/learn/1")
        time.sleep(LEARN_IDLE)
        pool.request("GET", f"{target.url}/table/learn/2")
        entry = pool.statistics().origins[key]
        if entry.learned_timeout is not None:
            return "yes"
        if not entry.closed_by_server:
            return "no close to learn from"
        # A close at once teaches only when a later connection's confirms
        # it (a single one could be a reload): one more round.
        time.sleep(LEARN_IDLE)
        pool.request("GET", f"{target.url}/table/learn/3")
        entry = pool.statistics().origins[key]
    if entry.learned_timeout is not None:
        return "yes, from its second close"
    return "no, the origin's hint counts"


def _default_close(spec: ProxySpec, origin: RunningServer) -> str:
    with start_proxy(spec) as proxy:
        return _span([_one_close(proxy, origin, "forward", 0.0)])


def _open(proxy: RunningProxy, origin: RunningServer, how: str) -> ProbeConnection:
    if how == "forward":
        return forward(proxy, origin.host, origin.port)
    return tunnel(proxy, origin.host, origin.port)


def _target(origin: RunningServer, how: str, path: str) -> str:
    if how == "forward":
        return absolute_url(origin.host, origin.port, path)
    return path


def _forward_headers(proxy: RunningProxy, origin: RunningServer) -> str:
    with _open(proxy, origin, "forward") as conn:
        first = conn.request(_target(origin, "forward", "/table/proxy/0"))
        try:
            conn.request(_target(origin, "forward", "/table/proxy/1"))
            second = "serves a 2nd request"
        except Exception:  # h11 or the socket: the proxy closed
            second = "closes after each response"
    return f"{_describe(first)}; {second}"


def _describe(exchange: Exchange) -> str:
    hint = exchange.keep_alive_header
    sent = f"`Keep-Alive: {hint}`" if hint else "no `Keep-Alive`"
    connection = exchange.connection_header
    return f"{sent}, " + (
        f"`Connection: {connection}`" if connection else "no `Connection`"
    )


def _tunnel_hint(proxy: RunningProxy, origin: RunningServer) -> str:
    with _open(proxy, origin, "tunnel") as conn:
        hint = conn.request("/table/proxy/tunnel").keep_alive_header
    expected = f"timeout={ORIGIN_TIMEOUT:g}, max={ORIGIN_MAX}"
    if hint == expected:
        return f"`{hint}`, untouched"
    return f"`{hint}`" if hint else "none"


def _one_close(
    proxy: RunningProxy, origin: RunningServer, how: str, delay: float
) -> float | None:
    time.sleep(delay)
    with _open(proxy, origin, how) as conn:
        conn.request(_target(origin, how, "/table/proxy/idle"))
        return conn.wait_for_close(BOUND)


def _closes(proxy: RunningProxy, origin: RunningServer, how: str) -> str:
    with ThreadPoolExecutor(PROBES) as pool:
        times = list(
            pool.map(
                lambda k: _one_close(proxy, origin, how, k * STAGGER), range(PROBES)
            )
        )
    return _span(times)


def _span(times: list[float | None]) -> str:
    """What the closes have in common, in words that stay the same from run
    to run: squid's and Dante's closes scatter over seconds, and the
    earliest and latest of a few probes move by more than a second."""
    if any(t is None for t in times):
        return f"still open after {BOUND:g} s"
    closed = sorted(t for t in times if t is not None)
    low, high = closed[0], closed[-1]
    if high < 0.5:
        return "at once"
    if high - low < TIGHT:
        return f"{statistics.median(closed):.1f} s"
    early, late = PROXY_TIMEOUT - EARLY, PROXY_TIMEOUT + LATE
    if early <= low and high <= late:
        return f"scattered between {early:g} s and {late:g} s"
    return f"scattered from {low:.1f} s to {high:.1f} s"


def probe_all(origins: Origins) -> list[ProxyReport]:
    with ThreadPoolExecutor(len(PROXY_KINDS)) as pool:
        return list(pool.map(lambda kind: probe_proxy(kind, origins), PROXY_KINDS))


def render(reports: list[ProxyReport]) -> list[str]:
    lines = [
        "## Proxies",
        "",
        "Measured by the same script through each proxy, with an Apache origin",
        f"announcing `timeout={ORIGIN_TIMEOUT:g}, max={ORIGIN_MAX}`: forward",
        "requests (an `http://` target sent in absolute form to an HTTP proxy)",
        "and requests inside a tunnel (CONNECT, or SOCKS5 for the SOCKS",
        f"servers). Closes are timed over {PROBES} probes started",
        f"{STAGGER:g} s apart: one figure where they agree, else the window",
        "they all fell in. The",
        "last column runs hintpool's pool through the proxy set to close idle",
        f"connections after {LEARN_PROXY_TIMEOUT:g} s: a request, "
        f"{LEARN_IDLE:g} s idle, another",
        "request (and, when that close came too soon after the response to",
        "teach alone, one more idle gap and request); does the pool come out",
        "with a learned timeout?",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in reports]
    lines += ["", *PROSE]
    return lines


PROSE = [
    "What it means for a client:",
    "",
    "* **squid** strips the origin's `Keep-Alive` (it is hop-by-hop) and",
    "  announces nothing of its own: towards squid, a pool has only",
    "  `keepalive_expiry` and what it learns from squid's closes. Its idle",
    "  timer is coarse: it closes an idle client connection anywhere from a",
    "  second *before* `client_idle_pconn_timeout` to nearly two seconds",
    "  after it (Dante's `timeout.io` scatters alike). Its default (2",
    "  minutes) outlasts httpx's 5 s expiry. A timeout learned from one",
    "  close can be a second too long for the next: the stale check and the",
    "  retry rule save GETs, but for POSTs set `keepalive_expiry` and",
    "  `max_keepalive_timeout` below `client_idle_pconn_timeout` minus 1 s.",
    "* **tinyproxy** does not keep client connections alive: it answers an",
    "  HTTP/1.1 request without `Connection: close` and then closes. A",
    "  client that believes the connection reusable meets the close on its",
    "  next request (the stale check, or the retry rule, must catch it).",
    "* **hintpool** learns squid's timeout from its first idle close (the",
    "  pool watches idle connections to a proxy that sends no hint), and",
    "  learns that tinyproxy keeps nothing alive (from its second close: one",
    "  close right after a response could be a reload). In a tunnel the origin's",
    "  hint counts until the proxy closes a tunnel earlier than it: that",
    "  first early close (met by the stale check, or by a request the retry",
    "  rule saves if it is a GET) is learned, and from then on the shorter",
    "  timeout counts. Behind latency a POST can meet that first close; cap",
    "  the origins' hints below such a proxy's timeout with",
    "  `max_keepalive_timeout` to be safe from the start.",
    "* **Tunnels** pass the origin's hint through untouched, and it is the",
    "  hint that counts inside them. But tinyproxy's `Timeout` and Dante's",
    "  `timeout.io` also close an idle *tunnel*, whatever the origin",
    "  announced; squid and microsocks keep a tunnel open until the origin",
    "  closes it.",
    "",
]


def main_probe() -> list[ProxyReport]:
    """Start the origins and probe every proxy (for server_table.py)."""
    ca = trustme.CA()
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        files = write_tls_files(ca, directory)
        plain = stack.enter_context(start_server(origin_spec()))
        tls_spec = ServerSpec(
            "apache", idle_timeout=ORIGIN_TIMEOUT, max_requests=ORIGIN_MAX, tls=files
        )
        secure = stack.enter_context(start_server(tls_spec))
        return probe_all(Origins(plain, secure, client_context(ca)))


if __name__ == "__main__":  # pragma: no cover - a manual look
    for line in render(main_probe()):
        print(line)
    print(Path(__file__).name, "done")
