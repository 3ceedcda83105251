"""A small HTTP/1.1 server (asyncio + h11) running in a background thread.

Theory of operation
-------------------
The server runs its own event loop in a daemon thread (see
:mod:`hintpool._local.loop`), so the demo, the benchmarks and the sync,
asyncio and trio tests can all use it.  It behaves like a real keep-alive
server: it announces ``Keep-Alive`` (``{left}`` counts ``max`` down like
Apache), closes a connection idle for ``idle_timeout`` with a FIN, and closes
after ``max_requests``.  It keeps server-side bookkeeping (how many
connections were opened, why each one was closed, whether a client wrote a
request on a connection the server had already decided to close, whether a
TLS handshake resumed a session) that any thread can read.

Responses are written as raw bytes (h11 only parses requests), which gives
full control over framing, HTTP/1.0 answers and the fault routes
(:mod:`hintpool._local.routes`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import h11

from .exchange import ServerConfig, read_request, respond
from .loop import (
    STOP_TIMEOUT,
    LocalServerError,
    LoopThread,
    abort_with_rst,
    close_writer,
)
from .routes import CloseConnection, Conn, fault, route

# StreamWriter.start_tls exists from Python 3.11; older versions let the
# listener do the handshake.
_HANDSHAKE_IN_HANDLER = sys.version_info >= (3, 11)

__all__ = ["ConnectionRecord", "LocalServer", "LocalServerError", "ServerConfig"]

#: After the server sends its FIN it keeps reading this long (or until the
#: client's EOF) so that requests sent on a closing connection can be counted.
LINGER_TIMEOUT = 2.0


@dataclass
class ConnectionRecord:
    #: 1-based in accept order (never reset, see :meth:`LocalServer.reset_counts`).
    number: int
    client_port: int
    requests: int = 0
    #: Finished from the server's point of view: FIN/RST sent or client EOF seen.
    closed: bool = False
    closed_by_server: bool = False
    #: "idle", "max", "close", "client", "error" or "stop"; None while open.
    reason: str | None = None
    #: Request bytes arrived after the server decided to close.
    request_after_close: bool = False
    #: TLS only: the handshake resumed a session (None: plain TCP).
    tls_resumed: bool | None = None
    #: ``time.perf_counter()`` when the connection (TLS: its handshake) was
    #: done, and when its first request had been read.  A client in the same
    #: process shares the clock: a first request read right after the
    #: handshake was waiting for that connection.
    ready_at: float = 0.0
    first_request_at: float | None = None


class LocalServer(LoopThread):
    """HTTP/1.1 server for the demo, benchmarks and tests; see the module doc."""

    __test__ = False  # re-exported as TestServer in tests: not a test class
    _thread_name = "hintpool-local-server"

    def __init__(
        self,
        host: str = "127.0.0.1",
        config: ServerConfig | None = None,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
        extra_hosts: Sequence[str] = (),
    ) -> None:
        super().__init__(host, port, extra_hosts)
        self.config = config if config is not None else ServerConfig()
        self.tls = tls
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._records: list[ConnectionRecord] = []
        self._numbers = 0
        self._opened = 0
        self._served = 0
        self._after_close = 0
        #: Requests to ``/hold`` waiting for :meth:`release_held`.
        self._held = 0
        self._release: asyncio.Event | None = None

    # -- public API ----------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._opened

    @property
    def requests_served(self) -> int:
        with self._lock:
            return self._served

    @property
    def requests_after_close(self) -> int:
        with self._lock:
            return self._after_close

    @property
    def connections(self) -> list[ConnectionRecord]:
        """A snapshot (copies) of the per-connection records, in accept order."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._records]

    def reset_counts(self) -> None:
        """Zero the counters and forget the records (numbers keep increasing)."""
        with self._lock:
            self._records = []
            self._opened = self._served = self._after_close = 0

    @property
    def held(self) -> int:
        """Requests to ``/hold`` received and not answered yet."""
        with self._lock:
            return self._held

    def wait_held(self, count: int, timeout: float = 5) -> None:
        """Block until at least *count* ``/hold`` requests are waiting."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._held >= count, timeout):
                raise TimeoutError(f"{count} held request(s) expected")

    def release_held(self) -> None:
        """Answer the ``/hold`` requests waiting, and later ones at once.

        A test holds a slow origin's responses for as long as it needs
        (instead of a fixed delay that makes it slow or flaky)."""
        loop, release = self._loop, self._release
        if loop is not None and release is not None:
            loop.call_soon_threadsafe(release.set)

    def wait_closed(self, count: int, timeout: float = 5) -> None:
        """Block until at least *count* recorded connections are closed."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(r.closed for r in self._records) >= count, timeout
            )
        if not ok:
            raise TimeoutError(
                f"{count} closed connection(s) expected, got {self.connections!r}"
            )

    # -- bookkeeping -------------------------------------------------------

    def _new_record(self, writer: asyncio.StreamWriter) -> ConnectionRecord:
        peer = writer.get_extra_info("peername")
        port = int(peer[1]) if isinstance(peer, tuple) and len(peer) > 1 else 0
        ssl_object = writer.get_extra_info("ssl_object")
        resumed = None if ssl_object is None else bool(ssl_object.session_reused)
        with self._lock:
            self._numbers += 1
            self._opened += 1
            record = ConnectionRecord(
                number=self._numbers,
                client_port=port,
                tls_resumed=resumed,
                ready_at=time.perf_counter(),
            )
            self._records.append(record)
            return record

    def _count_request(self, record: ConnectionRecord) -> int:
        with self._lock:
            if record.first_request_at is None:
                record.first_request_at = time.perf_counter()
            record.requests += 1
            self._served += 1
            return record.requests

    def _mark_closed(self, record: ConnectionRecord, by_server: bool, why: str) -> None:
        with self._cond:
            if not record.closed:
                record.closed = True
                record.closed_by_server = by_server
                record.reason = why
                self._cond.notify_all()

    def _mark_after_close(self, record: ConnectionRecord) -> None:
        with self._lock:
            if not record.request_after_close:
                record.request_after_close = True
                self._after_close += 1

    # -- connection handling -------------------------------------------------

    async def _hold(self) -> None:
        release = self._release
        assert release is not None
        with self._cond:
            self._held += 1
            self._cond.notify_all()
        try:
            await release.wait()
        finally:
            with self._lock:
                self._held -= 1

    async def _listener_tls(self) -> ssl.SSLContext | None:
        # Made on the server's loop (Python 3.9 binds an Event to the loop
        # current when it is made).
        self._release = asyncio.Event()
        return None if _HANDSHAKE_IN_HANDLER else self.tls

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.tls is not None and _HANDSHAKE_IN_HANDLER:
            # In the handler task, a handshake that stop() interrupts is
            # cancelled and its transport closed; one the listener ran itself
            # could outlive the loop and warn about an unclosed transport in
            # whatever test runs next.
            try:
                await writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
                    self.tls, ssl_handshake_timeout=STOP_TIMEOUT
                )
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                return  # a client that gave up mid-handshake: nothing to serve
        record = self._new_record(writer)
        conn = Conn(reader, writer, record.number)
        try:
            await self._serve(conn, record)
        except CloseConnection as close:
            await self._finish(conn, record, close)
        except asyncio.CancelledError:
            self._mark_closed(record, True, "stop")
            raise
        except Exception:  # a bug in the server: make it visible in records
            self._mark_closed(record, True, "error")
            abort_with_rst(writer)
            raise

    async def _finish(
        self, conn: Conn, record: ConnectionRecord, close: CloseConnection
    ) -> None:
        if close.how == "peer":
            self._mark_closed(record, False, close.reason)
        elif close.how == "rst":
            self._mark_closed(record, True, close.reason)
            abort_with_rst(conn.writer)
        else:
            await self._half_close_and_linger(conn, record, close.reason)

    async def _half_close_and_linger(
        self, conn: Conn, record: ConnectionRecord, reason: str
    ) -> None:
        """Send FIN, then watch for (and count) late request bytes.

        The record says closed only once the FIN (TLS: the close) was sent:
        a test woken by :meth:`wait_closed` that marked it first could reach
        the client's stale check before the FIN did (seen on a loaded CI
        run, where this thread lost the CPU in between).
        """
        writer = conn.writer
        try:
            if not writer.can_write_eof():  # TLS: no half-close, just close.
                await close_writer(writer)
                return
            writer.write_eof()
        except OSError:
            return
        finally:
            self._mark_closed(record, True, reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_TIMEOUT
        while (remaining := deadline - loop.time()) > 0:
            try:
                data = await conn.read(remaining)
            except (asyncio.TimeoutError, CloseConnection):
                return
            if not data:
                return
            self._mark_after_close(record)

    async def _serve(self, conn: Conn, record: ConnectionRecord) -> None:
        leftover, eof = b"", False
        while True:
            request, body, leftover, eof = await read_request(
                conn, leftover, eof, self.config.idle_timeout
            )
            await self._respond(conn, record, request, body)

    async def _respond(
        self, conn: Conn, record: ConnectionRecord, request: h11.Request, body: bytes
    ) -> None:
        cfg = self.config
        k = self._count_request(record)
        path = request.target.decode("latin-1").split("?", 1)[0]
        if path.startswith("/fault/"):
            await fault(conn, path[len("/fault/") :])
            return

        if path == "/hold":
            await self._hold()
        answer = await route(conn, request, body, k)
        await respond(conn, cfg, request, path, k, answer)
