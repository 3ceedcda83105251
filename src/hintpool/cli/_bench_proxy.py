"""The proxied workloads of ``hintpool bench``: through a real squid.

Two workloads, async with 10 workers: ``http://`` requests *forwarded* by
squid (absolute-form requests on connections to squid, shared by every
origin) and ``https://`` requests in *CONNECT tunnels* through squid (TLS to
the origin inside). hintpool (pool and httpx transport), httpx's default
transport and aiohttp (``proxy=`` per request; it does TLS in the tunnel)
run in the same rounds as the other workloads do, against a benchmark
server of their own (Node.js when there, ``http`` and ``https``). squid runs
from a temp dir for the duration (:mod:`hintpool._local.squid`); where it is
not installed, or this hintpool has no ``proxy=``, the workloads are
skipped with one line on stderr.
"""

from __future__ import annotations

import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

import hintpool

from .._local.bench_server import BenchTLS, start_bench_server
from ._bench_contenders import (
    AIOHTTP,
    HTTPX_DEFAULT_ASYNC,
    AsyncGet,
    Contender,
    request_body,
)
from ._bench_measure import Workload

__all__ = ["KEYS", "BenchCA", "proxied", "proxy_contenders", "proxy_workloads"]

FORWARD = "proxy-forward"
TUNNEL = "proxy-tls"
KEYS = (FORWARD, TUNNEL)
HOST = "127.0.0.1"
ClientTLS = Callable[[], ssl.SSLContext]


def proxy_workloads() -> list[Workload]:
    return [
        Workload(FORWARD, "squid, forward http://, C=10", "async", concurrency=10),
        Workload(TUNNEL, "squid, CONNECT + TLS, C=10", "async", concurrency=10),
    ]


def _limits(connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections
    )


def _pool(proxy: str, tls: ClientTLS) -> Callable[[int, bool], Any]:
    @asynccontextmanager
    async def session(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
        options: dict[str, Any] = {
            "proxy": proxy,
            "ssl_context": tls(),
            "max_connections": connections,
            "max_keepalive_connections": connections,
        }
        async with hintpool.AsyncConnectionPool(**options) as pool:

            async def get(url: str, method: str = "GET") -> None:
                response = await pool.request(method, url, content=request_body(method))
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")

            yield get

    return session


def _httpx(proxy: str, tls: ClientTLS, hint: bool) -> Callable[[int, bool], Any]:
    @asynccontextmanager
    async def session(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
        limits = _limits(connections)
        transport = (
            hintpool.AsyncHTTPTransport(proxy=proxy, verify=tls(), limits=limits)
            if hint
            else httpx.AsyncHTTPTransport(proxy=proxy, verify=tls(), limits=limits)
        )
        async with httpx.AsyncClient(transport=transport) as client:

            async def get(url: str, method: str = "GET") -> None:
                response = await client.request(
                    method, url, content=request_body(method)
                )
                response.raise_for_status()

            yield get

    return session


def _aiohttp(proxy: str, tls: ClientTLS) -> Callable[[int, bool], Any]:
    @asynccontextmanager
    async def session(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
        from ._bench_aiohttp import aiohttp_session

        context = tls()
        connector = {"limit": connections, "limit_per_host": 0}
        async with aiohttp_session(connector) as client:

            async def get(url: str, method: str = "GET") -> None:
                async with client.request(
                    method, url, data=request_body(method), proxy=proxy, ssl=context
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"status {response.status}")

            yield get

    return session


def proxy_contenders(proxy: str, tls: ClientTLS, have_aiohttp: bool) -> list[Contender]:
    found = [
        Contender("hintpool pool", "async", async_session=_pool(proxy, tls)),
        Contender("hintpool+httpx", "async", async_session=_httpx(proxy, tls, True)),
        Contender(
            HTTPX_DEFAULT_ASYNC, "async", async_session=_httpx(proxy, tls, False)
        ),
    ]
    if have_aiohttp:
        found.append(Contender(AIOHTTP, "async", async_session=_aiohttp(proxy, tls)))
    return found


def skip_reason() -> str | None:
    from .._local.squid import SquidUnavailable, find_squid

    if not hasattr(hintpool, "ProxyError"):
        return "this hintpool has no proxy= support"
    try:
        find_squid()
    except SquidUnavailable as exc:
        return str(exc)
    try:
        import trustme  # noqa: F401 - the https origin's certificate
    except ImportError:
        return "trustme is not installed (pip install 'hintpool[cli]')"
    return None


class BenchCA:
    """A throw-away trustme CA: certificates for the https origins, and
    client contexts trusting it (one per client)."""

    def __init__(self) -> None:
        import trustme

        self._ca = trustme.CA()

    def server_context(self, *hosts: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(*hosts).configure_cert(context)
        return context

    def server_files(self, directory: Path, host: str) -> BenchTLS:
        """PEM files for Node.js, and a context for the in-process server."""
        cert = self._ca.issue_cert(host)
        chain, key = directory / "chain.pem", directory / "key.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
        cert.private_key_pem.write_to_path(str(key))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return BenchTLS(chain, key, context)

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context


@contextmanager
def proxied(
    server_kind: str, have_aiohttp: bool
) -> Iterator[tuple[list[Contender], dict[str, list[str]]] | None]:
    """squid, an http and an https origin, and the contenders using them;
    ``None`` (after one line on stderr) when the workloads cannot run."""
    reason = skip_reason()
    if reason is not None:
        print(f"proxied workloads skipped: {reason}", file=sys.stderr)
        yield None
        return
    from .._local.squid import start_squid

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ca = BenchCA()
        server_tls = ca.server_files(directory, HOST)
        proxy = stack.enter_context(start_squid())
        plain = stack.enter_context(start_bench_server([HOST], server_kind))
        secure = stack.enter_context(
            start_bench_server([HOST], server_kind, server_tls)
        )
        urls = {FORWARD: plain.urls(), TUNNEL: secure.urls()}
        yield proxy_contenders(proxy, ca.client_context, have_aiohttp), urls
