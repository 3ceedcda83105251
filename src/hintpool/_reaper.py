"""The reaper: closes idle connections at their deadline, without a request.

Theory of operation
-------------------
One timer per pool, driven by the pool's deadline heap: the reaper sleeps
until the nearest idle deadline, closes every connection whose deadline has
passed, and sleeps again. A connection that turns idle with a nearer
deadline than the one the reaper sleeps towards wakes it (``notify``), so
each request costs one float comparison. While connections are in use the
reaper sleeps at most ``REAPER_HEARTBEAT`` seconds: otherwise, after it saw
every connection busy (nothing to wait for), the next release would wake it
on every request.

While an idle connection belongs to an origin that sends no ``Keep-Alive``
hint and whose idle timeout is not learned yet, the reaper also wakes every
``WATCH_INTERVAL`` seconds and polls those sockets (one ``poll()`` call for
all of them): a server hang-up is then seen within that interval, and its
idle age teaches the pool that origin's timeout.

* Async (:class:`AsyncReaper`): a task in a task group that the pool's
  ``async with`` owns, so it never outlives the pool. A pool used without
  ``async with`` has no reaper: expired connections are then closed at the
  next request and at ``aclose()``.
* Sync (:class:`Reaper`): one daemon thread per pool, started when the first
  connection turns idle. It holds only a weak reference to the pool between
  wake-ups and stops when the pool is closed or garbage-collected; a closed
  pool that is used again starts a new one.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._policy import WATCH_INTERVAL

if TYPE_CHECKING:
    from ._async.connection_pool import AsyncConnectionPool
    from ._sync.connection_pool import ConnectionPool

__all__ = ["REAPER_HEARTBEAT", "WATCH_INTERVAL", "AsyncReaper", "Reaper"]

#: Longest sleep while some connection is in use (see ``_reap``).
REAPER_HEARTBEAT = 1.0


class AsyncReaper:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._task_group: anyio.abc.TaskGroup | None = None
        self._wake: anyio.Event | None = None
        self._target = -math.inf  # not running: nothing to notify

    @property
    def running(self) -> bool:
        return self._task_group is not None

    async def start(self) -> None:
        if self._task_group is not None:
            return
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._run, name="hintpool reaper")

    async def stop(self) -> None:
        task_group, self._task_group = self._task_group, None
        self._target = -math.inf
        if task_group is not None:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)

    def notify(self, deadline: float) -> None:
        """A connection turned idle with this deadline."""
        if deadline < self._target and self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        pool = self._pool
        while True:
            self._wake = anyio.Event()
            wake_at = await pool._reap()
            self._target = wake_at
            delay = wake_at - pool._clock()
            if delay > 0:
                with anyio.move_on_after(None if math.isinf(delay) else delay):
                    await self._wake.wait()
            else:
                await anyio.lowlevel.checkpoint()


class Reaper:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool_ref: weakref.ref[ConnectionPool] = weakref.ref(pool)
        self._clock = pool._clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._target = math.inf

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Nothing to do: the thread starts with the first idle connection."""

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        with self._lock:
            if thread is None or not thread.is_alive():
                # A closed pool stays usable: the next idle connection
                # starts a new thread.
                self._thread = None
                self._stopped = False
                self._target = math.inf

    def notify(self, deadline: float) -> None:
        if deadline >= self._target:
            return
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_reaper_thread,
                    args=(self._pool_ref, self._wake, self),
                    name="hintpool-reaper",
                    daemon=True,
                )
                self._thread.start()
        self._target = deadline
        self._wake.set()

    def _wait(self, wake_at: float) -> None:
        self._target = wake_at
        delay = wake_at - self._clock()
        if delay > 0:
            self._wake.wait(None if math.isinf(delay) else delay)
        self._wake.clear()


def _reaper_thread(
    pool_ref: weakref.ref[ConnectionPool], wake: threading.Event, reaper: Reaper
) -> None:
    while not reaper._stopped:
        pool: Any = pool_ref()
        if pool is None:
            return
        try:
            wake_at = pool._reap()
        finally:
            del pool  # no strong reference while sleeping
        reaper._wait(wake_at)
