"""FastConnection: one HTTP/1.1 connection on a blocking socket (the sync wire).

Theory of operation
-------------------
The sync twin of :class:`hintpool._asyncio_connection.AsyncFastConnection`,
with the same method names as unasync maps them. All HTTP/1.1 framing lives
in the sans-I/O :class:`hintpool._h1.H1Codec`; this module only moves bytes:

* send: the request head and a small in-memory body leave in one ``sendall``
  (one syscall, one TCP segment with ``TCP_NODELAY``); large or streamed
  bodies follow in further ``sendall`` calls.
* receive: ``recv_into`` the thread's receive buffer
  (:mod:`hintpool._recv_buffer`, shared by the thread's connections; the
  codec copies what it keeps), at most 64 KiB a read, and feed the codec
  until it has the final head; the response stream then yields the body chunks the
  codec collected, reading more only when it has none left.
* timeouts are the socket's own. ``settimeout`` is only called when the
  wanted value differs from the one set last (the value is cached), which on
  a keep-alive connection with fixed timeouts means never after the first.

A response read to its end leaves the connection idle when the codec says it
is reusable; any error, or closing a response whose bytes have not all
arrived, closes it. A response whose bytes all arrived but whose chunks the
caller did not take is still reusable: the connection is at a message
boundary, the untaken chunks are dropped.

TLS is ``SSLContext.wrap_socket(..., session=...)``, so a cached session can
be offered. A peer closing without ``close_notify`` (a "ragged EOF") is end
of stream after the handshake. ``close()`` sends our ``close_notify`` without
waiting for the peer's.

One request at a time per connection is the pool's guarantee: nothing here
takes a lock.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

from ._exceptions import (
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteError,
    WriteTimeout,
)
from ._h1 import H1Codec, ResponseHead
from ._recv_buffer import receive_buffer
from ._requests import ByteStream, checked_response
from ._socket_open import NetworkStream, open_socket, ssl_object_of, traced
from ._socket_response import ResponseStream
from ._socket_trace import exchange_traced
from ._stale import _readable
from ._trace_log import http11_trace

__all__ = ["FastConnection"]

#: Bytes taken per ``recv_into`` (the thread's buffer is larger: see _recv_buffer).
READ_SIZE = 65536
#: Request bytes gathered into one ``sendall``; a body chunk at least this
#: big is written on its own rather than copied into a join.
COALESCE_LIMIT = 65536

_IDLE, _ACTIVE, _CLOSED = 0, 1, 2


class FastConnection:
    """One HTTP/1.1 connection; see the module docstring."""

    __slots__ = (
        "_codec",
        "_no_reuse",
        "_state",
        "_timeout",
        "network_stream",
        "origin",
        "sock",
        "ssl_object",
    )

    def __init__(
        self, origin: httpcore.Origin, sock: socket.socket, timeout: float | None
    ) -> None:
        self.origin = origin
        self.sock: socket.socket | None = sock
        self.ssl_object: Any = ssl_object_of(sock)
        self.network_stream = NetworkStream(sock, self.ssl_object)
        self._codec = H1Codec()
        self._timeout = timeout  # the value the socket has now
        self._state = _IDLE
        # A request whose bytes did not all go out (a write error we read a
        # response after): whatever the response says, never reuse.
        self._no_reuse = False

    @classmethod
    def open(
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
    ) -> FastConnection:
        """Connect (TCP_NODELAY), then TLS when ``ssl_context`` is given.

        ``sock``: a socket connected already (through a proxy), taken over
        instead of connecting. Raises ConnectError / ConnectTimeout; nothing
        is left open on failure.
        """
        sock = open_socket(
            origin,
            timeout=timeout,
            uds=uds,
            local_address=local_address,
            socket_options=socket_options,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            session=session,
            trace=trace,
            sock=sock,
        )
        return cls(origin, sock, timeout)

    # -- the request -------------------------------------------------------

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._state != _IDLE:
            raise RuntimeError(f"connection is not idle: {self!r}")
        self._state = _ACTIVE
        extensions = request.extensions
        trace = http11_trace(extensions.get("trace"))
        timeouts = extensions.get("timeout")
        read_timeout = write_timeout = None
        if timeouts:
            read_timeout = timeouts.get("read")
            write_timeout = timeouts.get("write")
        try:
            if trace is None:
                head = self._exchange(request, write_timeout, read_timeout)
            else:
                head = exchange_traced(
                    self, request, trace, write_timeout, read_timeout
                )
        except BaseException:
            if trace is None:
                self._abort()
            else:
                traced(trace, "http11.response_closed", {}, self._abort)
            raise
        # Not through httpcore.Response(): that copies and re-checks every
        # header; the codec's list is already bytes pairs.
        return checked_response(
            head.status,
            head.headers,
            ResponseStream(self, request, read_timeout, trace),
            {
                "http_version": head.http_version,
                "reason_phrase": head.reason,
                "network_stream": self.network_stream,
            },
            head.hint_headers,
        )

    def _exchange(
        self,
        request: httpcore.Request,
        write_timeout: float | None,
        read_timeout: float | None,
    ) -> ResponseHead:
        head = self._codec.start_request(
            request.method, request.url.target, request.headers
        )
        try:
            self._send_body(request, [head], len(head), write_timeout)
        except WriteError:
            # As httpcore does: a server may stop reading and answer early
            # (413, 401): read its response rather than the EPIPE.
            self._no_reuse = True
        return self._receive_head(read_timeout)

    def _send_body(
        self,
        request: httpcore.Request,
        parts: list[bytes],
        pending: int,
        timeout: float | None,
    ) -> None:
        """Send the body after ``parts`` (unsent bytes, ``pending`` long),
        gathering small pieces so a small request is one ``sendall``."""
        codec = self._codec
        stream = request.stream
        # An in-memory body is taken as it is, without a generator.
        chunks = (stream.content,) if type(stream) is ByteStream else stream
        for chunk in cast("Iterable[bytes]", chunks):
            if not chunk:
                continue
            framed = codec.body_chunk(chunk)
            if len(framed) >= COALESCE_LIMIT:
                if parts:
                    self._write(b"".join(parts), timeout)
                    parts, pending = [], 0
                self._write(framed, timeout)
                continue
            parts.append(framed)
            pending += len(framed)
            if pending >= COALESCE_LIMIT:
                self._write(b"".join(parts), timeout)
                parts, pending = [], 0
        tail = codec.end_request()
        if tail:
            parts.append(tail)
        if parts:
            self._write(parts[0] if len(parts) == 1 else b"".join(parts), timeout)

    def _write(self, data: bytes, timeout: float | None) -> None:
        sock = cast(socket.socket, self.sock)
        if timeout != self._timeout:
            sock.settimeout(timeout)
            self._timeout = timeout
        try:
            sock.sendall(data)
        except socket.timeout as exc:
            raise WriteTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise WriteError(str(exc) or repr(exc)) from exc

    def _receive_head(self, timeout: float | None) -> ResponseHead:
        codec = self._codec
        while codec.head is None:
            self._receive(timeout)
        return codec.head

    def _receive(self, timeout: float | None) -> None:
        """One read into the codec (EOF included); raises on errors."""
        sock = cast(socket.socket, self.sock)
        if timeout != self._timeout:
            sock.settimeout(timeout)
            self._timeout = timeout
        try:
            buffer = receive_buffer()
            received = sock.recv_into(buffer, READ_SIZE)
        except socket.timeout as exc:
            raise ReadTimeout(str(exc) or "timed out") from exc
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            # A ragged EOF after the handshake: many servers close without
            # close_notify, and close-delimited bodies must still end.
            received = 0
        except OSError as exc:
            raise ReadError(str(exc) or repr(exc)) from exc
        codec = self._codec
        if received:
            try:
                codec.feed(buffer[:received])
            except RemoteProtocolError:
                if not codec.complete:
                    raise
                # Bytes beyond a complete response (a late 408, junk): the
                # response stands, the connection is never reused.
                self._no_reuse = True
            return
        codec.feed_eof()
        if not codec.complete:  # the codec must have raised; never spin on EOF
            raise RemoteProtocolError("Server disconnected.")

    # -- after the response ------------------------------------------------

    def _response_done(self) -> None:
        """The whole response arrived: idle again, or closed."""
        codec = self._codec
        codec.body.clear()
        if self._state != _ACTIVE:
            return
        # Idle either way: nobody reads any more, close() may say goodbye.
        self._state = _IDLE
        if self._no_reuse or not codec.recycle():
            self.close()

    # -- what the pool asks --------------------------------------------------

    def is_idle(self) -> bool:
        """No request in flight and reusable. Whether the peer has closed
        meanwhile takes a syscall: that is :meth:`server_closed`."""
        return self._state == _IDLE

    def is_closed(self) -> bool:
        return self._state == _CLOSED

    def is_active(self) -> bool:
        """A request is in flight: its response is not done yet."""
        return self._state == _ACTIVE

    def nothing_received(self) -> bool:
        return bool(self._codec.nothing_received)

    def server_closed(self) -> bool:
        """Idle, and the peer closed or sent something: must not be reused."""
        state = self._state
        if state != _IDLE:
            return state == _CLOSED
        sock = cast(socket.socket, self.sock)
        try:
            if not _readable(sock):
                return False
        except (OSError, ValueError):  # pragma: no cover - closed under us
            return True
        if self.ssl_object is None:
            return True
        return self._tls_closed(sock)

    def _tls_closed(self, sock: socket.socket) -> bool:
        """A readable idle TLS socket may only hold a post-handshake record
        (a TLS 1.3 session ticket): that is no reason to drop it."""
        sock.settimeout(0.0)
        self._timeout = 0.0
        try:
            sock.recv_into(receive_buffer(), 1)
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True
        return True  # EOF, close_notify or unexpected bytes

    def close(self) -> None:
        """Idempotent. TLS: an idle connection sends our close_notify, without
        waiting for the peer's. A busy one (the pool closing under a reader in
        another thread) is shut down first, which wakes a blocked read."""
        state = self._state
        if state == _CLOSED:
            return
        self._state = _CLOSED
        sock = self.sock
        if sock is None:  # pragma: no cover - never None once opened
            return
        if state == _ACTIVE:
            # No close_notify here: an SSL object must not be used by two
            # threads at once, and mid-response it means nothing anyway.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        elif isinstance(sock, ssl.SSLSocket):
            # Non-blocking: unwrap() sends our close_notify, then raises
            # SSLWantReadError instead of waiting for the peer's.
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(0.0)
                sock.unwrap()
        sock.close()

    def _abort(self) -> None:
        """Close after an error: no close_notify on a broken TLS session
        (OpenSSL forbids SSL_shutdown after a fatal error)."""
        self._state = _CLOSED
        if self.sock is not None:
            self.sock.close()

    def __repr__(self) -> str:
        state = ("IDLE", "ACTIVE", "CLOSED")[self._state]
        return f"<FastConnection [{self.origin}, {state}]>"
