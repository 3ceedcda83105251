"""What each server is expected to do, and small client helpers.

The expectations are the suite's claims about the servers; the generated
``docs/servers.md`` shows what was measured.
"""

from __future__ import annotations

import itertools
import math
import time

import httpx

import hintpool
from hintpool import KeepAlive

from .servers import RunningServer, ServerSpec

#: Servers that announce ``Keep-Alive`` (nginx only when configured to).
HINTING = ("apache", "nginx", "node")
#: Servers that never announce it.
HINTLESS = ("uvicorn", "hypercorn", "gunicorn")
#: Servers with a per-connection request limit.
WITH_MAX = ("apache", "nginx", "node")

IDLE_TIMEOUT = 2.0
SMALL_MAX = 3

_runs = itertools.count()


def unique_prefix(name: str) -> str:
    """A request-path prefix that no other test run in this process uses.

    Tests share servers within a module and count access-log records after
    a mark; a server may write an earlier test's last record after that
    mark (a log line follows the response; squid logs a tunnel when it
    ends). Counting only records under the test's own prefix makes what a
    test counts independent of when the server gets round to logging.
    """
    return f"/{name}-{next(_runs)}/"


def spec_for(kind: str, **overrides: object) -> ServerSpec:
    """The suite's usual config: 2 s idle timeout, ``max`` 3 where possible."""
    options: dict[str, object] = {"idle_timeout": IDLE_TIMEOUT}
    if kind in WITH_MAX:
        options["max_requests"] = SMALL_MAX
    options.update(overrides)
    return ServerSpec(kind, **options)  # type: ignore[arg-type]


def expected_first_hint(spec: ServerSpec) -> KeepAlive | None:
    """The hint on a connection's first response, as the server sends it."""
    timeout = spec.idle_timeout
    if spec.kind == "apache":
        # Apache counts max down from MaxKeepAliveRequests: max=M, M-1, ..., 1.
        return KeepAlive(timeout=timeout, max=spec.max_requests)
    if spec.kind == "nginx":
        return KeepAlive(timeout=timeout) if spec.hint else None
    if spec.kind == "node":
        # Node repeats max=maxRequestsPerSocket on every response.
        return KeepAlive(timeout=timeout, max=spec.max_requests)
    return None


def requests_per_connection(spec: ServerSpec) -> int | None:
    """How many requests the server serves on one connection (None: no limit).

    Apache's MaxKeepAliveRequests M allows M keep-alive requests after the
    first: M + 1 in all, the last answered with ``Connection: close``. nginx's
    keepalive_requests and Node's maxRequestsPerSocket count all requests.
    """
    if spec.max_requests is None:
        return None
    if spec.kind == "apache":
        return spec.max_requests + 1
    return spec.max_requests


def expected_connections(spec: ServerSpec, requests: int) -> int:
    per_connection = requests_per_connection(spec)
    return 1 if per_connection is None else math.ceil(requests / per_connection)


def sync_client(
    tls: object = None, **transport_options: object
) -> tuple[httpx.Client, hintpool.HTTPTransport]:
    if tls is not None:
        transport_options["verify"] = tls
    transport = hintpool.HTTPTransport(**transport_options)  # type: ignore[arg-type]
    return httpx.Client(transport=transport, timeout=10.0), transport


def async_client(
    tls: object = None, **transport_options: object
) -> tuple[httpx.AsyncClient, hintpool.AsyncHTTPTransport]:
    if tls is not None:
        transport_options["verify"] = tls
    transport = hintpool.AsyncHTTPTransport(**transport_options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, timeout=10.0), transport


def wait_server_close(
    transport: hintpool.HTTPTransport, origin: str, timeout: float = 10.0
) -> hintpool.OriginStatistics:
    """The origin's statistics once the pool saw the server close an idle
    connection (bounded): how soon depends on the server's and the reaper's
    scheduling, which a loaded machine delays, so tests poll rather than
    sleep a fixed time past the server's timeout."""
    deadline = time.monotonic() + timeout
    while True:
        stats = transport.statistics().origins[origin]
        if stats.closed_by_server or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def origin_stats(
    transport: hintpool.HTTPTransport | hintpool.AsyncHTTPTransport,
    server: RunningServer,
) -> hintpool.OriginStatistics:
    return transport.statistics().origins[server.url]
