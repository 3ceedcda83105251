"""GOAWAY mid-load against real HTTP/2 servers: no request lost, none run
twice.

* nginx's ``keepalive_requests`` and the Node server's per-session limit
  send a GOAWAY after a fixed number of streams: a deterministic GOAWAY in
  the middle of 100 concurrent requests. Streams above its last-stream-id
  were not processed and go again on a new connection.
* ``nginx -s reload`` and the Node server's SIGUSR2 (``session.close()`` on
  every session) retire busy connections while the server keeps listening.
* Hypercorn answers neither its request limit nor its shutdown for the
  streams below the last-stream-id it announces (docs/servers.md), so no
  client can keep those requests: its shutdown is tested between bursts, a
  second instance taking over the port behind a relay.

Every request's path is unique, so the servers' access logs prove each ran
exactly once. httpx's own HTTP/2 transport runs the request-limit case too,
for the record (``record_property``); only hintpool's result is asserted.
"""

from __future__ import annotations

import os
import signal
import ssl
from collections.abc import Awaitable, Callable

import httpx
import pytest

from .conftest import StartServer
from .h2_helpers import (
    CONCURRENT,
    async_h2_client,
    h2_spec,
    logged_paths,
    ports,
    run_concurrently,
    sync_h2_client,
)
from .helpers import unique_prefix
from .servers import RunningServer, TLSFiles

pytestmark = pytest.mark.interop

#: Streams per connection before the server sends GOAWAY.
LIMIT = 30
#: Waves of 100 requests at most while waiting for the retired connection
#: to be replaced.
MAX_WAVES = 40
#: What retires busy connections while the server keeps listening.
RETIRE = {"nginx": signal.SIGHUP, "node": signal.SIGUSR2}


def urls(base: str, prefix: str, count: int) -> list[str]:
    return [f"{base}{prefix}{index}" for index in range(count)]


def check_exactly_once(server_paths: list[str], prefix: str, count: int) -> None:
    expected = [f"{prefix}{index}" for index in range(count)]
    assert sorted(server_paths) == sorted(expected)


async def httpx_baseline(base: str, verify: ssl.SSLContext, prefix: str) -> int:
    async with httpx.AsyncClient(http2=True, verify=verify, timeout=10.0) as client:
        _, failures = await run_concurrently(
            client.get, urls(base, prefix, CONCURRENT), catch=Exception
        )
    return len(failures)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["nginx", "node"])
async def test_request_limit_goaway_loses_nothing(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    record_property: Callable[[str, object], None],
    kind: str,
) -> None:
    server = real_servers(h2_spec(kind, tls_files, max_requests=LIMIT))
    mark, prefix = server.log_mark(), unique_prefix("limit")
    client, transport = async_h2_client(tls_client_context)
    async with client:
        responses, failures = await run_concurrently(
            client.get, urls(server.url, prefix, CONCURRENT)
        )
        stats = transport.statistics().origins[server.url]
    assert failures == []
    assert {r.http_version for r in responses} == {"HTTP/2"}
    check_exactly_once(
        logged_paths(server, mark, prefix, CONCURRENT), prefix, CONCURRENT
    )
    opened = len(ports(server, mark, prefix))
    assert opened >= CONCURRENT // LIMIT + 1
    assert stats.goaways_received >= opened - 1
    assert stats.connections_opened == opened

    lost = await httpx_baseline(server.url, tls_client_context, "/limit-httpx/")
    record_property("httpx_http2_failures", f"{lost}/{CONCURRENT}")
    print(f"{kind}: httpx's HTTP/2 transport failed {lost}/{CONCURRENT}")


async def retire_mid_load(
    get: Callable[[str], Awaitable[httpx.Response]],
    server: RunningServer,
    prefix: str,
    replaced: Callable[[], bool],
    catch: type[BaseException] = httpx.HTTPError,
) -> tuple[int, list[BaseException]]:
    """Waves of 100 until ``replaced()`` (and one more), the server told to
    retire its connections when half of the first wave is answered: the
    number of waves and the failures."""
    sent = False

    def retire_at_half(done: int) -> None:
        nonlocal sent
        if done == CONCURRENT // 2 and not sent:
            sent = True
            os.kill(server.process.pid, RETIRE[server.spec.kind])

    failures: list[BaseException] = []
    waves = 0
    replaced_at = None
    while waves < MAX_WAVES and (replaced_at is None or waves <= replaced_at):
        wave_urls = urls(server.url, f"{prefix}{waves}-", CONCURRENT)
        hook = retire_at_half if waves == 0 else None
        failures += (await run_concurrently(get, wave_urls, hook, catch))[1]
        waves += 1
        if replaced_at is None and replaced():
            replaced_at = waves
    assert sent
    assert replaced_at is not None, f"the connection outlived {waves} waves"
    return waves, failures


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["nginx", "node"])
async def test_retiring_busy_connections_loses_nothing(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    record_property: Callable[[str, object], None],
    kind: str,
) -> None:
    """nginx's old worker finishes the streams in flight and sends its
    GOAWAY once the connection is idle, maybe between two waves: waves go on
    until the retired connection has been replaced."""
    server = real_servers(h2_spec(kind, tls_files))
    mark = server.log_mark()
    prefix = f"/retire-{kind}/"
    client, transport = async_h2_client(tls_client_context)
    async with client:

        def replaced() -> bool:
            return transport.statistics().origins[server.url].connections_opened > 1

        waves, failures = await retire_mid_load(client.get, server, prefix, replaced)
        stats = transport.statistics().origins[server.url]
    print(
        f"{kind} retire: {waves} waves, {stats.connections_opened} connections, "
        f"{stats.goaways_received} GOAWAYs read, {stats.closed_by_server} closes "
        f"seen idle, learned {stats.learned_timeout}"
    )
    # What the test checks: the retired connection was replaced without
    # losing or repeating a request. Which path noticed the retirement (a
    # stream reading the GOAWAY, or the idle socket found readable by the
    # reaper or on reuse) is a race under load, counted differently: only
    # recorded.
    record_property(
        f"{kind}_retirement_seen_as",
        f"goaways_received={stats.goaways_received} "
        f"closed_by_server={stats.closed_by_server}",
    )
    assert failures == []
    paths = logged_paths(server, mark, prefix, waves * CONCURRENT)
    assert len(paths) == len(set(paths)) == waves * CONCURRENT
    assert len(ports(server, mark, prefix)) >= 2

    # The same with httpx's own HTTP/2 transport, for the record.
    mark = server.log_mark()
    prefix = f"/retire-httpx-{kind}/"
    async with httpx.AsyncClient(
        http2=True, verify=tls_client_context, timeout=10.0
    ) as plain:
        # Exception: httpx lets h2's ProtocolError out unmapped at times.
        waves, lost = await retire_mid_load(
            plain.get,
            server,
            prefix,
            lambda: len(ports(server, mark, prefix)) > 1,
            catch=Exception,
        )
    record_property("httpx_http2_failures", f"{len(lost)}/{waves * CONCURRENT}")
    print(f"{kind}: httpx's HTTP/2 transport failed {len(lost)}/{waves * CONCURRENT}")


def test_hypercorn_shutdown_between_bursts_loses_nothing(
    real_servers: StartServer,
    tls_files: TLSFiles,
    tls_client_context: ssl.SSLContext,
    delay_proxy_factory: Callable[..., object],
) -> None:
    """A burst on instance A; the relay turns to instance B; A shuts down
    gracefully (SIGTERM: it closes its idle connection without a GOAWAY);
    the next burst must land on B, every request exactly once."""
    first = real_servers(h2_spec("hypercorn", tls_files, idle_timeout=5.0))
    second = real_servers(h2_spec("hypercorn", tls_files, idle_timeout=4.0))
    proxy = delay_proxy_factory(first.host, first.port, delay=0.0)
    base = proxy.url("https")  # type: ignore[attr-defined]
    marks = first.log_mark(), second.log_mark()
    client, transport = sync_h2_client(tls_client_context)
    with client:
        assert [client.get(url).status_code for url in urls(base, "/a/", 20)]
        proxy.target_port = second.port  # type: ignore[attr-defined]
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(10)
        statuses = [client.get(url).status_code for url in urls(base, "/b/", 20)]
        stats = transport.statistics().origins[base]
    assert statuses == [200] * 20
    check_exactly_once(logged_paths(first, marks[0], "/a/", 20), "/a/", 20)
    check_exactly_once(logged_paths(second, marks[1], "/b/", 20), "/b/", 20)
    assert stats.http_version == "HTTP/2"
    print(
        f"hypercorn shutdown: learned {stats.learned_timeout}, "
        f"{stats.connections_opened} connections"
    )
    # A's close came right after the first burst, younger than the margin:
    # a shutdown, not a timeout (docs/how-it-works.md). Learned, it would
    # have stopped reuse on B: a connection per request for 10 minutes.
    assert stats.learned_timeout is None
    assert stats.connections_opened == 2
