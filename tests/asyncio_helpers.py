"""Helpers for the AsyncFastConnection tests (asyncio only).

:class:`RawServer` is an asyncio server in the test's own loop whose handler
writes whatever bytes a test wants: 1xx heads, malformed responses, stalls,
closes at chosen moments. Every server-side socket is closed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import types
from collections.abc import AsyncIterable, Awaitable
from typing import Any, Callable

import httpcore

from hintpool._asyncio_connection import AsyncFastConnection

from .server import TestServer

__all__ = [
    "OK",
    "RawServer",
    "connect",
    "eventually",
    "exchange",
    "fds_back_to",
    "open_fds",
    "read_body",
    "read_request",
    "request",
    "silent",
]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """``async with RawServer(handler) as srv``: ``srv.port``, ``srv.origin``."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.requests = 0
        self.got_request = asyncio.Event()

    @property
    def origin(self) -> httpcore.Origin:
        scheme = b"http" if self._tls is None else b"https"
        return httpcore.Origin(scheme, b"127.0.0.1", self.port)

    @property
    def url(self) -> str:
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RawServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, "127.0.0.1", 0, ssl=self._tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._server.close()
        # Connections accepted just before: let them reach connection_made.
        for _ in range(3):
            await asyncio.sleep(0)
        for transport in self._transports:
            transport.abort()  # type: ignore[attr-defined]
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        for _ in range(3):  # handlers that had not started see the abort
            await asyncio.sleep(0)
        await self._server.wait_closed()

    def _protocol(self) -> asyncio.Protocol:
        server = self

        class Tracked(asyncio.StreamReaderProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server._transports.append(transport)
                super().connection_made(transport)

        return Tracked(asyncio.StreamReader(), self._handle)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The request head (the tests' requests carry no body unless said)."""
    return await reader.readuntil(b"\r\n\r\n")


def request(
    method: str,
    url: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    content: Any = None,
    **extensions: Any,
) -> httpcore.Request:
    host = url.split("/")[2].encode()
    return httpcore.Request(
        method,
        url,
        headers=[(b"Host", host), *(headers or [])],
        content=content,
        extensions=extensions,
    )


async def read_body(response: httpcore.Response) -> bytes:
    stream = response.stream
    assert isinstance(stream, AsyncIterable)
    try:
        return b"".join([chunk async for chunk in stream])
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def exchange(
    conn: AsyncFastConnection, method: str, url: str, **kwargs: Any
) -> tuple[httpcore.Response, bytes]:
    response = await conn.handle_async_request(request(method, url, **kwargs))
    return response, await read_body(response)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def fds_back_to(baseline: int) -> None:
    """Closed transports release their socket on a later loop iteration:
    wait for that (bounded)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(_fds_at_most(baseline), 3)
    assert open_fds() <= baseline, os.listdir("/proc/self/fd")


async def _fds_at_most(baseline: int) -> None:
    while open_fds() > baseline:
        await asyncio.sleep(0.005)


async def connect(srv: TestServer | RawServer, **kwargs: Any) -> AsyncFastConnection:
    if isinstance(srv, RawServer):
        origin = srv.origin
    else:
        origin = httpcore.Origin(b"http", b"127.0.0.1", srv.port)
    return await AsyncFastConnection.open(origin, timeout=5, **kwargs)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for an event the loop's callbacks will bring."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{condition} never became true")


async def silent(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """A RawServer handler that reads the request and never answers."""
    await read_request(reader)
    await asyncio.Event().wait()
