"""Pool bookkeeping: per-origin idle stacks, one deadline heap, limits, queue.

Theory of operation
-------------------
Pure and synchronous: the async and the sync pool call in here (the sync
pool under its lock), then do the I/O this module asks for -- open a
connection, close these, wake that waiter. Nothing here awaits, so on an
event loop each call is atomic.

* Origins are ``(scheme, host, port)`` tuples (``hintpool._origin``), kept
  with their slots and counters by the base class ``hintpool._ledger``. Idle
  connections sit on per-origin LIFO stacks plus one deadline heap
  (``hintpool._idle``): checkout is O(1), finding expired connections or an
  eviction victim (``hintpool._evict``) O(log n), whatever the number of
  origins.
* Every counter is kept per origin and in ``totals`` at once
  (``hintpool._stats``): ``statistics()`` is O(1).
* ``close_all()`` starts a new ``generation``: connections out at that
  moment are closed when their response ends, never reused, and the pool
  stays usable.
* ``open_count`` counts every connection slot in use, connecting ones
  included, against ``max_connections``; ``idle_count`` counts idle ones
  against ``max_keepalive_connections`` (httpcore counts all connections
  there; the limit is about idle ones).
* Origins with no connection left are kept in ``vacant``, oldest vacancy
  first, so that forgetting is O(1) per origin, never a scan. When an
  origin arrives and at each reaper pass, the oldest vacant ones beyond
  ``max_origins`` go, and so does any origin vacant for ``FORGET_AFTER``
  seconds: a crawler that moved on does not keep its old origins forever.
* ``max_per_origin`` caps an origin's slots as ``max_connections`` caps
  all of them. A request that finds no slot waits in ``waiters``
  (``hintpool._waiters``): FIFO within an origin, and a freed slot goes to
  the oldest waiter that can use it, so an origin at its cap holds up no
  other. Invariants: while a waiter of an origin is queued that origin has
  no idle connection, and while a waiter that could take a new slot is
  queued no slot is free and nothing is idle, because every connection that
  turns idle and every slot that frees is first offered to the queue.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Union

from . import _prewarm
from ._evict import IDLE_LIMIT, OPEN_LIMIT, pick_victim
from ._idle import IdleConnections
from ._ledger import FORGET_AFTER, ORIGIN_LIMIT, OriginLedger
from ._multiplex import handed_stream, stream_done
from ._origin import (
    MAX_WATCHED,
    RELEARN_AFTER,
    RESERVED,
    WAIT,
    OriginState,
    PooledConnection,
    Sentinel,
    WaiterLike,
)
from ._policy import LifetimePolicy
from ._stats import (
    Counters,
    OriginKey,
    OriginStatistics,
    PoolStatistics,
    origin_label,
)

__all__ = [
    "FORGET_AFTER",
    "MAX_WATCHED",
    "RELEARN_AFTER",
    "RESERVED",
    "WAIT",
    "CheckoutResult",
    "Counters",
    "OriginKey",
    "OriginState",
    "OriginStatistics",
    "PoolState",
    "PoolStatistics",
    "PooledConnection",
    "origin_label",
]

CheckoutResult = Union[PooledConnection, Sentinel]


class PoolState(OriginLedger, IdleConnections):
    """The pool's bookkeeping; see the module docstring."""

    def __init__(
        self,
        *,
        max_connections: float,
        max_idle: float,
        policy: LifetimePolicy,
        server_closed: Callable[[PooledConnection], bool],
        max_origins: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        proxy_label: str | None = None,
        proxy_key: OriginKey | None = None,
        max_per_origin: float = math.inf,
    ) -> None:
        OriginLedger.__init__(
            self,
            max_connections=max_connections,
            max_idle=max_idle,
            max_per_origin=max_per_origin,
            max_origins=max_origins,
            clock=clock,
            proxy_label=proxy_label,
            proxy_key=proxy_key,
        )
        IdleConnections.__init__(self)
        self.server_closed = server_closed
        self.policy = policy
        #: Which idle connection a limit closes: see hintpool._evict.
        self.eviction = "unproven"
        #: Open replacements ahead of need (hintpool._prewarm); the pool
        #: turns it on while it can run background tasks.
        self.prewarm_enabled = False
        #: Origins with a slot reserved for a pre-warm the pool must start.
        self.prewarm_due: list[OriginState] = []

    # -- checkout ------------------------------------------------------------

    def checkout(
        self,
        origin: OriginState,
        now: float,
        to_close: list[PooledConnection],
        fresh: bool = False,
    ) -> CheckoutResult:
        """An idle connection (started), RESERVED or WAIT.

        Connections found expired are appended to ``to_close``. ``fresh``
        skips the idle connections (a retry wants a new connection).
        """
        origin.previous_request = origin.last_request
        origin.last_request = now
        stack = origin.idle
        while stack and not fresh:
            conn = stack.pop()
            self._unidle(conn)
            if self._usable(conn, now):
                self._start_reused(conn)
                return conn
            self._lost_connection(origin)
            self.open_count -= 1
            to_close.append(conn)
        if self._heap and self._heap[0][0] <= now:
            self.evict_expired(now, to_close)
        if self.waiters and self._must_queue(origin.key):
            return WAIT
        if origin.open >= self.max_per_origin:
            if not stack:
                return WAIT
            # A fresh connection (a retry) in place of an idle one.
            self._evict(self.take_idle(stack[-1]), to_close, ORIGIN_LIMIT)
            return self._reserve(origin)
        if self.open_count < self.max_connections:
            return self._reserve(origin)
        if self.idle_count:
            self._evict(pick_victim(self, None), to_close, OPEN_LIMIT)
            return self._reserve(origin)
        return WAIT

    def _usable(self, conn: PooledConnection, now: float) -> bool:
        """Check an idle connection taken off the pool; close it if it is not.

        Past its deadline it expires. Otherwise the wire is asked whether the
        server already hung up (a FIN makes an idle socket readable).
        """
        lifetime = conn.lifetime
        if now >= lifetime.idle_deadline:
            lifetime.expire()
            self.count(conn.origin, "expired")
            return False
        if self.server_closed(conn):
            lifetime.close()
            self.count(conn.origin, "closed_by_server")
            conn.learn_close(now, self.policy.margin)
            return False
        lifetime.open_seen = now
        return True

    def _start_reused(self, conn: PooledConnection) -> None:
        lifetime = conn.lifetime
        origin = conn.origin
        if not lifetime.requests_served:  # pre-warmed: its first request
            self.count(origin, "prewarm_used")
            self.count(origin, "requests")
            lifetime.start_request()
            return
        lifetime.start_request()
        origin.requests += 1
        origin.reused += 1
        totals = self.totals
        totals.requests += 1
        totals.reused += 1

    def claim(
        self, conn: PooledConnection, now: float, to_close: list[PooledConnection]
    ) -> CheckoutResult:
        """A waiter takes the idle connection handed to it, or, if that one
        went stale meanwhile, keeps its slot for a new connection."""
        if conn.generation != self.generation:  # the pool was closed meanwhile
            conn.lifetime.close()
            to_close.append(conn)
            return RESERVED
        if self._usable(conn, now):
            self._start_reused(conn)
            return conn
        to_close.append(conn)
        return RESERVED

    def _evict(
        self, conn: PooledConnection, to_close: list[PooledConnection], limit: str
    ) -> None:
        """Close an idle connection (already off the pool) to respect a limit."""
        conn.lifetime.close()
        self._count_eviction(conn.origin, limit)
        self._lost_connection(conn.origin)
        self.open_count -= 1
        to_close.append(conn)

    def connection_opened(self, conn: PooledConnection) -> None:
        """A connection was opened in a reserved slot; its first request starts."""
        self.count_opened(conn)
        conn.origin.requests += 1
        self.totals.requests += 1
        conn.lifetime.start_request()

    # -- release -------------------------------------------------------------

    def release(
        self,
        conn: PooledConnection,
        now: float,
        reusable: bool,
        to_close: list[PooledConnection],
    ) -> None:
        """The response on ``conn`` was closed.

        ``reusable`` says whether the wire connection is clean and idle (the
        body was read to its end). The connection goes to the first waiter,
        to its origin's idle stack, or into ``to_close``.
        """
        origin = conn.origin
        lifetime = conn.lifetime
        if not reusable or conn.generation != self.generation:
            # httpcore already closed it (the server said Connection: close,
            # the body was not read, an error): retired if the server had
            # announced the end, closed otherwise.
            lifetime.response_aborted()
        else:
            window = origin.idle_window(self.policy, lifetime.last_hint)
            if lifetime.response_done(now, window):
                self._make_idle(conn, to_close)
                return
        if lifetime.retired_by_max:
            self.count(origin, "retired_by_max")
            self._drop(conn, to_close)
            _prewarm.consider(self, origin, now)
            return
        if lifetime.retired_by_close:
            self.count(origin, "retired_by_close")
        self._drop(conn, to_close)

    def _drop(self, conn: PooledConnection, to_close: list[PooledConnection]) -> None:
        self._lost_connection(conn.origin)
        self.open_count -= 1
        to_close.append(conn)
        self._offer_slot(conn.origin.key)

    def _make_idle(
        self,
        conn: PooledConnection,
        to_close: list[PooledConnection],
        spare: bool = False,
    ) -> None:
        waiters = self.waiters
        if waiters:
            waiter = waiters.oldest(conn.origin.key, self.can_open)
            if waiter is not None:
                if waiter.key == conn.origin.key:
                    # Handed over idle: the waiter claims (and checks) it.
                    waiters.assign(waiter, conn)
                    return
                # The oldest waiter wants another origin (below its cap):
                # its turn comes first, so this connection makes way for it.
                conn.lifetime.close()
                self._count_eviction(conn.origin, OPEN_LIMIT)
                self._drop(conn, to_close)
                return
        self.push_idle(conn, spare)
        if self.idle_count > self.max_idle:
            self._evict(pick_victim(self, conn), to_close, IDLE_LIMIT)

    # -- idle connections --------------------------------------------------

    def evict_expired(self, now: float, to_close: list[PooledConnection]) -> None:
        """Move every idle connection whose deadline has passed to ``to_close``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, conn = heapq.heappop(heap)
            if conn.heap_seq != seq:
                continue
            if conn.origin.watched is conn:
                conn.reached_deadline(now, self.policy.margin)
            self.take_idle(conn)
            conn.lifetime.expire()
            self.count(conn.origin, "expired")
            self._lost_connection(conn.origin)
            self.open_count -= 1
            to_close.append(conn)
            if not conn.origin.open:  # its last one (a spare's expiry is not)
                _prewarm.consider(self, conn.origin, now)

    def watch_idle(self, now: float, to_close: list[PooledConnection]) -> None:
        """The reaper's poll of the watched idle connections: each is seen
        open ``now``, or closed by the server (then learned from, dropped)."""
        for conn in list(self.watched):
            if self.server_closed(conn):
                self.idle_closed_by_server(conn, now, to_close)
            else:
                conn.lifetime.open_seen = now

    def idle_closed_by_server(
        self, conn: PooledConnection, now: float, to_close: list[PooledConnection]
    ) -> None:
        """The reaper saw the server hang up on an idle connection."""
        if conn.heap_seq < 0:  # no longer idle: someone took it meanwhile
            return
        self.take_idle(conn)
        conn.lifetime.close()
        self.count(conn.origin, "closed_by_server")
        conn.learn_close(now, self.policy.margin)
        self._drop(conn, to_close)

    def recycle(
        self, conn: PooledConnection, to_close: list[PooledConnection]
    ) -> Sentinel:
        """Close a connection handed to a waiter that wants a fresh one; the
        waiter keeps the slot (same origin) and opens a new connection."""
        conn.lifetime.close()
        self.count(conn.origin, "evicted")
        to_close.append(conn)
        return RESERVED

    def failed_on_reuse(
        self, conn: PooledConnection, now: float, to_close: list[PooledConnection]
    ) -> None:
        """A reused connection failed before any response byte: the server
        had closed it. Counted and learned from, then dropped."""
        self.count(conn.origin, "closed_by_server")
        conn.learn_close(now, self.policy.margin)
        self.discard(conn, to_close)

    def discard(self, conn: PooledConnection, to_close: list[PooledConnection]) -> None:
        """An active connection failed or was found closed: free its slot."""
        conn.lifetime.close()
        self._drop(conn, to_close)

    def abandon(self, waiter: WaiterLike, to_close: list[PooledConnection]) -> None:
        """A waiter gave up (timeout, cancellation): undo what it was given."""
        self.waiters.cancel(waiter)
        if not waiter.assigned:
            return
        result = waiter.result
        waiter.result = None
        if result is RESERVED:
            self.release_slot(self.origin(waiter.key))
        elif isinstance(result, PooledConnection):
            if handed_stream(result):  # a stream of a busy HTTP/2 connection
                stream_done(self, result, self.clock(), to_close)
            elif result.generation != self.generation:
                result.lifetime.close()
                self._drop(result, to_close)
            else:
                # Still idle and untouched: offer it to the next in line.
                self._make_idle(result, to_close)

    def close_all(self, to_close: list[PooledConnection]) -> None:
        """Pool close: every idle connection to ``to_close``, and a new
        generation, so the connections still active are closed when their
        response ends instead of turning idle. Waiters stay queued: slots
        those connections free serve them (the pool stays usable, as
        httpx's own transport does after ``close()``)."""
        self.generation += 1
        for conn in self.clear_idle():
            conn.lifetime.close()
            self._lost_connection(conn.origin)
            self.open_count -= 1
            to_close.append(conn)
