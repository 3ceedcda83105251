"""A small HTTP/1.1 test server (asyncio + h11) running in a background thread.

The server runs its own event loop in a daemon thread, so it can be used from
sync, asyncio and trio tests alike.  It keeps server-side bookkeeping (how many
connections were opened, why each one was closed, whether a client sent a
request on a connection the server had already decided to close) that tests
can read from any thread.

Responses are written as raw bytes (h11 is only used to parse requests), which
gives full control over framing, HTTP/1.0 answers and the fault routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, TypeVar

import h11

__all__ = ["ConnectionRecord", "ServerConfig", "TestServer"]

READ_SIZE = 65536
#: Bound on reading the rest of a request once its first byte arrived.
REQUEST_TIMEOUT = 30.0
#: After the server sends its FIN it keeps reading this long (or until the
#: client's EOF) so that requests sent on a closing connection can be counted.
LINGER_TIMEOUT = 2.0
#: Upper bound for ``/delay/S``.
MAX_DELAY = 30.0
#: ``/fault/trickle`` gives up after this many seconds.
TRICKLE_DURATION = 20.0
TRICKLE_INTERVAL = 0.5
CLOSE_TIMEOUT = 1.0
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
MAX_BYTES = 256 * 1024 * 1024

_T = TypeVar("_T", bound="LoopThread")


def set_linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the next close of *writer*'s socket send an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )


def abort_with_rst(writer: asyncio.StreamWriter) -> None:
    set_linger_zero(writer)
    writer.transport.abort()


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close *writer* and wait (bounded) until its transport is gone."""
    if not writer.is_closing():
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except (asyncio.TimeoutError, OSError, ssl.SSLError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


class LoopThread:
    """Base class: an asyncio listener served from a private loop in a thread."""

    _thread_name = "loop-thread"

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- public lifecycle -------------------------------------------------

    @property
    def thread(self) -> threading.Thread | None:
        """The background thread (kept after :meth:`stop` for inspection)."""
        return self._thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} can only be started once")
        self._thread = threading.Thread(
            target=self._run, name=self._thread_name, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"{type(self).__name__} did not start in time")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT)
            raise RuntimeError(f"{type(self).__name__} failed to start") from (
                self._error
            )

    def stop(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} thread did not stop")

    def __enter__(self: _T) -> _T:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- loop-thread internals -----------------------------------------------

    def _bind_host(self) -> str:
        # "localhost" may resolve to two addresses, which would give two
        # listeners on two different ephemeral ports.
        return "127.0.0.1" if self.host == "localhost" else self.host

    async def _listen(self) -> asyncio.Server:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported to start(); never leaks from the thread
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        listener = await self._listen()
        self.port = listener.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            self._closing = True
            listener.close()
            await self._cancel_tasks()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), STOP_TIMEOUT)

    async def _cancel_tasks(self) -> None:
        cancelled: set[asyncio.Task[Any]] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT / 2
        while loop.time() < deadline:
            # Let handlers of just-accepted connections register themselves.
            for _ in range(3):
                await asyncio.sleep(0)
            pending = self._tasks - cancelled
            if not pending and not (self._tasks & cancelled):
                return
            for task in pending:
                task.cancel()
            cancelled |= pending
            if self._tasks:
                timeout = max(deadline - loop.time(), 0.01)
                await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """The client_connected_cb: tracks the task, always closes *writer*."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if not self._closing:
                await self._connection(reader, writer)
        except asyncio.CancelledError:
            # stop() cancelled us.  Do not end the task as cancelled: on
            # Python < 3.12 asyncio's stream callback then logs a spurious
            # "Exception in callback" (task.exception() raises).
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            with contextlib.suppress(asyncio.CancelledError):
                await close_writer(writer)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError


@dataclass
class ServerConfig:
    #: Value of the ``Keep-Alive`` response header (None: no header);
    #: ``{left}`` in it becomes the number of requests the connection still
    #: accepts after this one (Apache's countdown of ``max``).
    keep_alive: str | None = None
    #: Close (FIN) a connection idle this long after a response (None: never).
    idle_timeout: float | None = 5.0
    #: Close the connection after serving this many requests on it.
    max_requests: int | None = None
    #: Send ``Connection: close`` on the max_requests-th response.  When False
    #: the server just closes after it (a "lying" server).
    close_on_last: bool = True
    #: ``b"1.0"`` answers with HTTP/1.0 status lines and closes every time.
    http_version: bytes = b"1.1"


@dataclass
class ConnectionRecord:
    #: 1-based in accept order (never reset, see :meth:`TestServer.reset_counts`).
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


_How = Literal["fin", "rst", "peer"]


class _Close(Exception):
    """Raised inside a connection handler to end the connection."""

    def __init__(self, reason: str, how: _How = "fin") -> None:
        super().__init__(reason)
        self.reason = reason
        self.how: _How = how


class _Conn:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: ConnectionRecord,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.record = record

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, ssl.SSLError) as exc:
            raise _Close("client", "peer") from exc

    async def read(self, timeout: float | None) -> bytes:
        """Read some bytes (b"" on EOF); raises asyncio.TimeoutError."""
        try:
            if timeout is None:
                return await self.reader.read(READ_SIZE)
            return await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
        except asyncio.TimeoutError:  # an OSError subclass on Python >= 3.11
            raise
        except (OSError, ssl.SSLError) as exc:
            raise _Close("client", "peer") from exc


def _status_line(version: bytes, status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return b"HTTP/%s %d %s\r\n" % (version, status, phrase.encode("ascii"))


def _head(version: bytes, status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [_status_line(version, status)]
    lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


def _tokens(request: h11.Request, name: bytes) -> set[bytes]:
    out: set[bytes] = set()
    for key, value in request.headers:
        if key == name:
            out.update(t.strip().lower() for t in value.split(b","))
    return out


_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


class TestServer(LoopThread):
    """HTTP/1.1 server for the integration tests; see the module docstring."""

    __test__ = False  # not a pytest test class
    _thread_name = "hintpool-test-server"

    def __init__(
        self,
        host: str = "127.0.0.1",
        config: ServerConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host)
        self.config = config if config is not None else ServerConfig()
        self.tls = tls
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._records: list[ConnectionRecord] = []
        self._numbers = 0
        self._opened = 0
        self._served = 0
        self._after_close = 0

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
        with self._lock:
            self._numbers += 1
            self._opened += 1
            record = ConnectionRecord(number=self._numbers, client_port=port)
            self._records.append(record)
            return record

    def _count_request(self, record: ConnectionRecord) -> int:
        with self._lock:
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

    async def _listen(self) -> asyncio.Server:
        if self.tls is None:
            return await asyncio.start_server(self._handle, self._bind_host(), 0)
        return await asyncio.start_server(
            self._handle,
            self._bind_host(),
            0,
            ssl=self.tls,
            ssl_handshake_timeout=STOP_TIMEOUT,
        )

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = _Conn(reader, writer, self._new_record(writer))
        try:
            await self._serve(conn)
        except _Close as close:
            await self._finish(conn, close)
        except asyncio.CancelledError:
            self._mark_closed(conn.record, True, "stop")
            raise
        except Exception:  # a bug in the server: make it visible in records
            self._mark_closed(conn.record, True, "error")
            abort_with_rst(writer)
            raise

    async def _finish(self, conn: _Conn, close: _Close) -> None:
        if close.how == "peer":
            self._mark_closed(conn.record, False, close.reason)
        elif close.how == "rst":
            self._mark_closed(conn.record, True, close.reason)
            abort_with_rst(conn.writer)
        else:
            self._mark_closed(conn.record, True, close.reason)
            await self._half_close_and_linger(conn)

    async def _half_close_and_linger(self, conn: _Conn) -> None:
        """Send FIN, then watch for (and count) late request bytes."""
        writer = conn.writer
        if not writer.can_write_eof():  # TLS: no half-close, just close.
            return
        try:
            writer.write_eof()
        except OSError:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_TIMEOUT
        while (remaining := deadline - loop.time()) > 0:
            try:
                data = await conn.read(remaining)
            except (asyncio.TimeoutError, _Close):
                return
            if not data:
                return
            self._mark_after_close(conn.record)

    async def _serve(self, conn: _Conn) -> None:
        leftover, eof = b"", False
        while True:
            request, body, leftover, eof = await self._read_request(conn, leftover, eof)
            await self._respond(conn, request, body)

    async def _read_request(
        self, conn: _Conn, leftover: bytes, eof: bool
    ) -> tuple[h11.Request, bytes, bytes, bool]:
        parser = h11.Connection(h11.SERVER)
        started = bool(leftover)
        if leftover:
            parser.receive_data(leftover)
        if eof:
            parser.receive_data(b"")
        request: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                if eof:
                    raise _Close("client", "peer") from exc
                await conn.send(_BAD_REQUEST)
                raise _Close("error") from exc
            if event is h11.NEED_DATA:
                if eof:
                    raise _Close("client", "peer")
                timeout = REQUEST_TIMEOUT if started else self.config.idle_timeout
                try:
                    data = await conn.read(timeout)
                except asyncio.TimeoutError as exc:
                    raise _Close("error" if started else "idle") from exc
                started = started or bool(data)
                eof = not data
                parser.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                trailing, closed = parser.trailing_data
                return request, bytes(body), trailing, closed or eof
            elif isinstance(event, h11.ConnectionClosed):
                raise _Close("client", "peer")

    async def _respond(self, conn: _Conn, request: h11.Request, body: bytes) -> None:
        cfg = self.config
        k = self._count_request(conn.record)
        path = request.target.decode("latin-1").split("?", 1)[0]
        if path.startswith("/fault/"):
            await self._fault(conn, path[len("/fault/") :])
            return

        http10 = cfg.http_version == b"1.0"
        version = b"1.0" if http10 else b"1.1"
        connection = _tokens(request, b"connection")
        client_close = b"close" in connection or (
            request.http_version == b"1.0" and b"keep-alive" not in connection
        )
        head_only = request.method == b"HEAD"

        status, headers, payload, chunked = await self._route(conn, request, body, k)
        if http10:
            chunked = False  # HTTP/1.0: the body is delimited by the close

        reason: str | None = None
        if http10 or client_close or path == "/close":
            reason = "close"
        elif cfg.max_requests is not None and k >= cfg.max_requests:
            reason = "max"

        no_body = status in (204, 304)
        out: list[tuple[str, str]] = []
        if no_body:
            payload = b""
        elif chunked:
            out.append(("Transfer-Encoding", "chunked"))
        elif not (http10 and path.startswith("/chunked/")):
            out.append(("Content-Length", str(len(payload))))
        if cfg.keep_alive is not None and not http10:
            # "{left}" counts down like Apache: requests still accepted after
            # this one on this connection.
            left = 100 if cfg.max_requests is None else max(0, cfg.max_requests - k)
            out.append(("Keep-Alive", cfg.keep_alive.replace("{left}", str(left))))
        if not http10 and (
            reason == "close" or (reason == "max" and cfg.close_on_last)
        ):
            out.append(("Connection", "close"))
        out += headers

        await conn.send(_head(version, status, out))
        if not (head_only or no_body):
            if chunked:
                for i in range(0, len(payload), 1000):
                    piece = payload[i : i + 1000]
                    await conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                await conn.send(b"0\r\n\r\n")
            else:
                for i in range(0, len(payload), READ_SIZE):
                    await conn.send(payload[i : i + READ_SIZE])
        if reason is not None:
            raise _Close(reason)

    async def _route(
        self, conn: _Conn, request: h11.Request, body: bytes, k: int
    ) -> tuple[int, list[tuple[str, str]], bytes, bool]:
        """Return (status, extra headers, body, chunked) for a normal route."""
        path = request.target.decode("latin-1").split("?", 1)[0]
        bad: tuple[int, list[tuple[str, str]], bytes, bool]
        bad = (400, [], b"bad request", False)
        if path == "/":
            return 200, [], b"hello", False
        if path == "/echo":
            return 200, [("X-Method", request.method.decode("latin-1"))], body, False
        if path == "/headers":
            items = [
                [n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers
            ]
            payload = json.dumps(items).encode()
            return 200, [("Content-Type", "application/json")], payload, False
        if path == "/close":
            return 200, [], b"closing", False
        if path == "/conn":
            number = str(conn.record.number).encode()
            return 200, [("X-Request-On-Conn", str(k))], number, False
        prefix, _, arg = path[1:].partition("/")
        try:
            if prefix in ("bytes", "chunked"):
                n = int(arg)
                if not 0 <= n <= MAX_BYTES:
                    return bad
                return 200, [], b"x" * n, prefix == "chunked"
            if prefix == "delay":
                await asyncio.sleep(min(max(float(arg), 0.0), MAX_DELAY))
                return 200, [], b"delayed", False
            if prefix == "status":
                status = int(arg)
                if not 200 <= status <= 999:
                    return bad
                return status, [], b"", False
        except ValueError:
            return bad
        return 404, [], b"not found", False

    async def _fault(self, conn: _Conn, name: str) -> None:
        chunked_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        if name == "reset-headers":
            raise _Close("error", "rst")
        if name == "reset-body":
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
            await conn.send(head + b"x" * 10)
            await asyncio.sleep(0.05)  # let the 10 bytes reach the client first
            raise _Close("error", "rst")
        if name == "garbage":
            await conn.send(b"NOT HTTP AT ALL\r\n\r\n")
            raise _Close("error")
        if name == "truncated-chunked":
            await conn.send(chunked_head + b"5\r\nhello\r\n")
            raise _Close("error")
        if name == "close-no-response":
            raise _Close("error")
        if name == "trickle":
            await self._trickle(conn)
            raise _Close("error")
        if name == "huge-headers":
            headers = [(f"X-Huge-{i:03d}", "a" * 1000) for i in range(200)]
            headers.append(("Content-Length", "5"))
            await conn.send(_head(b"1.1", 200, headers) + b"hello")
            return
        await conn.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    async def _trickle(self, conn: _Conn) -> None:
        """Status line, then one header byte per TRICKLE_INTERVAL (bounded)."""
        await conn.send(b"HTTP/1.1 200 OK\r\n")
        header = b"X-Trickle: " + b"a" * 200
        loop = asyncio.get_running_loop()
        end = loop.time() + TRICKLE_DURATION
        next_send = loop.time() + TRICKLE_INTERVAL
        i = 0
        while i < len(header) and loop.time() < end:
            # Wait for the next tick, noticing a client that went away.
            try:
                data = await conn.read(max(next_send - loop.time(), 0.0))
            except asyncio.TimeoutError:
                await conn.send(header[i : i + 1])
                i += 1
                next_send += TRICKLE_INTERVAL
                continue
            if not data:
                raise _Close("client", "peer")
