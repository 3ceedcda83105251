"""An asyncio listener served from a private event loop in a daemon thread.

Theory of operation
-------------------
The local servers (the HTTP server and the delay proxy) each run their own
event loop in a background thread, so sync code, asyncio and trio can all
talk to them.  :class:`LoopThread` owns that thread: ``start()`` blocks until
the listener is bound (or raises :class:`LocalServerError` saying why not),
``stop()`` cancels every connection handler and joins the thread, both
bounded in time.  Subclasses implement ``_connection(reader, writer)``.
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
        self.addresses = [
            (str(s.getsockname()[0]), int(s.getsockname()[1])) for s in listener.sockets
        ]
        self.port = self.addresses[0][1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            self._closing = True
            listener.close()
            await self._cancel_tasks()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), STOP_TIMEOUT)
            await self._abort_unserved()

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

    async def _abort_unserved(self) -> None:
        """Close the connections whose task never ran (see ``_handle``)."""
        writers, self._writers = self._writers, set()
        for writer in writers:
            writer.transport.abort()
        if writers:
            await asyncio.sleep(0)  # abort() releases the socket in a callback

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError
