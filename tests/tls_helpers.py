"""TLS test helpers: server contexts per TLS version, and a raw TLS server
whose connections misbehave on purpose (no close_notify, stalled handshake).

Used by ``tests/_async/test_tls.py`` (and its generated sync twin). Every
socket is closed by ``stop()``: the suite turns ResourceWarning into errors.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import types
from typing import Literal

import trustme

__all__ = ["TLS_VERSIONS", "RawTLSServer", "client_context", "server_context"]

#: "TLSv1.2-id" is TLS 1.2 without tickets: session-ID resumption, where
#: ``session.has_ticket`` is False and the session still resumes.
TLS_VERSIONS = ("TLSv1.2", "TLSv1.2-id", "TLSv1.3")


def server_context(cert: trustme.LeafCert, version: str) -> ssl.SSLContext:
    """A server context pinned to one TLS version (fresh ticket keys)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    if version == "TLSv1.3":
        pinned = ssl.TLSVersion.TLSv1_3
    else:
        pinned = ssl.TLSVersion.TLSv1_2
        if version == "TLSv1.2-id":
            ctx.options |= ssl.OP_NO_TICKET
    ctx.minimum_version = ctx.maximum_version = pinned
    return ctx


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


Behaviour = Literal["close-delimited", "no-response", "stall"]


class RawTLSServer:
    """A one-thread TLS server on 127.0.0.1, one connection at a time.

    * ``close-delimited``: answers without Content-Length and closes the
      socket without close_notify (a "ragged EOF", as many servers do).
    * ``no-response``: reads the request, closes without close_notify.
    * ``stall``: accepts and never takes part in the handshake.
    """

    def __init__(
        self, ctx: ssl.SSLContext, behaviour: Behaviour, body: bytes = b""
    ) -> None:
        self._ctx = ctx
        self._behaviour = behaviour
        self._body = body
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def __enter__(self) -> RawTLSServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._held:
            sock.close()
        self._listener.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            if self._behaviour == "stall":
                self._held.append(conn)  # closed by __exit__
                continue
            with contextlib.suppress(OSError):
                self._serve(conn)
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        tls = self._ctx.wrap_socket(conn, server_side=True)
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = tls.recv(65536)
                if not data:
                    return
                request += data
            if self._behaviour == "close-delimited":
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + self._body
                )
        finally:
            # SSLSocket.close() closes the descriptor without a TLS shutdown:
            # the client sees EOF with no close_notify.
            tls.close()
