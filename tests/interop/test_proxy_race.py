"""The keep-alive race through real proxies, behind ~25 ms RTT (issue #13).

The delay proxy sits between the client and the proxy: client -> 25 ms ->
proxy -> origin. Requests come in bursts after idle gaps straddling the
timeout that closes the client's connection:

* in a tunnel (CONNECT or SOCKS5) it is the origin's, announced in its
  ``Keep-Alive`` hint: hintpool never reuses a tunnel past it, so it
  needs no retry;
* forwarded through squid it is squid's ``client_idle_pconn_timeout``,
  never announced, and squid's whole-second timer closes anywhere from a
  second early to a second late; tinyproxy closes after every response;
* a tinyproxy ``Timeout`` shorter than the origin's announced timeout
  closes tunnels the hint says are alive.

hintpool must fail no request. httpx's default transport runs the same
schedule at the same time through the same proxy; its failures are
recorded (``record_property`` and stdout), never asserted.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable

import httpx
import pytest

import hintpool

from .conftest import StartProxy, StartServer
from .helpers import sync_client
from .servers import ServerSpec, TLSFiles
from .servers.proxies import ProxySpec, RunningProxy

pytestmark = pytest.mark.interop
if not hasattr(hintpool, "ProxyError"):  # until the proxy= code is merged
    pytest.skip("this hintpool has no proxy support yet", allow_module_level=True)

TIMEOUT = 1.0
MARGIN = 0.25
#: Idle gaps in units of the origin's timeout: around the reuse window
#: (TIMEOUT - MARGIN) and around the timeout itself.
GAPS = (0.72, 0.99, 1.01, 0.74, 1.0, 1.03, 0.3)
#: squid closes an idle client connection 1 to 3 s after the last response
#: with ``client_idle_pconn_timeout 2 seconds``: gaps across that span.
SQUID_GAPS = (1.2, 2.0, 2.6, 3.2, 1.6, 2.3)
BURST = 2
PROXY_TIMEOUT = 2.0


Get = Callable[[str], httpx.Response]


def run_schedule(get: Get, base: str, gaps: tuple[float, ...]) -> list[Exception]:
    failures: list[Exception] = []
    for round_index, gap in enumerate(gaps):
        time.sleep(gap * TIMEOUT)
        for index in range(BURST):
            try:
                get(f"{base}/{round_index}/{index}").raise_for_status()
            except httpx.HTTPError as exc:
                failures.append(exc)
    return failures


def race(
    proxy_url: str,
    base: str,
    gaps: tuple[float, ...],
    tls: ssl.SSLContext | None,
    record_property: Callable[[str, object], None],
    label: str,
    post: bool = False,
    **options: object,
) -> tuple[list[Exception], hintpool.PoolStatistics]:
    """Run hintpool and httpx's default side by side; hintpool's failures
    and statistics are returned, httpx's count recorded. ``post``: POSTs
    with a body, which no client may send twice."""
    baseline: list[Exception] = []

    def method(client: httpx.Client) -> Get:
        if post:
            return lambda url: client.post(url, content=b"once")
        return client.get

    def run_httpx() -> None:
        verify: ssl.SSLContext | bool = True if tls is None else tls
        with httpx.Client(proxy=proxy_url, verify=verify, timeout=10.0) as plain:
            baseline.extend(run_schedule(method(plain), f"{base}/race-httpx", gaps))

    thread = threading.Thread(target=run_httpx, name="httpx-baseline")
    thread.start()
    options.setdefault("keepalive_margin", MARGIN)
    client, transport = sync_client(tls=tls, proxy=proxy_url, **options)
    try:
        with client:
            failures = run_schedule(method(client), f"{base}/race-hintpool", gaps)
            stats = transport.statistics()
    finally:
        thread.join(timeout=60)
    requests = len(gaps) * BURST
    kinds = sorted({type(exc).__name__ for exc in baseline})
    record_property("httpx_default_failures", f"{len(baseline)}/{requests}")
    print(f"{label}: httpx default transport failed {len(baseline)}/{requests} {kinds}")
    return failures, stats


def behind_delay(
    delay_proxy_factory: Callable[..., object], proxy: RunningProxy
) -> str:
    delay = delay_proxy_factory(proxy.host, proxy.port)
    return delay.url(proxy.spec.scheme)  # type: ignore[attr-defined, no-any-return]


def origin_spec(tls: TLSFiles | None, timeout: float = TIMEOUT) -> ServerSpec:
    return ServerSpec("nginx", idle_timeout=timeout, tls=tls)


@pytest.mark.parametrize(
    ("kind", "tls"),
    [("squid", True), ("tinyproxy", True), ("microsocks", True), ("dante", False)],
    ids=["squid-connect-tls", "tinyproxy-connect-tls", "microsocks-tls", "dante"],
)
def test_no_failures_in_tunnels(
    real_servers: StartServer,
    real_proxies: StartProxy,
    delay_proxy_factory: Callable[..., object],
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    record_property: Callable[[str, object], None],
    kind: str,
    tls: bool,
) -> None:
    origin = real_servers(origin_spec(tls_files if tls else None))
    proxy = real_proxies(ProxySpec(kind, idle_timeout=PROXY_TIMEOUT))  # type: ignore[arg-type]
    proxy_url = behind_delay(delay_proxy_factory, proxy)
    context = tls_client_context if tls else None
    failures, stats = race(proxy_url, origin.url, GAPS, context, record_property, kind)
    assert failures == []
    per_origin = stats.origins[origin.url]
    assert per_origin.proxy == proxy_url
    assert per_origin.closed_by_server == 0
    assert per_origin.retries == 0, "0 failures without retrying"


def test_no_failures_forwarded_through_squid(
    real_servers: StartServer,
    real_proxies: StartProxy,
    delay_proxy_factory: Callable[..., object],
    record_property: Callable[[str, object], None],
) -> None:
    """squid announces nothing: hintpool has its stale check, learning and
    the retry rule (GETs). Its figures are printed for the docs."""
    origin = real_servers(origin_spec(None))
    proxy = real_proxies(ProxySpec("squid", idle_timeout=PROXY_TIMEOUT))
    proxy_url = behind_delay(delay_proxy_factory, proxy)
    failures, stats = race(
        proxy_url, origin.url, SQUID_GAPS, None, record_property, "squid forward"
    )
    assert failures == []
    through = stats.proxies[proxy_url]
    assert through.last_hint is None
    print(
        f"squid forward, hintpool: {through.forward_connections_opened} connections,"
        f" retries {stats.origins[proxy_url].retries},"
        f" closed by squid {stats.origins[proxy_url].closed_by_server},"
        f" learned timeout {through.learned_timeout}"
    )


def test_no_failures_forwarded_through_tinyproxy(
    real_servers: StartServer,
    real_proxies: StartProxy,
    delay_proxy_factory: Callable[..., object],
    record_property: Callable[[str, object], None],
) -> None:
    origin = real_servers(origin_spec(None))
    proxy = real_proxies(ProxySpec("tinyproxy", idle_timeout=PROXY_TIMEOUT))
    proxy_url = behind_delay(delay_proxy_factory, proxy)
    failures, stats = race(
        proxy_url, origin.url, GAPS, None, record_property, "tinyproxy forward"
    )
    assert failures == []
    # A stale retry (a GET that met tinyproxy's close before its FIN came
    # back through the delay proxy) reaches the proxy twice.
    assert stats.proxies[proxy_url].requests == len(GAPS) * BURST + stats.retries


def test_no_failures_when_the_proxy_closes_tunnels_first(
    real_servers: StartServer,
    real_proxies: StartProxy,
    delay_proxy_factory: Callable[..., object],
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    record_property: Callable[[str, object], None],
) -> None:
    """The origin announces 5 s, tinyproxy closes idle tunnels after 1 s."""
    origin = real_servers(origin_spec(tls_files, timeout=5.0))
    proxy = real_proxies(ProxySpec("tinyproxy", idle_timeout=TIMEOUT))
    proxy_url = behind_delay(delay_proxy_factory, proxy)
    failures, stats = race(
        proxy_url,
        origin.url,
        GAPS,
        tls_client_context,
        record_property,
        "tinyproxy tunnel shorter than the origin",
    )
    assert failures == []
    per_origin = stats.origins[origin.url]
    print(
        f"tinyproxy tunnel, hintpool: {per_origin.connections_opened} tunnels,"
        f" retries {per_origin.retries}, closed {per_origin.closed_by_server},"
        f" learned timeout {per_origin.learned_timeout}"
    )


def test_no_failed_posts_when_hints_are_capped_below_the_proxy(
    real_servers: StartServer,
    real_proxies: StartProxy,
    delay_proxy_factory: Callable[..., object],
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    record_property: Callable[[str, object], None],
) -> None:
    """As above, with POSTs (never retried): ``max_keepalive_timeout`` at
    tinyproxy's 1 s keeps every tunnel inside the proxy's timeout."""
    origin = real_servers(origin_spec(tls_files, timeout=5.0))
    proxy = real_proxies(ProxySpec("tinyproxy", idle_timeout=TIMEOUT))
    proxy_url = behind_delay(delay_proxy_factory, proxy)
    failures, stats = race(
        proxy_url,
        origin.url,
        GAPS,
        tls_client_context,
        record_property,
        "tinyproxy tunnel, POSTs",
        post=True,
        max_keepalive_timeout=TIMEOUT,
    )
    assert failures == []
    per_origin = stats.origins[origin.url]
    assert (per_origin.closed_by_server, per_origin.retries) == (0, 0)


def test_no_failed_posts_through_squid_with_expiry_below_its_earliest_close(
    real_servers: StartServer,
    real_proxies: StartProxy,
    delay_proxy_factory: Callable[..., object],
    record_property: Callable[[str, object], None],
) -> None:
    """POSTs are never retried, and squid's scattered closes make a learned
    timeout unsafe for them: with ``keepalive_expiry`` and
    ``max_keepalive_timeout`` below squid's earliest close (a second before
    ``client_idle_pconn_timeout``) no POST fails."""
    origin = real_servers(origin_spec(None))
    proxy = real_proxies(ProxySpec("squid", idle_timeout=PROXY_TIMEOUT))
    proxy_url = behind_delay(delay_proxy_factory, proxy)
    failures, _ = race(
        proxy_url,
        origin.url,
        SQUID_GAPS,
        None,
        record_property,
        "squid forward, POSTs",
        post=True,
        limits=httpx.Limits(keepalive_expiry=PROXY_TIMEOUT - 1.25),
        max_keepalive_timeout=PROXY_TIMEOUT - 1,
    )
    assert failures == []
    # A close may still be met at checkout (squid's timer is coarse and a
    # loaded client reads late): the stale check retires that connection
    # before a POST is written on it, which is what this test is about.
