"""AsyncFastConnection: one HTTP/1.1 connection on asyncio, for the pool.

Theory of operation
-------------------
The connection is an asyncio ``Protocol`` (:mod:`hintpool._asyncio_protocol`
moves the bytes, runs TLS and the waits) driving the sans-I/O
:class:`hintpool._h1.H1Codec`. This module opens it and runs exchanges:

* send: the request head and the first body chunk leave in one
  ``transport.write`` (one syscall for a GET or a small in-memory body);
  further chunks follow, waiting only while the transport is over its
  high-water mark, with the write timeout.
* receive: the caller waits on one future for the final head; the
  response stream takes body chunks straight from the codec and only waits
  when none are left.
* trace: httpcore's ``trace`` extension gets the same event names and
  arguments as from httpcore's own connection; one ``if`` per step when no
  callback is set.

``server_closed()`` is answered by the loop's callbacks (a FIN, a reset, or
unasked-for bytes while idle) when the loop has seen them. A FIN can also
be waiting in the kernel unseen: the loop learns of it only on its next
turn, and a task that sends its next request as soon as the last response
was read gives it none (the task's wake-up is queued before the loop looks
at its sockets again). So a live idle connection is also polled once at
checkout -- one ``poll()`` on a poll object kept per connection, about
0.6 us, against the request lost or retried if the FIN went unseen.

A response read to its end leaves the connection idle when the codec says it
is reusable. A response whose bytes have all arrived is at a message
boundary even when its chunks were not taken: closing it keeps the
connection (as the sync twin does). Any error, a cancellation, or closing a
response whose bytes have not all arrived closes the connection.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

from ._asyncio_open import connect
from ._asyncio_protocol import H1Protocol
from ._asyncio_response import NetworkStream, ResponseStream
from ._asyncio_trace import exchange_traced, open_traced
from ._exceptions import ConnectError, ConnectTimeout
from ._h1 import ResponseHead
from ._requests import ByteStream, checked_response
from ._stale import _readable
from ._trace_log import async_http11_trace

__all__ = ["AsyncFastConnection"]

#: A first body chunk up to this size is joined to the head in one write.
COALESCE_LIMIT = 65536

_NO_TIMEOUTS: dict[str, float | None] = {}
_HAS_POLL = hasattr(select, "poll")


class AsyncFastConnection(H1Protocol):
    """One HTTP/1.1 connection; see the module docstring."""

    def __init__(self, origin: httpcore.Origin) -> None:
        super().__init__()
        self.origin = origin
        self.network_stream: NetworkStream | None = None
        self._poller: Any = None  # select.poll, made at the first checkout

    # -- opening ---------------------------------------------------------

    @classmethod
    async def open(
        cls,
        origin: httpcore.Origin,
        *,
        timeout: float | None,
        uds: str | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
        trace: Any = None,
        sock: socket.socket | None = None,
    ) -> AsyncFastConnection:
        """Connect, then TLS when ``ssl_context`` is given.

        ``sock``: a socket connected already (through a proxy), taken over
        instead of connecting. ConnectError / ConnectTimeout on failure;
        nothing stays open after a failure or a cancellation.
        """
        conn = cls(origin)
        try:
            if trace is None or sock is not None:
                await conn._connect(timeout, uds, local_address, socket_options, sock)
                if ssl_context is not None:
                    await conn._start_tls(
                        ssl_context, server_hostname, session, timeout
                    )
            else:
                await open_traced(
                    conn,
                    trace,
                    timeout,
                    uds,
                    local_address,
                    socket_options,
                    ssl_context,
                    server_hostname,
                    session,
                )
        except BaseException:
            conn._close()
            raise
        return conn

    async def _connect(
        self,
        timeout: float | None,
        uds: str | None,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
        sock: socket.socket | None = None,
    ) -> None:
        origin = self.origin
        opening = connect(
            self._loop,
            self._self,
            origin.host.decode("ascii"),
            origin.port,
            uds,
            local_address,
            socket_options,
            sock,
        )
        try:
            if timeout is None:
                await opening
            else:
                await asyncio.wait_for(opening, timeout)
        # Before OSError: the built-in TimeoutError (ETIMEDOUT) is one, and
        # asyncio's is the built-in on Python >= 3.11.
        except (asyncio.TimeoutError, TimeoutError) as exc:
            where = uds or f"{origin.host.decode('ascii')}:{origin.port}"
            raise ConnectTimeout(f"Timed out connecting to {where}") from exc
        except OSError as exc:
            raise ConnectError(str(exc) or repr(exc)) from exc
        assert self._transport is not None
        self.network_stream = NetworkStream(self, self._transport)

    def _self(self) -> AsyncFastConnection:
        return self

    # -- sending ---------------------------------------------------------

    async def _send_body(
        self, stream: Any, pending: bytes, timeout: float | None
    ) -> None:
        """Write the body, the first chunk joined to ``pending`` (the head)."""
        codec = self._codec
        async for chunk in stream:
            if not chunk:
                continue
            framed = codec.body_chunk(chunk)
            if pending:
                if len(framed) <= COALESCE_LIMIT:
                    framed = pending + framed
                else:
                    self._write(pending)
                pending = b""
            self._write(framed)
            if self._peer_closed or self._closed:
                return  # what the server said, if anything, is read next
            if self._write_paused:
                await self._wait_drained(timeout)
        end = codec.end_request()
        if pending or end:
            self._write(pending + end)

    # -- the exchange ----------------------------------------------------

    async def handle_async_request(
        self, request: httpcore.Request
    ) -> httpcore.Response:
        if not self._idle:
            state = "closed" if self._closed else "busy"
            raise RuntimeError(f"request sent on a {state} connection")
        self._idle = False
        self._active = True
        self._got_bytes = False
        self._error = None
        self._unconsumed = 0
        self._cycle += 1
        extensions = request.extensions
        trace = async_http11_trace(extensions.get("trace"))
        timeouts = extensions.get("timeout", _NO_TIMEOUTS)
        self._read_timeout = timeouts.get("read")
        try:
            if trace is None:
                codec = self._codec
                pending = codec.start_request(
                    request.method, request.url.target, request.headers
                )
                stream = request.stream
                if type(stream) is ByteStream and not stream.content:
                    # No body (a GET): what _send_body() would do, without
                    # an async generator to iterate.
                    self._write(pending + codec.end_request())
                else:
                    await self._send_body(stream, pending, timeouts.get("write"))
                head = codec.head
                while head is None:  # _receive_head(), two coroutines less
                    waiter = self._new_waiter(True)
                    if waiter is not None:
                        try:
                            await waiter
                        finally:
                            self._waiter = None
                        if self._error is not None:
                            raise self._error
                    head = codec.head
            else:
                head = await exchange_traced(self, request, trace, timeouts)
        except BaseException:
            self._active = False
            self._close()
            if trace is not None:
                await trace("http11.response_closed.started", {})
                await trace("http11.response_closed.complete", {"return_value": None})
            raise
        # The head's own header list: httpcore's constructor would copy it.
        return checked_response(
            head.status,
            head.headers,
            ResponseStream(self, request, trace),
            {
                "http_version": head.http_version,
                "reason_phrase": head.reason,
                "network_stream": self.network_stream,
            },
            head.hint_headers,
        )

    async def _receive_head(self) -> ResponseHead:
        codec = self._codec
        while codec.head is None:
            await self._wait(True)
        return codec.head

    def _response_done(self, cycle: int) -> None:
        """The response of ``cycle`` was read to its end, or closed."""
        if cycle != self._cycle or not self._active:
            return
        self._active = False
        codec = self._codec
        if (
            codec.complete
            and self._error is None
            and not self._peer_closed
            and not self._closed
            and codec.recycle()
        ):
            self._idle = True
            if self._reading_paused:
                self._taken()
        else:
            self._close()

    # -- state -----------------------------------------------------------

    def is_idle(self) -> bool:
        return self._idle and not self._peer_closed

    def is_closed(self) -> bool:
        return self._closed

    def nothing_received(self) -> bool:
        return not self._got_bytes

    def server_closed(self) -> bool:
        if not self._idle:
            return False
        if self._peer_closed:
            return True
        # See the module doc: a FIN the loop has not seen yet.
        poller = self._poller
        try:
            if not _HAS_POLL:  # pragma: no cover - no poll() on this platform
                closed = _readable(self.sock)
            else:
                if poller is None:
                    poller = self._poller = select.poll()
                    poller.register(self.sock.fileno(), select.POLLIN)
                closed = bool(poller.poll(0))
        except (OSError, ValueError):  # pragma: no cover - closed under us
            closed = True
        if closed:
            self._peer_closed = True
        return closed

    # -- closing ---------------------------------------------------------

    async def aclose(self) -> None:
        self._close()
        if self._transport is not None and not self._lost:
            # The transport releases the socket in a callback on the next
            # loop iteration: run it, so that (as with httpcore's streams)
            # the descriptor is closed when aclose() returns.
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        if self._closed:
            state = "CLOSED"
        elif self._active:
            state = "ACTIVE"
        else:
            state = "IDLE" if not self._peer_closed else "SERVER-CLOSED"
        return f"<AsyncFastConnection [{self.origin}, {state}]>"
