"""The clients ``hintpool bench`` compares, each behind one tiny interface.

A contender opens a session -- ``with contender.sync_session(n, close) as get``
or ``async with contender.async_session(n, close) as get`` -- where ``n`` is
the number of connections it may keep and ``close`` asks for a new connection
per request (``Connection: close``).  ``get(url)`` sends one GET, reads the
whole body and raises on any error or a status other than 200.  aiohttp and
urllib3 are optional: when they are not installed they are simply absent
from :func:`contenders` and :func:`missing` says so.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

import hintpool

__all__ = ["AsyncGet", "Contender", "SyncGet", "contenders", "missing"]

SyncGet = Callable[[str], None]
AsyncGet = Callable[[str], Awaitable[None]]
OPTIONAL = ("aiohttp", "urllib3")
HTTPX_DEFAULT_SYNC = "httpx default sync"
HTTPX_DEFAULT_ASYNC = "httpx default"


class BadStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")


def _check(status: int) -> None:
    if status != 200:
        raise BadStatus(status)


@dataclass(frozen=True)
class Contender:
    name: str
    mode: str  # "sync" or "async"
    sync_session: Callable[[int, bool], Any] | None = None
    async_session: Callable[[int, bool], Any] | None = None


def _limits(connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections
    )


def _httpx_headers(close: bool) -> dict[str, str]:
    return {"Connection": "close"} if close else {}


# -- async --------------------------------------------------------------------


@asynccontextmanager
async def _hintpool_pool_async(
    connections: int, close: bool
) -> AsyncIterator[AsyncGet]:
    headers = [(b"Connection", b"close")] if close else None
    async with hintpool.AsyncConnectionPool(
        max_connections=connections, max_keepalive_connections=connections
    ) as pool:

        async def get(url: str) -> None:
            _check((await pool.request("GET", url, headers=headers)).status)

        yield get


def _httpx_async(hint: bool) -> Callable[[int, bool], Any]:
    @asynccontextmanager
    async def session(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
        limits = _limits(connections)
        transport = hintpool.AsyncHTTPTransport(limits=limits) if hint else None
        headers = _httpx_headers(close)
        async with httpx.AsyncClient(limits=limits, transport=transport) as client:

            async def get(url: str) -> None:
                _check((await client.get(url, headers=headers)).status_code)

            yield get

    return session


@asynccontextmanager
async def _aiohttp(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0)
    headers = {"Connection": "close"} if close else None
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> None:
            async with session.get(url, headers=headers) as response:
                await response.read()
                _check(response.status)

        yield get


# -- sync ---------------------------------------------------------------------


@contextmanager
def _hintpool_pool_sync(connections: int, close: bool) -> Iterator[SyncGet]:
    headers = [(b"Connection", b"close")] if close else None
    with hintpool.ConnectionPool(
        max_connections=connections, max_keepalive_connections=connections
    ) as pool:

        def get(url: str) -> None:
            _check(pool.request("GET", url, headers=headers).status)

        yield get


def _httpx_sync(hint: bool) -> Callable[[int, bool], Any]:
    @contextmanager
    def session(connections: int, close: bool) -> Iterator[SyncGet]:
        limits = _limits(connections)
        transport = hintpool.HTTPTransport(limits=limits) if hint else None
        headers = _httpx_headers(close)
        with httpx.Client(limits=limits, transport=transport) as client:

            def get(url: str) -> None:
                _check(client.get(url, headers=headers).status_code)

            yield get

    return session


@contextmanager
def _urllib3(connections: int, close: bool) -> Iterator[SyncGet]:
    import urllib3

    headers = {"Connection": "close"} if close else None
    # One pool per origin, as many pools as origins: its defaults (10 pools
    # of 1 connection) would measure pool churn, not the client.
    with urllib3.PoolManager(num_pools=connections, maxsize=connections) as manager:

        def get(url: str) -> None:
            _check(manager.request("GET", url, headers=headers).status)

        yield get


def contenders() -> list[Contender]:
    """Every contender whose library is importable, baselines included."""
    found = [
        Contender("hintpool pool", "async", async_session=_hintpool_pool_async),
        Contender("hintpool+httpx", "async", async_session=_httpx_async(True)),
        Contender(HTTPX_DEFAULT_ASYNC, "async", async_session=_httpx_async(False)),
        Contender("aiohttp", "async", async_session=_aiohttp),
        Contender("hintpool pool sync", "sync", sync_session=_hintpool_pool_sync),
        Contender("hintpool+httpx sync", "sync", sync_session=_httpx_sync(True)),
        Contender(HTTPX_DEFAULT_SYNC, "sync", sync_session=_httpx_sync(False)),
        Contender("urllib3", "sync", sync_session=_urllib3),
    ]
    absent = set(missing())
    return [c for c in found if c.name not in absent]


def missing() -> list[str]:
    """The optional contenders that are not installed."""
    return [name for name in OPTIONAL if importlib.util.find_spec(name) is None]
