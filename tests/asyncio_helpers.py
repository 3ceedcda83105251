"""Helpers for the AsyncFastConnection tests (asyncio only).

:class:`RawServer` is an asyncio server in the test's own loop whose handler
writes whatever bytes a test wants: 1xx heads, malformed responses, stalls,
closes at chosen moments. Every server-side socket is closed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
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

CLOSE_TIMEOUT = 5.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """``async with RawServer(handler) as srv``: ``srv.port``, ``srv.origin``.

    The server accepts in a reader callback of its own, so every accepted
    socket is recorded the moment it exists.  asyncio's own server hands a
    fresh socket to a task that may not have run yet when the test ends, and
    a task cancelled before it starts never closes anything: the socket leaks
    (a ResourceWarning in a later test).  At exit each socket is either
    closed here (its task never ran) or by its task, and the exit waits
    (bounded) until every one of them really is closed.
    """

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._accepted: list[_Accepted] = []
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def origin(self) -> httpcore.Origin:
        scheme = b"http" if self._tls is None else b"https"
        return httpcore.Origin(scheme, b"127.0.0.1", self.port)

    @property
    def url(self) -> str:
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RawServer:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        listener, self._listener = self._listener, None
        assert listener is not None
        # Connections still in the kernel's backlog are reset by the close.
        asyncio.get_running_loop().remove_reader(listener.fileno())
        listener.close()
        tasks = []
        for accepted in self._accepted:
            if not accepted.started:
                # Cancelled before it runs, the task never touches the socket.
                accepted.sock.close()
            accepted.task.cancel()
            tasks.append(accepted.task)
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
        # An aborted transport closes its socket in a later callback.
        await _until(lambda: all(a.sock.fileno() == -1 for a in self._accepted))

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            sock.setblocking(False)
            accepted = _Accepted(sock)
            accepted.task = asyncio.get_running_loop().create_task(
                self._serve(accepted)
            )
            self._accepted.append(accepted)

    async def _serve(self, accepted: _Accepted) -> None:
        accepted.started = True
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, accepted.sock, ssl=self._tls
            )
        except OSError:
            return  # a failed TLS handshake: asyncio has aborted the transport
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            transport.abort()


class _Accepted:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.task: asyncio.Task[None]
        self.started = False


async def _until(condition: Callable[[], bool]) -> None:
    """Wait, bounded, for *condition*: callbacks already scheduled run first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_TIMEOUT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{condition} still false after {CLOSE_TIMEOUT} s")
        await asyncio.sleep(0)


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
