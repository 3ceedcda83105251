"""A raw one-thread server that answers requests with scripted bytes.

For response shapes the local HTTP server never sends (1xx heads, broken
framing, a FIN right after a keep-alive response, silence). Every socket is
closed by ``__exit__``: the suite turns ResourceWarning into errors.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
import types
from collections.abc import Sequence
from typing import Literal

__all__ = ["ScriptedServer"]

#: What happens once the script has run out: FIN, keep the connection open,
#: or keep it open without reading (so the client's writes block).
After = Literal["close", "hold", "stall"]


class ScriptedServer:
    """Answers the n-th request on each connection with ``responses[n]``.

    ``None`` in ``responses`` means "read the request, send nothing".
    ``closed`` is set each time the server has closed a connection.
    """

    def __init__(
        self,
        responses: Sequence[bytes | None],
        after: After = "close",
        *,
        unix: bool = False,
        tls: ssl.SSLContext | None = None,
        dribble: bool = False,
    ) -> None:
        self._responses = list(responses)
        #: Send responses one byte per send() (split heads and chunk lines).
        self._dribble = dribble
        self._after = after
        self._tls = tls
        self._tmpdir: str | None = None
        if unix:
            self._tmpdir = tempfile.mkdtemp()
            self.path = os.path.join(self._tmpdir, "sock")
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(self.path)
            self._listener.listen()
            self.port = 0
        else:
            self._listener = socket.create_server(("127.0.0.1", 0))
            self.port = self._listener.getsockname()[1]
        self._listener.settimeout(0.05)
        self.closed = threading.Event()
        #: Set once the first request has arrived.
        self.request_seen = threading.Event()
        self.requests: list[bytes] = []
        #: How each "hold" connection ended: "eof" (a FIN; with TLS: after
        #: the client's close_notify), "ragged" (TLS: a FIN without one).
        self.endings: list[str] = []
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ScriptedServer:
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
        if self._tmpdir is not None:
            os.unlink(self.path)
            os.rmdir(self._tmpdir)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(5)
            if self._dribble:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                try:
                    conn = self._tls.wrap_socket(
                        conn, server_side=True, suppress_ragged_eofs=False
                    )
                except OSError:
                    conn.close()
                    continue
            keep = False
            with contextlib.suppress(OSError):
                keep = self._serve(conn)
            if keep:
                self._held.append(conn)
            else:
                conn.close()
                self.closed.set()

    def _serve(self, conn: socket.socket) -> bool:
        """True: leave the connection open."""
        pending = b""
        for response in self._responses:
            request, pending = _read_request(conn, pending)
            if request is None:
                return False
            self.requests.append(request)
            self.request_seen.set()
            if response is not None and self._dribble:
                for i in range(len(response)):
                    conn.sendall(response[i : i + 1])
            elif response is not None:
                conn.sendall(response)
        if self._after == "stall":
            return True
        if self._after == "hold":
            # Read (and discard) until the client goes away or we stop.
            conn.settimeout(0.05)
            while not self._stop.is_set():
                try:
                    if not conn.recv(65536):
                        self.endings.append("eof")
                        return False
                except socket.timeout:
                    continue
                except ssl.SSLEOFError:
                    self.endings.append("ragged")
                    return False
            return False
        return False


def _read_request(conn: socket.socket, pending: bytes) -> tuple[bytes | None, bytes]:
    """One request (head, and a Content-Length body), and what follows it."""
    data = pending
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]
