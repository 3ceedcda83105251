"""An asyncio listener served from a private event loop in a daemon thread.

Theory of operation
-------------------
The local servers (the HTTP server and the delay proxy) each run their own
event loop in a background thread, so sync code, asyncio and trio can all
talk to them.  :class:`LoopThread` owns that thread: ``start()`` blocks until
the listener is bound (or raises :class:`LocalServerError` saying why not),
``stop()`` cancels every connection handler and joins the thread, both
bounded in time.  Subclasses implement ``_connection(reader, writer)``.

The thread accepts connections itself rather than through asyncio's server:
asyncio hands each accepted socket to a task of its own, and a task that is
cancelled before its first step (as the loop stops) never closes the socket.
Here every socket is recorded in the accept callback, so ``stop()`` can close
each one, whether or not anything ever ran for it, and waits (bounded) until
they all are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "LocalServerError",
    "LoopThread",
    "abort_with_rst",
    "close_writer",
    "set_linger_zero",
]

CLOSE_TIMEOUT = 1.0
#: As asyncio: a flood of connections does not starve the loop's other work.
ACCEPTS_PER_WAKEUP = 100
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0

_T = TypeVar("_T", bound="LoopThread")


class LocalServerError(RuntimeError):
    """A local server could not start (address busy or not available, ...)."""


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
    """Base class: an asyncio listener served from a private loop in a thread.

    *port* 0 picks a free port.  *extra_hosts* adds listening addresses
    (each on its own port unless *port* is given); :attr:`addresses` lists
    them all, ``(host, port)`` in order, *host* first.
    """

    _thread_name = "loop-thread"

    def __init__(self, host: str, port: int = 0, extra_hosts: Sequence[str] = ()):
        self.host = host
        self.port = port
        self.addresses: list[tuple[str, int]] = []
        self._requested_port = port
        self._extra_hosts = tuple(extra_hosts)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._accepted: list[socket.socket] = []
        self._unadopted: set[socket.socket] = set()
        self._prune_at = 1024  # closed sockets leave _accepted in batches
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
            raise LocalServerError(f"{type(self).__name__} did not start in time")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT)
            where = f"{self.host}:{self._requested_port}"
            reason = self._error.strerror if isinstance(self._error, OSError) else None
            raise LocalServerError(
                f"{type(self).__name__} failed to start on {where}: "
                f"{reason or self._error}"
            ) from self._error

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

    def _bind_hosts(self) -> str | list[str]:
        # "localhost" may resolve to two addresses, which would give two
        # listeners on two different ephemeral ports.
        host = "127.0.0.1" if self.host == "localhost" else self.host
        return [host, *self._extra_hosts] if self._extra_hosts else host

    async def _listener_tls(self) -> ssl.SSLContext | None:
        """Runs on the server's loop before it listens: the TLS context the
        listener handshakes with, if any."""
        return None

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
        tls = await self._listener_tls()
        listeners = _bind(self._bind_hosts(), self._requested_port)
        try:
            for listener in listeners:
                self._loop.add_reader(listener.fileno(), self._accept, listener, tls)
            self.addresses = [
                (str(s.getsockname()[0]), int(s.getsockname()[1])) for s in listeners
            ]
            self.port = self.addresses[0][1]
            self._ready.set()
            await self._stop_event.wait()
        finally:
            self._closing = True
            for listener in listeners:
                self._loop.remove_reader(listener.fileno())
                listener.close()
            await self._close_connections()

    def _accept(self, listener: socket.socket, tls: ssl.SSLContext | None) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:  # out of descriptors: try again later, as asyncio does
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(1.0, self._resume, listener, tls)
                return
            sock.setblocking(False)
            if len(self._accepted) >= self._prune_at:
                self._accepted = [s for s in self._accepted if s.fileno() != -1]
                self._prune_at = max(1024, 2 * len(self._accepted))
            self._accepted.append(sock)
            self._unadopted.add(sock)
            task = asyncio.get_running_loop().create_task(self._adopt(sock, tls))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self, listener: socket.socket, tls: ssl.SSLContext | None) -> None:
        if not self._closing:
            asyncio.get_running_loop().add_reader(
                listener.fileno(), self._accept, listener, tls
            )

    async def _adopt(self, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        """Wraps *sock* in a stream; its connection_made calls ``_handle``."""
        self._unadopted.discard(sock)
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._handle)

        timeout = None if tls is None else STOP_TIMEOUT
        # The transport owns *sock* from here on (it is made before the first
        # await); a failed or cancelled TLS handshake aborts it.
        with contextlib.suppress(OSError):
            await loop.connect_accepted_socket(
                protocol, sock, ssl=tls, ssl_handshake_timeout=timeout
            )

    async def _close_connections(self) -> None:
        """Until every accepted socket is closed: close those no task ever
        ran for, cancel the tasks, abort the connections whose handler never
        ran, and let the transports' close callbacks run."""
        for sock in self._unadopted:
            sock.close()
        cancelled: set[asyncio.Task[Any]] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        while any(sock.fileno() != -1 for sock in self._accepted):
            if loop.time() > deadline:
                for sock in self._accepted:
                    sock.close()  # pragma: no cover - a handler that never ends
                return
            pending = self._tasks - cancelled
            for task in pending:
                task.cancel()
            cancelled |= pending
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())
            else:
                for writer in self._writers:  # their handler task never ran
                    writer.transport.abort()
                await asyncio.sleep(0)  # abort() closes the socket in a callback

    def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        """The client_connected_cb: registers *writer* at once. Its task may
        be created as the loop stops, and asyncio.run cancels a task that
        has not started without running any of it: its ``finally`` never
        closes the connection, and the socket leaks."""
        self._writers.add(writer)
        return self._handle_task(reader, writer)

    async def _handle_task(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Tracks the task, always closes *writer*."""
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
            self._writers.discard(writer)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError


def _bind(hosts: str | list[str], port: int) -> list[socket.socket]:
    """Listening sockets, as ``asyncio.start_server(host=hosts, port=port)``
    makes them: every address each host resolves to."""
    listeners: list[socket.socket] = []
    try:
        for host in [hosts] if isinstance(hosts, str) else hosts:
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            for family, kind, proto, _, address in infos:
                sock = socket.socket(family, kind, proto)
                listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(100)
                sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners
