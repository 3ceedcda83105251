"""The "asyncio floor" of ``hintpool bench``: raw asyncio callbacks + httptools.

Not a client anyone should use: no timeouts, no limits, no retries, no
``Keep-Alive`` hints, no redirects, one pre-built request head per URL.  It
is the least work asyncio can do for a keep-alive GET -- an
``asyncio.Protocol`` that writes the head straight to the transport, feeds
what arrives to llhttp and resolves one future when the response is complete
-- so the other async rows can be read as "how far above the floor".  Idle
connections wait in a small free-list per origin, which holds one connection
per concurrent worker on one origin and one per origin on many; with
``close`` every request opens a new connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httptools

__all__ = ["floor_session"]

Address = tuple[str, int]


class FloorError(Exception):
    """The connection broke before the response was complete."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[int] | None = None
        self.reusable = True

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # llhttp's errors: the response is broken
            self._fail(FloorError(f"bad response: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        self._fail(FloorError("server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(FloorError(f"connection lost: {exc}"))

    # -- httptools callbacks ----------------------------------------------------

    def on_message_complete(self) -> None:
        self.reusable = self.reusable and self._parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self._parser.get_status_code())

    # -- ours -------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    @property
    def usable(self) -> bool:
        transport = self._transport
        return self.reusable and transport is not None and not transport.is_closing()

    async def request(self, head: bytes) -> int:
        assert self._transport is not None
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._transport.write(head)
        return await waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()


class _Heads:
    """Request heads built once per URL: the floor does not serialise."""

    def __init__(self, close: bool) -> None:
        self._connection = b"close" if close else b"keep-alive"
        self._cache: dict[str, tuple[Address, bytes]] = {}

    def __call__(self, url: str) -> tuple[Address, bytes]:
        found = self._cache.get(url)
        if found is None:
            found = self._cache[url] = self._build(url)
        return found

    def _build(self, url: str) -> tuple[Address, bytes]:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: %s\r\n\r\n" % (
            target.encode("ascii"),
            parts.netloc.encode("ascii"),
            self._connection,
        )
        return (host, port), head


@asynccontextmanager
async def floor_session(
    connections: int, close: bool
) -> AsyncIterator[Callable[[str], Awaitable[None]]]:
    """``get(url)`` on raw asyncio; *connections* is not enforced (see module)."""
    del connections  # every worker keeps at most one connection per origin
    loop = asyncio.get_running_loop()
    heads = _Heads(close)
    idle: dict[Address, list[_Connection]] = {}

    async def get(url: str) -> None:
        address, head = heads(url)
        free = idle.get(address)
        connection = None
        while free:
            candidate = free.pop()
            if candidate.usable:
                connection = candidate
                break
            candidate.close()  # dropped: its transport must not outlive it
        if connection is None:
            _, connection = await loop.create_connection(_Connection, *address)
        try:
            status = await connection.request(head)
        except BaseException:
            connection.close()
            raise
        if connection.usable and not close:
            idle.setdefault(address, []).append(connection)
        else:
            connection.close()
        if status != 200:
            raise FloorError(f"status {status}")

    try:
        yield get
    finally:
        for free in idle.values():
            for connection in free:
                connection.close()
        # Let the transports run connection_lost before the loop goes away.
        await asyncio.sleep(0)
