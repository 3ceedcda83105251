"""Idle gaps straddling a real HTTP/2 server's idle timeout, behind the
25 ms RTT delay proxy: 0 failed requests with hintpool.

None of the three servers announces its HTTP/2 idle timeout; nginx and Node
end an idle connection with GOAWAY and a close at once, Hypercorn closes it
without a word (docs/servers.md). hintpool learns the timeout from the
first idle close, then retires connections before the server does.
httpx's own HTTP/2 transport runs the same schedule at the same time on its
own connection: against Hypercorn it reuses connections the server has
closed and fails a request after every gap longer than the timeout (that
count is asserted: it does not depend on scheduling); against nginx and
Node the GOAWAY's last-stream-id lets it send the request again, and its
count is only recorded.

Behind 600 ms of RTT instead, a request sent just before the close can
reach the pool is sure to cross it: after nginx's and Node's GOAWAY it is
sent again; after Hypercorn's silent close too, since it is a GET and
nothing of its response arrived: the stale-connection retry, as over
HTTP/1.1.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable

import anyio
import httpx
import pytest

from hintpool import OriginStatistics
from hintpool._origin import SEEN_OPEN_SLACK

from .conftest import StartServer
from .h2_helpers import (
    HTTP2_KINDS,
    async_h2_client,
    h2_spec,
    logged_paths,
    sync_h2_client,
)
from .helpers import unique_prefix, wait_server_close
from .servers import TLSFiles

pytestmark = pytest.mark.interop

TIMEOUT = 1.0
#: Wider than test_race.py's 0.25: the learned timeout may come out up to
#: LATE long, and the pool must still retire connections before the server
#: closes them (on HTTP/2 a request that crosses a silent close is not sent
#: again: there is no GOAWAY to say it was not processed).
MARGIN = 0.4
#: Idle gaps in units of the server's timeout: around the reuse window
#: (TIMEOUT - MARGIN) and around the timeout itself; 1.3 is past it for sure.
GAPS = (0.5, 0.56, 0.62, 0.97, 0.99, 1.0, 1.01, 1.03, 0.58, 0.98, 1.02, 1.3)
#: Gaps after which the server has closed for sure (a timer late by < 0.3 s).
SURELY_CLOSED = sum(1 for gap in GAPS if gap >= 1.3)
BURST = 2
#: How late the learned timeout may be (the sync reaper was seen 0.26 s late
#: on a 2-core machine with load average 7); below MARGIN by a 25 ms RTT.
LATE = 0.35


def run_schedule(
    get: Callable[[str], httpx.Response],
    base: str,
    catch: type[BaseException] = httpx.HTTPError,
) -> list[BaseException]:
    failures: list[BaseException] = []
    for round_index, gap in enumerate(GAPS):
        time.sleep(gap * TIMEOUT)
        for index in range(BURST):
            try:
                get(f"{base}/{round_index}/{index}").raise_for_status()
            except catch as exc:
                failures.append(exc)
    return failures


@pytest.mark.parametrize("kind", HTTP2_KINDS)
def test_no_failures_across_idle_timeout_behind_latency(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    delay_proxy_factory: Callable[..., object],
    record_property: Callable[[str, object], None],
    kind: str,
) -> None:
    server = real_servers(h2_spec(kind, tls_files, idle_timeout=TIMEOUT))
    proxy = delay_proxy_factory(server.host, server.port)
    base = proxy.url("https")  # type: ignore[attr-defined]
    mark, prefix = server.log_mark(), unique_prefix("h2race")
    baseline: list[BaseException] = []

    def run_httpx() -> None:
        with httpx.Client(http2=True, verify=tls_client_context, timeout=10.0) as plain:
            plain.get(f"{base}/h2race-httpx/first")
            # Exception: httpx lets h2's ProtocolError out unmapped at times.
            baseline.extend(
                run_schedule(plain.get, f"{base}/h2race-httpx", catch=Exception)
            )

    client, transport = sync_h2_client(tls_client_context, keepalive_margin=MARGIN)
    with client:
        started = time.monotonic()
        assert client.get(f"{base}{prefix}learn").http_version == "HTTP/2"
        answered = time.monotonic()
        learned = wait_server_close(transport, base).learned_timeout
        seen = time.monotonic()
        assert learned is not None
        # The server's idle timer starts after it answered (after `started`);
        # the pool's idle age starts before `answered`, and it saw the close
        # before `seen` (both on time.monotonic, the pool's clock). Early
        # by how late a loaded client read the response's end, and by up to
        # SEEN_OPEN_SLACK: the age learned is the one the reaper last saw
        # the connection open at.
        slack = 0.05 + SEEN_OPEN_SLACK
        assert learned >= TIMEOUT - (answered - started) - slack
        assert learned <= seen - started
        # Noticed by the reaper's poll: late by how long the loaded machine
        # kept it off the CPU. The schedule below needs it within LATE (the
        # pool's claim; polling above adds no delay of the test's own).
        assert learned <= TIMEOUT + LATE
        thread = threading.Thread(target=run_httpx, name="httpx-h2-baseline")
        thread.start()
        failures = run_schedule(client.get, f"{base}{prefix.rstrip('/')}")
        stats = transport.statistics().origins[base]
    thread.join(timeout=30)
    requests = len(GAPS) * BURST
    record_property("httpx_http2_failures", f"{len(baseline)}/{requests}")
    print(f"{kind}: httpx's HTTP/2 transport failed {len(baseline)}/{requests}")
    assert failures == []
    # Retired before the server's close: nothing needed sending again.
    assert stats.closed_by_server == 1  # only the close it learned from
    assert stats.retries == 0, "0 failures without retrying"
    assert stats.goaway_retries == 0
    paths = logged_paths(server, mark, prefix, requests + 1)
    assert len(paths) == requests + 1
    if kind == "hypercorn":
        assert len(baseline) >= SURELY_CLOSED


ASYNC_GAPS = (0.58, 0.99, 1.01, 0.62, 1.0, 1.3)


@pytest.mark.anyio
async def test_no_failures_across_idle_timeout_behind_latency_async(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    delay_proxy_factory: Callable[..., object],
) -> None:
    """The async pool against Hypercorn's silent idle close."""
    server = real_servers(h2_spec("hypercorn", tls_files, idle_timeout=TIMEOUT))
    proxy = delay_proxy_factory(server.host, server.port)
    base = proxy.url("https")  # type: ignore[attr-defined]
    client, transport = async_h2_client(tls_client_context, keepalive_margin=MARGIN)
    failures: list[BaseException] = []
    async with client:
        assert (await client.get(f"{base}/ah2race/learn")).http_version == "HTTP/2"
        await anyio.sleep(TIMEOUT + 0.3)  # the reaper sees the server's close
        learned = transport.statistics().origins[base].learned_timeout
        assert learned is not None
        assert TIMEOUT - 0.05 <= learned <= TIMEOUT + LATE
        for round_index, gap in enumerate(ASYNC_GAPS):
            await anyio.sleep(gap * TIMEOUT)
            for index in range(BURST):
                try:
                    url = f"{base}/ah2race/{round_index}/{index}"
                    (await client.get(url)).raise_for_status()
                except httpx.HTTPError as exc:
                    failures.append(exc)
        stats = transport.statistics().origins[base]
    assert failures == []
    assert stats.http_version == "HTTP/2"
    assert stats.closed_by_server == 1
    assert stats.retries == stats.goaway_retries == 0


#: Each way: a request sent 0.3 s before the pool could see the server's
#: close reaches the server 0.3 s after it, both by a wide margin.
SLOW_DELAY = 0.3


def cross_the_close(
    server_url_via_proxy: str, verify: ssl.SSLContext, prefix: str
) -> tuple[httpx.Response | BaseException, OriginStatistics]:
    """One request, then another sent at an idle age of TIMEOUT - SLOW_DELAY:
    before the server's close can reach the pool, after it reached the
    server. No learned timeout yet (the first idle period)."""
    client, transport = sync_h2_client(verify)
    with client:
        client.get(f"{server_url_via_proxy}{prefix}first").raise_for_status()
        time.sleep(TIMEOUT - SLOW_DELAY)
        outcome: httpx.Response | BaseException
        try:
            outcome = client.get(f"{server_url_via_proxy}{prefix}second")
        except httpx.HTTPError as exc:
            outcome = exc
        return outcome, transport.statistics().origins[server_url_via_proxy]


@pytest.mark.parametrize("kind", ["nginx", "node"])
def test_request_crossing_goaway_is_sent_again(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    delay_proxy_factory: Callable[..., object],
    kind: str,
) -> None:
    """nginx and Node end the idle connection with GOAWAY naming the stream
    before it: the crossing request was not processed and goes again."""
    server = real_servers(h2_spec(kind, tls_files, idle_timeout=TIMEOUT))
    proxy = delay_proxy_factory(server.host, server.port, delay=SLOW_DELAY)
    base = proxy.url("https")  # type: ignore[attr-defined]
    mark, prefix = server.log_mark(), unique_prefix("cross")
    outcome, stats = cross_the_close(base, tls_client_context, prefix)
    assert isinstance(outcome, httpx.Response), outcome
    assert outcome.status_code == 200
    assert stats.goaway_retries == 1
    assert stats.connections_opened == 2
    paths = logged_paths(server, mark, prefix, 2)
    assert paths == [f"{prefix}first", f"{prefix}second"]


def test_request_crossing_silent_close_is_sent_again(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    delay_proxy_factory: Callable[..., object],
) -> None:
    """Hypercorn closes without GOAWAY: nothing of the response arrived and
    the request is a GET, the case hintpool's one safe retry is for."""
    server = real_servers(h2_spec("hypercorn", tls_files, idle_timeout=TIMEOUT))
    proxy = delay_proxy_factory(server.host, server.port, delay=SLOW_DELAY)
    base = proxy.url("https")  # type: ignore[attr-defined]
    mark, prefix = server.log_mark(), unique_prefix("cross")
    outcome, stats = cross_the_close(base, tls_client_context, prefix)
    assert isinstance(outcome, httpx.Response), outcome
    assert outcome.status_code == 200
    assert stats.connections_opened == 2
    assert (stats.retries, stats.goaway_retries) == (1, 0)
    paths = logged_paths(server, mark, prefix, 2)
    assert paths == [f"{prefix}first", f"{prefix}second"]
