"""A blocking socket read by one thread while another writes: the sync
HTTP/2 connection's network stream.

Theory of operation
-------------------
The sync HTTP/2 connection lets one thread read while another writes
(``hintpool._sync.http2``). A plain socket allows that, but two things
around it do not:

* ``settimeout`` is the socket's state, not the call's: a writer setting
  its timeout changes the blocking mode under a reader already inside
  ``recv``, which then fails with ``BlockingIOError``.
* An ``SSLSocket`` is one OpenSSL ``SSL`` object, and OpenSSL does not
  allow two calls on it at once. ``SSL_read`` that needs more bytes
  returns "want read"; if ``SSL_write`` runs in between, it resets the
  object's I/O state, and ``SSL_get_error`` then reports a syscall error
  with no errno, which Python's ``ssl`` takes for a ragged EOF: ``recv``
  returns ``b""`` and the connection looks closed by the server ("Server
  disconnected") although it is healthy. Seen about once in 20 runs of 20
  threads sharing one TLS connection.

So this stream puts the socket in non-blocking mode once, calls
``recv``/``send`` (each returns at once) under one short lock, and waits
for readiness with ``poll`` *outside* the lock, against the call's own
deadline. A reader waiting for bytes never holds up a writer, and no two
calls into the socket (or OpenSSL) overlap.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from contextlib import suppress
from typing import Any

import httpcore

from ._tls_stream import _reason

__all__ = ["SharedSocketStream", "shared_stream"]

_WANT_READ = (ssl.SSLWantReadError, BlockingIOError, InterruptedError)
_WANT_WRITE = ssl.SSLWantWriteError


def shared_stream(stream: Any) -> Any:
    """``stream`` made safe for a reader and a writer at once: wrapped when
    it is on a socket, else (a user's network backend) as it is."""
    sock = stream.get_extra_info("socket")
    if not isinstance(sock, socket.socket):
        return stream
    return SharedSocketStream(stream, sock)


class SharedSocketStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, sock: socket.socket) -> None:
        self._stream = stream
        self._sock = sock
        self._lock = threading.Lock()
        sock.setblocking(False)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        sock = self._sock
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                try:
                    # A ragged EOF is b"" (suppress_ragged_eofs), as before.
                    return sock.recv(max_bytes)
                except _WANT_READ:
                    writing = False
                except _WANT_WRITE:  # TLS answering the server first
                    writing = True
                except ssl.SSLError as exc:
                    raise httpcore.ReadError(_reason(exc)) from exc
                except OSError as exc:
                    raise httpcore.ReadError(str(exc) or repr(exc)) from exc
            if not _wait(sock, writing, deadline):
                raise httpcore.ReadTimeout("timed out")

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._sock
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(buffer)
        while view:
            with self._lock:
                try:
                    # OpenSSL wants the same bytes again after "want write":
                    # the view only moves on by what was taken.
                    view = view[sock.send(view) :]
                    continue
                except _WANT_WRITE:
                    writing = True
                except _WANT_READ:
                    writing = False
                except ssl.SSLError as exc:
                    raise httpcore.WriteError(_reason(exc)) from exc
                except OSError as exc:
                    raise httpcore.WriteError(str(exc) or repr(exc)) from exc
            if not _wait(sock, writing, deadline):
                raise httpcore.WriteTimeout("timed out")

    def close(self) -> None:
        # Closing the descriptor does not wake a thread polling it; shutting
        # down its reading side does (and still lets TLS say close_notify).
        with suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RD)
        with self._lock:
            self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        raise NotImplementedError("TLS on a shared HTTP/2 stream")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            with self._lock:
                return self._stream.get_extra_info(info)
        return self._stream.get_extra_info(info)


def _wait(sock: socket.socket, writing: bool, deadline: float | None) -> bool:
    """Wait until ``sock`` is ready (or closed); False once past ``deadline``."""
    remaining = None
    if deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
    if sock.fileno() < 0:
        return True  # closed meanwhile: the next call says so
    if not hasattr(select, "poll"):  # Windows
        rlist, wlist = ([], [sock]) if writing else ([sock], [])
        return bool(any(select.select(rlist, wlist, [], remaining))) or (
            deadline is None
        )
    poller = select.poll()
    poller.register(sock, select.POLLOUT if writing else select.POLLIN)
    ms = None if remaining is None else max(1, int(remaining * 1000 + 0.999))
    return bool(poller.poll(ms)) or deadline is None
