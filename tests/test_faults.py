"""Server faults: each gives the documented httpx exception, and the next
request to the same origin works -- sync, asyncio and trio, plain and TLS.

``tests/_async/test_transport.py`` (and its sync twin) check the five basic
fault routes one at a time on plain HTTP. Here every fault -- including
oversized headers, a trickling server against a read timeout, ``timeout=0``
and a lying ``max`` -- runs in one client session with a single connection
slot, in both orders, over plain HTTP and over hintpool's own TLS stream: a
slot leaked by any failure makes the next request a ``PoolTimeout``.

What each fault gives (also in docs/reliability.md):

=========================  ==================================================
``/fault/reset-headers``   ``ReadError`` (or ``RemoteProtocolError``: the RST
                           may arrive as a plain EOF)
``/fault/reset-body``      ``ReadError`` or ``RemoteProtocolError``
``/fault/garbage``         ``RemoteProtocolError``
``/fault/truncated-chunked`` ``RemoteProtocolError``
``/fault/close-no-response`` ``RemoteProtocolError`` (fresh connection: no retry)
``/fault/huge-headers``    ``RemoteProtocolError`` (over httpcore's 100 KiB)
``/fault/trickle``         ``ReadTimeout`` (the read timeout is per read)
=========================  ==================================================
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import anyio
import httpx
import pytest
import trustme

import hintpool

from .fixtures_server import ServerFactory
from .server import TestServer
from .tls_helpers import client_context, server_context

READ_ERRORS = (httpx.ReadError, httpx.RemoteProtocolError)
FAULTS: list[tuple[str, tuple[type[Exception], ...]]] = [
    ("/fault/reset-headers", READ_ERRORS),
    ("/fault/reset-body", READ_ERRORS),
    ("/fault/garbage", (httpx.RemoteProtocolError,)),
    ("/fault/truncated-chunked", (httpx.RemoteProtocolError,)),
    ("/fault/close-no-response", (httpx.RemoteProtocolError,)),
    ("/fault/huge-headers", (httpx.RemoteProtocolError,)),
    ("/fault/trickle", (httpx.ReadTimeout,)),
]
# A read timeout well under the trickle's 0.5 s per byte; the rest generous.
TIMEOUT = httpx.Timeout(5.0, read=0.2, pool=2.0)
MODES = ["sync", "asyncio", "trio"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fault_server(scheme: str, ca: trustme.CA) -> Iterator[TestServer]:
    tls = None
    if scheme == "https":
        tls = server_context(ca.issue_cert("127.0.0.1"), "TLSv1.3")
    with TestServer(tls=tls) as srv:
        yield srv


def verify_for(ca: trustme.CA) -> ssl.SSLContext:
    return client_context(ca)


def check_idle(stats: hintpool.PoolStatistics) -> None:
    assert (stats.active, stats.waiting) == (0, 0), stats
    assert stats.open == stats.idle <= 1


def run_faults_sync(url: str, ca: trustme.CA, order: list[int]) -> list[str]:
    transport = hintpool.HTTPTransport(
        verify=verify_for(ca), limits=httpx.Limits(max_connections=1)
    )
    outcomes = []
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        for i in order:
            path, errors = FAULTS[i]
            with pytest.raises(errors) as info:
                client.get(url + path)
            outcomes.append(type(info.value).__name__)
            check_idle(transport.statistics())
            assert client.get(url + "/").text == "hello"
            check_idle(transport.statistics())
    return outcomes


async def run_faults_async(url: str, ca: trustme.CA, order: list[int]) -> list[str]:
    transport = hintpool.AsyncHTTPTransport(
        verify=verify_for(ca), limits=httpx.Limits(max_connections=1)
    )
    outcomes = []
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
        for i in order:
            path, errors = FAULTS[i]
            with pytest.raises(errors) as info:
                await client.get(url + path)
            outcomes.append(type(info.value).__name__)
            check_idle(transport.statistics())
            assert (await client.get(url + "/")).text == "hello"
            check_idle(transport.statistics())
    return outcomes


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_every_fault_then_the_next_request_works(
    mode: str, reverse: bool, fault_server: TestServer, ca: trustme.CA
) -> None:
    order = list(range(len(FAULTS)))
    if reverse:
        order.reverse()
    if mode == "sync":
        outcomes = run_faults_sync(fault_server.url, ca, order)
    else:
        outcomes = anyio.run(
            run_faults_async, fault_server.url, ca, order, backend=mode
        )
    assert len(outcomes) == len(FAULTS)


# -- keep-alive faults: what the server says about the connection ------------


@pytest.mark.parametrize("mode", MODES)
def test_timeout_zero_is_never_reused_and_never_fails(
    mode: str, server_factory: ServerFactory
) -> None:
    # The server closes a connection 50 ms after it went idle: only a pool that
    # does not reuse it avoids the race.
    srv = server_factory(keep_alive="timeout=0", idle_timeout=0.05)
    stats = send_sequence(mode, srv.url, ["/"] * 5)
    assert stats.connections_opened == 5 and stats.reused == 0
    assert stats.retries == 0 and stats.closed_by_server == 0
    assert srv.requests_after_close == 0
    assert srv.requests_served == 5


@pytest.mark.parametrize("mode", MODES)
def test_lying_max_costs_no_request(mode: str, server_factory: ServerFactory) -> None:
    # Announces max=100 but closes after every second response, without
    # "Connection: close". The FIN reaches the client before the next
    # request (same host): the check at checkout sees it.
    srv = server_factory(
        keep_alive="timeout=5, max=100", max_requests=2, close_on_last=False
    )
    paths = []
    for _ in range(3):
        paths += ["/", "/", "wait-close"]
    stats = send_sequence(mode, srv.url, paths, srv)
    assert srv.requests_served == 6
    assert stats.requests == 6
    assert stats.closed_by_server + stats.retries >= 2
    assert srv.requests_after_close == stats.retries


@pytest.mark.parametrize("mode", MODES)
def test_oversized_headers_leave_the_pool_usable(
    mode: str, server_factory: ServerFactory
) -> None:
    srv = server_factory(keep_alive="timeout=5")
    stats = send_sequence(mode, srv.url, ["/", "!/fault/huge-headers", "/", "/"])
    # The failed connection is gone, the good ones were reused.
    assert stats.open == stats.idle == 1
    assert stats.connections_opened == 2


def send_sequence(
    mode: str, url: str, paths: list[str], srv: TestServer | None = None
) -> hintpool.PoolStatistics:
    """Send GETs in order; "!path" must fail, "wait-close" waits for the
    server to close the connections it served."""
    closed = [0]

    def wait_close() -> None:
        assert srv is not None
        closed[0] += 1
        srv.wait_closed(closed[0])

    if mode == "sync":
        transport = hintpool.HTTPTransport()
        with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
            for path in paths:
                if path == "wait-close":
                    wait_close()
                elif path.startswith("!"):
                    with pytest.raises(httpx.HTTPError):
                        client.get(url + path[1:])
                else:
                    assert client.get(url + path).status_code == 200
            return transport.statistics()

    async def main() -> hintpool.PoolStatistics:
        transport = hintpool.AsyncHTTPTransport()
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            for path in paths:
                if path == "wait-close":
                    await anyio.to_thread.run_sync(wait_close)
                elif path.startswith("!"):
                    with pytest.raises(httpx.HTTPError):
                        await client.get(url + path[1:])
                else:
                    assert (await client.get(url + path)).status_code == 200
            return transport.statistics()

    return anyio.run(main, backend=mode)
