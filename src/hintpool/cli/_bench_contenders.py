"""The clients ``hintpool bench`` compares, each behind one tiny interface.

A contender opens a session -- ``with contender.sync_session(n, close) as get``
or ``async with contender.async_session(n, close) as get`` -- where ``n`` is
the number of connections it may keep and ``close`` asks for a new connection
per request (``Connection: close``).  ``get(url)`` sends one GET, reads the
whole body and raises on any error or a status other than 200;
``get(url, "POST")`` sends a small POST instead (the race workload's
non-idempotent requests, which no client may retry on its own).  aiohttp,
urllib3, httptools (the asyncio floor) and uvloop are optional: when one is
not installed its contenders are simply absent from :func:`contenders` and
:func:`missing` says so.  The "httpcore wire" rows exist only when the
installed hintpool's pools take the ``wire`` keyword (:func:`supports_wire`),
so the bench also runs against a hintpool that predates it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

import hintpool

from .._local.race import POST_BODY

__all__ = [
    "AsyncGet",
    "Contender",
    "SyncGet",
    "contenders",
    "missing",
    "request_body",
    "supports_wire",
]


class SyncGet(Protocol):
    def __call__(self, url: str, method: str = "GET") -> None: ...


class AsyncGet(Protocol):
    def __call__(self, url: str, method: str = "GET") -> Awaitable[None]: ...


LoopFactory = Callable[[], asyncio.AbstractEventLoop]
OPTIONAL = ("aiohttp", "urllib3", "httptools", "uvloop")
HTTPX_DEFAULT_SYNC = "httpx default sync"
HTTPX_DEFAULT_ASYNC = "httpx default"
AIOHTTP = "aiohttp"
URLLIB3 = "urllib3"
FLOOR = "asyncio floor"


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
    requires: str | None = None  # an optional module, see OPTIONAL
    # The async session runs on a loop from this factory instead of asyncio.run.
    loop_factory: LoopFactory | None = None
    # The race runs every async contender on one asyncio loop and counts
    # failures: the floor is no client and a custom loop cannot join it.
    in_race: bool = True
    needs_wire: bool = False  # passes wire=: only when supports_wire()


def supports_wire() -> bool:
    """Whether the installed hintpool's pools take ``wire=`` (issue #12)."""
    return all(
        "wire" in inspect.signature(pool).parameters
        for pool in (hintpool.AsyncConnectionPool, hintpool.ConnectionPool)
    )


def _pool_options(connections: int, wire: str | None) -> dict[str, Any]:
    """The pool's keywords; ``wire`` only when asked, so older pools still work."""
    options: dict[str, Any] = {
        "max_connections": connections,
        "max_keepalive_connections": connections,
    }
    if wire is not None:
        options["wire"] = wire
    return options


def _limits(connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections
    )


def _httpx_headers(close: bool) -> dict[str, str]:
    return {"Connection": "close"} if close else {}


def request_body(method: str) -> bytes | None:
    """No body for a GET; the race's small form for anything else."""
    return None if method == "GET" else POST_BODY


# -- async --------------------------------------------------------------------


def _hintpool_pool_async(wire: str | None) -> Callable[[int, bool], Any]:
    @asynccontextmanager
    async def session(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
        headers = [(b"Connection", b"close")] if close else None
        options = _pool_options(connections, wire)
        async with hintpool.AsyncConnectionPool(**options) as pool:

            async def get(url: str, method: str = "GET") -> None:
                response = await pool.request(
                    method, url, headers=headers, content=request_body(method)
                )
                _check(response.status)

            yield get

    return session


def _httpx_async(hint: bool) -> Callable[[int, bool], Any]:
    @asynccontextmanager
    async def session(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
        limits = _limits(connections)
        transport = hintpool.AsyncHTTPTransport(limits=limits) if hint else None
        headers = _httpx_headers(close)
        async with httpx.AsyncClient(limits=limits, transport=transport) as client:

            async def get(url: str, method: str = "GET") -> None:
                response = await client.request(
                    method, url, headers=headers, content=request_body(method)
                )
                _check(response.status_code)

            yield get

    return session


@asynccontextmanager
async def _aiohttp(connections: int, close: bool) -> AsyncIterator[AsyncGet]:
    from ._bench_aiohttp import aiohttp_session

    connector = {"limit": connections, "limit_per_host": 0}
    headers = {"Connection": "close"} if close else None
    async with aiohttp_session(connector) as session:

        async def get(url: str, method: str = "GET") -> None:
            async with session.request(
                method, url, headers=headers, data=request_body(method)
            ) as response:
                await response.read()
                _check(response.status)

        yield get


def _floor(connections: int, close: bool) -> Any:
    from ._bench_floor import floor_session  # needs httptools

    return floor_session(connections, close)


def _uvloop_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    # uvloop is optional: where it is not installed mypy sees Any here.
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


# -- sync ---------------------------------------------------------------------


def _hintpool_pool_sync(wire: str | None) -> Callable[[int, bool], Any]:
    @contextmanager
    def session(connections: int, close: bool) -> Iterator[SyncGet]:
        headers = [(b"Connection", b"close")] if close else None
        with hintpool.ConnectionPool(**_pool_options(connections, wire)) as pool:

            def get(url: str, method: str = "GET") -> None:
                response = pool.request(
                    method, url, headers=headers, content=request_body(method)
                )
                _check(response.status)

            yield get

    return session


def _httpx_sync(hint: bool) -> Callable[[int, bool], Any]:
    @contextmanager
    def session(connections: int, close: bool) -> Iterator[SyncGet]:
        limits = _limits(connections)
        transport = hintpool.HTTPTransport(limits=limits) if hint else None
        headers = _httpx_headers(close)
        with httpx.Client(limits=limits, transport=transport) as client:

            def get(url: str, method: str = "GET") -> None:
                response = client.request(
                    method, url, headers=headers, content=request_body(method)
                )
                _check(response.status_code)

            yield get

    return session


@contextmanager
def _urllib3(connections: int, close: bool) -> Iterator[SyncGet]:
    import urllib3

    headers = {"Connection": "close"} if close else None
    # One pool per origin, as many pools as origins: its defaults (10 pools
    # of 1 connection) would measure pool churn, not the client.
    with urllib3.PoolManager(num_pools=connections, maxsize=connections) as manager:

        def get(url: str, method: str = "GET") -> None:
            response = manager.request(
                method, url, headers=headers, body=request_body(method)
            )
            _check(response.status)

        yield get


def contenders() -> list[Contender]:
    """Every contender that can run here, baselines included, in report order."""
    wire = supports_wire()
    found = [
        Contender("hintpool pool", "async", async_session=_hintpool_pool_async(None)),
        Contender(
            "hintpool pool (httpcore wire)",
            "async",
            async_session=_hintpool_pool_async("httpcore"),
            needs_wire=True,
        ),
        Contender(
            "hintpool pool (uvloop)",
            "async",
            async_session=_hintpool_pool_async(None),
            requires="uvloop",
            loop_factory=_uvloop_loop,
            in_race=False,
        ),
        Contender("hintpool+httpx", "async", async_session=_httpx_async(True)),
        Contender(HTTPX_DEFAULT_ASYNC, "async", async_session=_httpx_async(False)),
        Contender(AIOHTTP, "async", async_session=_aiohttp, requires="aiohttp"),
        Contender(
            FLOOR, "async", async_session=_floor, requires="httptools", in_race=False
        ),
        Contender("hintpool pool sync", "sync", sync_session=_hintpool_pool_sync(None)),
        Contender(
            "hintpool pool sync (httpcore wire)",
            "sync",
            sync_session=_hintpool_pool_sync("httpcore"),
            needs_wire=True,
        ),
        Contender("hintpool+httpx sync", "sync", sync_session=_httpx_sync(True)),
        Contender(HTTPX_DEFAULT_SYNC, "sync", sync_session=_httpx_sync(False)),
        Contender(URLLIB3, "sync", sync_session=_urllib3, requires="urllib3"),
    ]
    absent = set(missing())
    return [
        c
        for c in found
        if c.requires not in absent
        and (c.requires is None or importlib.util.find_spec(c.requires) is not None)
        and (wire or not c.needs_wire)
    ]


def missing() -> list[str]:
    """The optional modules that are not installed (their rows are skipped)."""
    return [name for name in OPTIONAL if importlib.util.find_spec(name) is None]


def skip_notes() -> list[str]:
    """One line per skipped contender, for stderr."""
    notes = [f"{name} not installed: skipped" for name in missing()]
    if not supports_wire():
        notes.append("this hintpool has no wire= keyword: httpcore wire rows skipped")
    return notes
