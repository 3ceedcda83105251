"""Pool bookkeeping: per-origin idle stacks, one deadline heap, limits, queue.

Theory of operation
-------------------
Pure and synchronous: the async and the sync pool call in here (the sync
pool under its lock), then do the I/O this module asks for -- open a
connection, close these, wake that waiter. Nothing here awaits, so on an
event loop each call is atomic.

* Origins are ``(scheme, host, port)`` tuples. Each has a LIFO stack of idle
  connections: the most recently used one has the furthest deadline, and the
  older ones are left to age out.
* One global heap orders every idle connection by idle deadline, so finding
  expired connections and the oldest idle one costs O(log n) whatever the
  number of origins. Entries are invalidated lazily (a connection's
  ``heap_seq`` changes when it leaves the idle state) and the heap is
  compacted when stale entries outnumber live ones.
* ``open_count`` counts every connection slot in use, connecting ones
  included, against ``max_connections``; ``idle_count`` counts idle ones
  against ``max_keepalive_connections`` (httpcore counts all connections
  there; the limit is about idle ones).
* A request that finds no slot waits in a FIFO queue. Invariant: while a live
  waiter is queued there is no idle connection, because every connection
  that turns idle is first offered to the queue.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, Union

from ._hints import KeepAlive
from ._policy import WATCH_INTERVAL, Lifetime, LifetimePolicy

__all__ = [
    "RESERVED",
    "WAIT",
    "OriginKey",
    "OriginStatistics",
    "PoolState",
    "PoolStatistics",
    "PooledConnection",
]

OriginKey = tuple[bytes, bytes, int]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: checkout result: a slot is reserved, open a new connection in it.
RESERVED: Final = _Sentinel("RESERVED")
#: checkout result: no slot, queue a waiter.
WAIT: Final = _Sentinel("WAIT")
#: waiter result: the pool was closed while waiting.
POOL_CLOSED: Final = _Sentinel("POOL_CLOSED")

#: Seconds after which a learned idle timeout is re-measured.
RELEARN_AFTER: Final = 600.0
#: Idle connections watched for a server hang-up at once, all origins.
MAX_WATCHED: Final = 256


class WaiterLike(Protocol):
    key: Any
    cancelled: bool
    assigned: bool
    result: Any

    def assign(self, result: Any) -> None: ...


def origin_label(key: OriginKey) -> str:
    scheme, host, port = key
    host_text = host.decode("ascii", "replace")
    if ":" in host_text:  # IPv6 literal
        host_text = f"[{host_text}]"
    return f"{scheme.decode('ascii')}://{host_text}:{port}"


class OriginState:
    """What the pool knows and counts about one origin."""

    __slots__ = (
        "closed_by_server",
        "connections_opened",
        "evicted",
        "expired",
        "idle",
        "key",
        "last_hint",
        "learned_at",
        "learned_timeout",
        "open",
        "requests",
        "retired_by_close",
        "retired_by_max",
        "retries",
        "reused",
        "tls_handshake_seconds",
        "tls_handshakes_full",
        "tls_handshakes_resumed",
        "watched",
    )

    def __init__(self, key: OriginKey) -> None:
        self.key = key
        self.idle: list[PooledConnection] = []
        self.open = 0
        self.last_hint: KeepAlive | None = None
        self.learned_timeout: float | None = None
        self.learned_at = 0.0
        #: The one idle connection the reaper watches for this origin.
        self.watched: PooledConnection | None = None
        self.connections_opened = 0
        self.requests = 0
        self.reused = 0
        self.retired_by_max = 0
        self.retired_by_close = 0
        self.expired = 0
        self.evicted = 0
        self.closed_by_server = 0
        self.retries = 0
        self.tls_handshakes_full = 0
        self.tls_handshakes_resumed = 0
        self.tls_handshake_seconds = 0.0

    def learn_idle_close(self, age: float, now: float) -> None:
        """The server closed one of our idle connections ``age`` s after use.

        Only for origins that send no timeout hint (a hint always wins). The
        estimate is the smallest age seen; it is forgotten after
        ``RELEARN_AFTER`` seconds so a one-off early close (a restart) does
        not stop reuse for good.
        """
        hint = self.last_hint
        if hint is not None and hint.timeout is not None:
            return
        age = max(0.0, age)
        learned = self.learned_timeout
        if learned is None or age < learned or now - self.learned_at > RELEARN_AFTER:
            self.learned_timeout = age
            self.learned_at = now

    def needs_watching(self, now: float) -> bool:
        """Should the reaper watch this origin's idle connections for closes?"""
        hint = self.last_hint
        if hint is not None and hint.timeout is not None:
            return False
        if self.learned_timeout is None:
            return True
        if now - self.learned_at > RELEARN_AFTER:
            self.learned_timeout = None
            return True
        return False


class PooledConnection:
    """One connection as the pool sees it: the wire object plus its lifetime."""

    __slots__ = ("connection", "heap_seq", "lifetime", "origin", "sock", "tls")

    def __init__(
        self, origin: OriginState, connection: Any, sock: Any = None, tls: Any = None
    ) -> None:
        self.origin = origin
        self.connection = connection
        # The raw socket (anything with fileno()), for the stale check; None
        # when the stream has none (mock streams).
        self.sock = sock
        # hintpool._tls.TLSConnectionInfo for a TLS connection we started.
        self.tls = tls
        self.lifetime = Lifetime()
        self.heap_seq = -1

    def __repr__(self) -> str:
        return (
            f"<PooledConnection {origin_label(self.origin.key)} "
            f"{self.lifetime.state.value} served={self.lifetime.requests_served}>"
        )


@dataclass(frozen=True)
class OriginStatistics:
    """Counters for one origin, as of the :meth:`statistics` call."""

    connections_opened: int
    requests: int
    reused: int
    retired_by_max: int
    retired_by_close: int
    expired: int
    evicted: int
    closed_by_server: int
    retries: int
    last_hint: KeepAlive | None
    learned_timeout: float | None
    open: int
    idle: int
    active: int
    tls_handshakes_full: int = 0
    tls_handshakes_resumed: int = 0
    #: Seconds spent in TLS handshakes, all of this origin's connections.
    tls_handshake_seconds: float = 0.0


@dataclass(frozen=True)
class PoolStatistics:
    """Totals over the pool's life, current counts, and the per-origin view.

    ``origins`` is keyed ``"scheme://host:port"``.
    """

    connections_opened: int
    requests: int
    reused: int
    retired_by_max: int
    retired_by_close: int
    expired: int
    evicted: int
    closed_by_server: int
    retries: int
    open: int
    idle: int
    active: int
    waiting: int
    tls_handshakes_full: int = 0
    tls_handshakes_resumed: int = 0
    tls_handshake_seconds: float = 0.0
    origins: dict[str, OriginStatistics] = field(default_factory=dict)


_TOTAL_FIELDS: Final = (
    "connections_opened",
    "requests",
    "reused",
    "retired_by_max",
    "retired_by_close",
    "expired",
    "evicted",
    "closed_by_server",
    "retries",
    "tls_handshakes_full",
    "tls_handshakes_resumed",
    "tls_handshake_seconds",
)

CheckoutResult = Union[PooledConnection, _Sentinel]


class PoolState:
    """The pool's bookkeeping; see the module docstring."""

    def __init__(
        self,
        *,
        max_connections: float,
        max_idle: float,
        policy: LifetimePolicy,
        server_closed: Callable[[PooledConnection], bool],
        max_origins: int = 10_000,
    ) -> None:
        self.server_closed = server_closed
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.policy = policy
        self.max_origins = max_origins
        self.origins: dict[OriginKey, OriginState] = {}
        self.open_count = 0
        self.idle_count = 0
        self.waiters: deque[WaiterLike] = deque()
        #: Idle connections the reaper watches for a server hang-up: at most
        #: one per hint-less origin still learning its timeout.
        self.watched: set[PooledConnection] = set()
        self._heap: list[tuple[float, int, PooledConnection]] = []
        self._seq = 0
        # Totals of origins forgotten by the LRU bound, so pool totals stay
        # right however many origins come and go.
        self._forgotten = dict.fromkeys(_TOTAL_FIELDS, 0)

    # -- origins -----------------------------------------------------------

    def origin(self, key: OriginKey) -> OriginState:
        state = self.origins.get(key)
        if state is None:
            state = self.origins[key] = OriginState(key)
            if len(self.origins) > self.max_origins:
                self._forget_origins(keep=key)
        return state

    def _forget_origins(self, keep: OriginKey) -> None:
        """Drop the oldest origins that have no connection left (never
        ``keep``, the one being created)."""
        excess = len(self.origins) - self.max_origins
        for key in list(self.origins):
            if excess <= 0:
                break
            state = self.origins[key]
            if state.open == 0 and key != keep:
                for name in _TOTAL_FIELDS:
                    self._forgotten[name] += getattr(state, name)
                del self.origins[key]
                excess -= 1

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
        stack = origin.idle
        while stack and not fresh:
            conn = stack.pop()
            self._unidle(conn)
            if self._usable(conn, now):
                self._start_reused(conn)
                return conn
            origin.open -= 1
            self.open_count -= 1
            to_close.append(conn)
        if self._heap and self._heap[0][0] <= now:
            self.evict_expired(now, to_close)
        if self.waiters:
            self._prune_waiters()
        if not self.waiters:
            if self.open_count < self.max_connections:
                return self._reserve(origin)
            if self.idle_count:
                self._evict(self._pop_oldest_idle(), to_close)
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
            conn.origin.expired += 1
            return False
        if self.server_closed(conn):
            lifetime.close()
            conn.origin.closed_by_server += 1
            conn.origin.learn_idle_close(now - lifetime.idle_since, now)
            return False
        return True

    def _unidle(self, conn: PooledConnection) -> None:
        """Bookkeeping for a connection leaving the idle set (not the stack)."""
        conn.heap_seq = -1
        self.idle_count -= 1
        if conn.origin.watched is conn:
            conn.origin.watched = None
            self.watched.discard(conn)

    def _start_reused(self, conn: PooledConnection) -> None:
        conn.lifetime.start_request()
        origin = conn.origin
        origin.requests += 1
        origin.reused += 1

    def claim(
        self, conn: PooledConnection, now: float, to_close: list[PooledConnection]
    ) -> CheckoutResult:
        """A waiter takes the idle connection handed to it, or, if that one
        went stale meanwhile, keeps its slot for a new connection."""
        if self._usable(conn, now):
            self._start_reused(conn)
            return conn
        to_close.append(conn)
        return RESERVED

    def _evict(self, conn: PooledConnection, to_close: list[PooledConnection]) -> None:
        """Close an idle connection (already off the pool) to respect a limit."""
        conn.lifetime.close()
        conn.origin.evicted += 1
        conn.origin.open -= 1
        self.open_count -= 1
        to_close.append(conn)

    def _reserve(self, origin: OriginState) -> _Sentinel:
        self.open_count += 1
        origin.open += 1
        return RESERVED

    def _prune_waiters(self) -> bool:
        """Drop cancelled waiters from the front; True if none is left."""
        waiters = self.waiters
        while waiters and waiters[0].cancelled:
            waiters.popleft()
        return not waiters

    def connection_opened(self, conn: PooledConnection) -> None:
        """A connection was opened in a reserved slot; its first request starts."""
        origin = conn.origin
        origin.connections_opened += 1
        origin.requests += 1
        conn.lifetime.start_request()
        tls = conn.tls
        if tls is not None:
            if tls.resumed:
                origin.tls_handshakes_resumed += 1
            else:
                origin.tls_handshakes_full += 1
            origin.tls_handshake_seconds += tls.handshake_seconds

    def release_slot(self, origin: OriginState) -> None:
        """A reserved slot was not used (connect failed): pass it on."""
        origin.open -= 1
        self.open_count -= 1
        self._offer_slot()

    def _offer_slot(self) -> None:
        """A slot became free: the first live waiter takes it."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.cancelled:
                self._reserve(self.origin(waiter.key))
                waiter.assign(RESERVED)
                return

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
        if not reusable:
            # httpcore already closed it (the server said Connection: close,
            # the body was not read, an error): retired if the server had
            # announced the end, closed otherwise.
            lifetime.response_aborted()
        else:
            window = self.policy.idle_window(lifetime.last_hint, origin.learned_timeout)
            if lifetime.response_done(now, window):
                self._make_idle(conn, to_close)
                return
        if lifetime.retired_by_max:
            origin.retired_by_max += 1
        elif lifetime.retired_by_close:
            origin.retired_by_close += 1
        self._drop(conn, to_close)

    def _drop(self, conn: PooledConnection, to_close: list[PooledConnection]) -> None:
        conn.origin.open -= 1
        self.open_count -= 1
        to_close.append(conn)
        self._offer_slot()

    def _make_idle(
        self, conn: PooledConnection, to_close: list[PooledConnection]
    ) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters[0]
            if waiter.cancelled:
                waiters.popleft()
                continue
            if waiter.key == conn.origin.key:
                # Handed over idle: the waiter claims (and checks) it.
                waiters.popleft()
                waiter.assign(conn)
                return
            # FIFO: the first waiter wants another origin. Its turn comes
            # first, so this connection makes way for it.
            conn.lifetime.close()
            conn.origin.evicted += 1
            self._drop(conn, to_close)
            return
        origin = conn.origin
        origin.idle.append(conn)
        self.idle_count += 1
        self._seq += 1
        conn.heap_seq = self._seq
        heapq.heappush(self._heap, (conn.lifetime.idle_deadline, self._seq, conn))
        if (
            origin.watched is None
            and len(self.watched) < MAX_WATCHED
            and origin.needs_watching(conn.lifetime.idle_since)
        ):
            origin.watched = conn
            self.watched.add(conn)
        if self.idle_count > self.max_idle:
            self._evict(self._pop_oldest_idle(), to_close)
        elif len(self._heap) > 2 * self.idle_count + 64:
            self._compact_heap()

    # -- idle connections --------------------------------------------------

    def _pop_oldest_idle(self) -> PooledConnection:
        """Take the idle connection with the nearest deadline off the pool."""
        heap = self._heap
        while True:
            _, seq, conn = heapq.heappop(heap)
            if conn.heap_seq == seq:
                conn.origin.idle.remove(conn)
                self._unidle(conn)
                return conn

    def evict_expired(self, now: float, to_close: list[PooledConnection]) -> None:
        """Move every idle connection whose deadline has passed to ``to_close``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, conn = heapq.heappop(heap)
            if conn.heap_seq != seq:
                continue
            conn.origin.idle.remove(conn)
            self._unidle(conn)
            conn.lifetime.expire()
            conn.origin.expired += 1
            conn.origin.open -= 1
            self.open_count -= 1
            to_close.append(conn)

    def wake_time(self, conn: PooledConnection) -> float:
        """When the reaper must look at this idle connection next."""
        deadline = conn.lifetime.idle_deadline
        if conn.origin.watched is conn:
            return min(deadline, conn.lifetime.idle_since + WATCH_INTERVAL)
        return deadline

    def next_deadline(self) -> float:
        """The earliest idle deadline (inf when nothing is idle)."""
        heap = self._heap
        while heap and heap[0][2].heap_seq != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def _compact_heap(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2].heap_seq == entry[1]]
        heapq.heapify(self._heap)

    def idle_closed_by_server(
        self, conn: PooledConnection, now: float, to_close: list[PooledConnection]
    ) -> None:
        """The reaper saw the server hang up on an idle connection."""
        if conn.heap_seq < 0:  # no longer idle: someone took it meanwhile
            return
        conn.origin.idle.remove(conn)
        self._unidle(conn)
        conn.lifetime.close()
        conn.origin.closed_by_server += 1
        conn.origin.learn_idle_close(now - conn.lifetime.idle_since, now)
        self._drop(conn, to_close)

    def recycle(
        self, conn: PooledConnection, to_close: list[PooledConnection]
    ) -> _Sentinel:
        """Close a connection handed to a waiter that wants a fresh one; the
        waiter keeps the slot (same origin) and opens a new connection."""
        conn.lifetime.close()
        conn.origin.evicted += 1
        to_close.append(conn)
        return RESERVED

    def failed_on_reuse(
        self, conn: PooledConnection, now: float, to_close: list[PooledConnection]
    ) -> None:
        """A reused connection failed before any response byte: the server
        had closed it. Counted and learned from, then dropped."""
        conn.origin.closed_by_server += 1
        conn.origin.learn_idle_close(now - conn.lifetime.idle_since, now)
        self.discard(conn, to_close)

    def discard(self, conn: PooledConnection, to_close: list[PooledConnection]) -> None:
        """An active connection failed or was found closed: free its slot."""
        conn.lifetime.close()
        self._drop(conn, to_close)

    def abandon(self, waiter: WaiterLike, to_close: list[PooledConnection]) -> None:
        """A waiter gave up (timeout, cancellation): undo what it was given."""
        waiter.cancelled = True
        if not waiter.assigned:
            return
        result = waiter.result
        waiter.result = None
        if result is RESERVED:
            self.release_slot(self.origin(waiter.key))
        elif isinstance(result, PooledConnection):
            # Still idle and untouched: offer it to the next in line.
            self._make_idle(result, to_close)

    def close_all(self, to_close: list[PooledConnection]) -> None:
        """Pool shutdown: every idle connection to ``to_close``, waiters out."""
        for origin in self.origins.values():
            for conn in origin.idle:
                conn.lifetime.close()
                conn.heap_seq = -1
                origin.open -= 1
                self.open_count -= 1
                to_close.append(conn)
            origin.idle.clear()
        self.idle_count = 0
        self._heap.clear()
        for conn in self.watched:
            conn.origin.watched = None
        self.watched.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.cancelled:
                waiter.assign(POOL_CLOSED)

    # -- statistics ----------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        origins = {}
        totals = dict(self._forgotten)
        for key, state in self.origins.items():
            idle = len(state.idle)
            origins[origin_label(key)] = OriginStatistics(
                connections_opened=state.connections_opened,
                requests=state.requests,
                reused=state.reused,
                retired_by_max=state.retired_by_max,
                retired_by_close=state.retired_by_close,
                expired=state.expired,
                evicted=state.evicted,
                closed_by_server=state.closed_by_server,
                retries=state.retries,
                last_hint=state.last_hint,
                learned_timeout=state.learned_timeout,
                open=state.open,
                idle=idle,
                active=state.open - idle,
                tls_handshakes_full=state.tls_handshakes_full,
                tls_handshakes_resumed=state.tls_handshakes_resumed,
                tls_handshake_seconds=state.tls_handshake_seconds,
            )
            for name in _TOTAL_FIELDS:
                totals[name] += getattr(state, name)
        return PoolStatistics(
            open=self.open_count,
            idle=self.idle_count,
            active=self.open_count - self.idle_count,
            waiting=sum(1 for w in self.waiters if not w.cancelled),
            origins=origins,
            **totals,
        )
