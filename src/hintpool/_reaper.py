"""The reaper: closes idle connections at their deadline, without a request.

Theory of operation
-------------------
One timer per pool, driven by the pool's deadline heap: the reaper sleeps
until the nearest idle deadline, closes every connection whose deadline has
passed, and sleeps again. A connection that turns idle with a nearer
deadline than the one the reaper sleeps towards moves its timer earlier
(``notify``) but does not wake it, so each request costs one float
comparison, and a pass runs only when something is due. While connections
are in use the reaper sleeps at most ``REAPER_HEARTBEAT`` seconds:
otherwise, after it saw every connection busy (nothing to wait for), the
next release would move the timer on every request.

While an idle connection belongs to an origin that sends no ``Keep-Alive``
hint and whose idle timeout is not learned yet, the reaper also wakes every
``WATCH_INTERVAL`` seconds and polls those sockets (one ``poll()`` call for
all of them): a server hang-up is then seen within that interval, and the
idle age at the poll before, which found the connection still open, teaches
the pool that origin's timeout (``PooledConnection.learn_close``).

* Async (:class:`AsyncReaper`): a task in a task group entered by the
  pool's ``async with``, shared by the pools entered in the same task (so
  they may exit in any order) and exited with the last of them: a reaper
  never outlives its pool. A pool used without
  ``async with`` has no reaper: expired connections are then closed at the
  next request and at ``aclose()``.
* Sync (:class:`Reaper`): one daemon thread per process serves every sync
  pool, from a heap of the pools' next wake-ups. It starts when a first
  connection turns idle, holds a pool only while reaping it (weak references
  otherwise), and exits once no pool has a wake-up scheduled: when all are
  closed, garbage-collected or have nothing idle (a closed
  pool that is used again is scheduled again). One thread per pool cost a
  thread (and its stack) for every pool a program forgot to close.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable

import anyio
import anyio.abc

from ._policy import WATCH_INTERVAL

if TYPE_CHECKING:
    from ._async.connection_pool import AsyncConnectionPool
    from ._sync.connection_pool import ConnectionPool

__all__ = ["REAPER_HEARTBEAT", "WATCH_INTERVAL", "AsyncReaper", "Reaper"]

logger = logging.getLogger("hintpool")

#: Longest sleep while some connection is in use (see ``_reap``).
REAPER_HEARTBEAT = 1.0
#: Longest wait in ``close()`` for the sync reaper thread to exit.
STOP_TIMEOUT = 5.0


class _ReaperHost:
    """The task group that runs the reapers of the pools entered in one task.

    Shared, so that pools entered one after the other in a task may be
    exited in any order: httpx's clients enter their mounted transports
    after their own and exit them in that same order, which one task group
    per pool would not allow (anyio exits task groups innermost first). The
    group is exited when its last pool is.
    """

    __slots__ = ("task_group", "users")

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self.task_group = task_group
        self.users = 0


#: The reaper host of each task that has pools entered, by anyio task id.
_HOSTS: dict[int, _ReaperHost] = {}


class AsyncReaper:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._host_key: int | None = None
        self._scope: anyio.CancelScope | None = None
        #: The scope the reaper sleeps in; its deadline is the timer.
        self._sleep: anyio.CancelScope | None = None
        #: The wake-up the timer is set for, on the pool's clock; -inf
        #: while not sleeping (a pass sees every deadline): nothing to notify.
        self._target = -math.inf
        #: Cancel scopes of the background tasks ``spawn`` started: the
        #: task group is shared with other pools, so stop() cancels these.
        self._spawned: set[anyio.CancelScope] = set()

    @property
    def running(self) -> bool:
        return self._host_key is not None

    async def start(self) -> None:
        if self._host_key is not None:
            return
        key = anyio.get_current_task().id
        host = _HOSTS.get(key)
        if host is None:
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            host = _HOSTS[key] = _ReaperHost(task_group)
        host.users += 1
        self._host_key = key
        self._scope = scope = anyio.CancelScope()
        host.task_group.start_soon(self._run_in, scope, name="hintpool reaper")

    async def stop(self) -> None:
        key, self._host_key = self._host_key, None
        self._target = -math.inf
        if key is None:
            return
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        for spawned in self._spawned:
            spawned.cancel()
        self._spawned.clear()
        host = _HOSTS.get(key)
        if host is None:
            return
        host.users -= 1
        if host.users <= 0:
            del _HOSTS[key]
            host.task_group.cancel_scope.cancel()
            await host.task_group.__aexit__(None, None, None)

    async def _run_in(self, scope: anyio.CancelScope) -> None:
        with scope:  # cancelled by stop(), maybe before this task started
            await self._run()

    def notify(self, deadline: float) -> None:
        """A connection turned idle with this deadline."""
        if deadline < self._target:
            self._target = deadline
            sleep = self._sleep
            if sleep is not None:
                # Move the timer earlier; the task sleeps on.
                sleep.deadline = anyio.current_time() + (deadline - self._pool._clock())

    #: Background work (pre-warming) can run beside the reaper.
    spawns_tasks = True

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in the reaper's task group: it is cancelled when
        the pool closes. False when the reaper is not running."""
        host = None if self._host_key is None else _HOSTS.get(self._host_key)
        if host is None:
            return False
        scope = anyio.CancelScope()
        self._spawned.add(scope)
        host.task_group.start_soon(self._run_spawned, scope, fn, args)
        return True

    async def _run_spawned(
        self,
        scope: anyio.CancelScope,
        fn: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...],
    ) -> None:
        try:
            with scope:  # cancelled by stop(), maybe before this task started
                await fn(*args)
        finally:
            self._spawned.discard(scope)

    async def _run(self) -> None:
        pool = self._pool
        while True:
            # Also wake to forget origins left without a connection. The sync
            # reaper thread does not: it would outlive a dropped pool for
            # FORGET_AFTER seconds; sync pools forget at its other passes.
            wake_at = min(await pool._reap(), pool._state.next_forget())
            delay = wake_at - pool._clock()
            if delay <= 0:
                await anyio.lowlevel.checkpoint()
                continue
            # A timer, not an event: a nearer deadline moves it (notify)
            # without resuming this task, so a connection that turns idle
            # and is taken again before its watch or deadline comes costs
            # no pass (at one request at a time, that was a pass each).
            deadline = math.inf if math.isinf(delay) else anyio.current_time() + delay
            with anyio.CancelScope(deadline=deadline) as sleep:
                self._sleep, self._target = sleep, wake_at
                try:
                    await anyio.sleep_forever()
                finally:
                    self._sleep, self._target = None, -math.inf


class Reaper:
    """A sync pool's place in the process-wide reaper thread's schedule."""

    __slots__ = ("_clock", "_pool_ref", "_seq", "_stopped", "_target")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool_ref: weakref.ref[ConnectionPool] = weakref.ref(pool)
        self._clock = pool._clock
        self._stopped = False
        #: The wake-up scheduled for this pool, on the pool's clock (inf:
        #: none); read without a lock by ``notify``, written under
        #: ``_SHARED``'s lock.
        self._target = math.inf
        #: Sequence number of the valid heap entry (-1: none).
        self._seq = -1

    @property
    def running(self) -> bool:
        """This pool has a wake-up scheduled with a live reaper thread."""
        return self._seq >= 0 and _SHARED.alive()

    def start(self) -> None:
        """Nothing to do: the pool is scheduled with its first idle connection."""

    #: The shared reaper thread must not block on one pool's connects:
    #: sync pools do not pre-warm.
    spawns_tasks = False

    def spawn(self, fn: Callable[..., Any], *args: Any) -> bool:
        return False

    def stop(self) -> None:
        _SHARED.remove(self)
        # A closed pool stays usable: its next idle connection schedules it
        # again.
        self._stopped = False

    def notify(self, deadline: float) -> None:
        """A connection turned idle with this deadline (on the pool's clock)."""
        if deadline < self._target:
            _SHARED.schedule(self, deadline)


class _ReaperThread:
    """One daemon thread that runs the reaping of every sync pool.

    A heap of ``(monotonic time, seq, Reaper)`` says which pool is due next;
    an entry is valid while its ``seq`` is the reaper's ``_seq``, so a nearer
    deadline replaces an entry without searching the heap. The thread holds
    a pool only while reaping it (each ``Reaper`` has a weak reference), and
    exits as soon as no pool has a wake-up scheduled: a process whose pools
    are all closed, collected or without idle connections has no thread.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Reaper]] = []
        self._counter = itertools.count()
        self._scheduled = 0  # reapers with a valid entry
        self._thread: threading.Thread | None = None

    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def schedule(self, reaper: Reaper, deadline: float) -> None:
        """Wake up for ``reaper`` at ``deadline`` unless it is due sooner."""
        with self._cond:
            if reaper._stopped or deadline >= reaper._target:
                return
            if reaper._seq < 0:
                self._scheduled += 1
            reaper._target = deadline
            reaper._seq = seq = next(self._counter)
            # The heap runs on one clock for all pools: the monotonic one.
            when = time.monotonic() + (deadline - reaper._clock())
            heapq.heappush(self._heap, (when, seq, reaper))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hintpool-reaper", daemon=True
                )
                self._thread.start()
            else:
                # Maybe sooner than what the thread waits for; and a close()
                # waiting in remove() learns that the thread has work again.
                self._cond.notify_all()

    def remove(self, reaper: Reaper) -> None:
        """The pool was closed: drop it. If no other pool has a wake-up
        scheduled, wait (boundedly) until the thread has exited, so that
        closing the last pool leaves no thread behind."""
        with self._cond:
            reaper._stopped = True
            self._unschedule(reaper)
            thread = self._thread
            if thread is None or thread is threading.current_thread():
                return
            self._cond.notify_all()
            give_up = time.monotonic() + STOP_TIMEOUT
            # The thread may be reaping another pool that schedules again.
            while self._thread is thread and not self._scheduled:
                left = give_up - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)
            if self._thread is thread:
                return  # it has other pools to serve
        thread.join(STOP_TIMEOUT)

    def after_fork_in_child(self) -> None:
        """The child of a fork has no reaper thread: forget the schedule (and
        the parent's lock, maybe held at the fork). Each pool is scheduled
        again when a connection next turns idle; until then expired
        connections are still never reused (checked at checkout)."""
        for _, seq, reaper in self._heap:
            if reaper._seq == seq:
                reaper._seq = -1
                reaper._target = math.inf
        self._reset()

    def _unschedule(self, reaper: Reaper) -> None:
        if reaper._seq >= 0:
            self._scheduled -= 1
        reaper._seq = -1
        reaper._target = math.inf

    def _next_due(self) -> Reaper | None:
        """Wait for the next pool that is due; None when there is none left
        (the thread then exits)."""
        with self._cond:
            while True:
                heap = self._heap
                while heap and heap[0][2]._seq != heap[0][1]:
                    heapq.heappop(heap)  # replaced or removed
                if not self._scheduled:
                    self._heap = []
                    self._thread = None
                    self._cond.notify_all()  # for remove()
                    return None
                when, _, reaper = heap[0]
                delay = when - time.monotonic()
                if delay <= 0:
                    heapq.heappop(heap)
                    self._unschedule(reaper)
                    return reaper
                self._cond.wait(delay)

    def _run(self) -> None:
        while True:
            reaper = self._next_due()
            if reaper is None:
                return
            pool: Any = reaper._pool_ref()
            if pool is None:
                continue  # collected without close(): nothing left to reap
            try:
                wake_at = pool._reap()
            except Exception:  # one pool's bug must not stop the others'
                logger.exception("hintpool reaper: error reaping %r", pool)
                wake_at = pool._clock() + REAPER_HEARTBEAT
            finally:
                del pool  # no strong reference while waiting
            if not math.isinf(wake_at):
                self.schedule(reaper, wake_at)


_SHARED = _ReaperThread()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_SHARED.after_fork_in_child)
