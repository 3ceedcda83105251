"""The idle connections: per-origin LIFO stacks, one deadline heap.

A base class of ``hintpool._state.PoolState`` (same object, same attributes):
the structures that make checkout O(1) and finding the nearest deadline or
an eviction victim O(log n), whatever the number of origins.

* Each origin's ``idle`` list is a stack: the most recently used connection
  has the furthest deadline, and the older ones are left to age out.
* One heap orders every idle connection by deadline. Entries are
  invalidated lazily (a connection's ``heap_seq`` changes when it leaves the
  idle set) and the heap is compacted when stale entries outnumber live ones;
  a leaving connection whose entry is the heap's last leaf (the one pushed
  last, as when a request takes back the connection just released) drops it
  at once instead.
* ``unproven`` stacks the idle connections of origins that never reused one,
  for the eviction choice (``hintpool._evict``), compacted the same way.
* ``watched``: idle connections the reaper polls for a server hang-up, at
  most one per hint-less origin still learning its timeout.
"""

from __future__ import annotations

import heapq
import math

from ._origin import MAX_WATCHED, OriginState, PooledConnection
from ._policy import WATCH_INTERVAL

__all__ = ["IdleConnections"]


class IdleConnections:
    def __init__(self) -> None:
        self.idle_count = 0
        self.watched: set[PooledConnection] = set()
        self._heap: list[tuple[float, int, PooledConnection]] = []
        self._seq = 0
        #: (heap_seq, connection), newest last; stale entries skipped lazily.
        self.unproven: list[tuple[int, PooledConnection]] = []
        #: Origins whose unproven connection a limit closed lately, oldest
        #: first (a dict as an ordered set; see hintpool._evict).
        self.ghosts: dict[OriginState, None] = {}
        self.ghost_room = 0

    def push_idle(self, conn: PooledConnection, spare: bool = False) -> None:
        """``conn`` turned idle: onto its origin's stack and the heap.

        A ``spare`` (pre-warmed) connection goes to the bottom of the stack:
        the connections it replaces serve their last requests first.
        """
        origin = conn.origin
        if spare:
            origin.idle.insert(0, conn)
        else:
            origin.idle.append(conn)
        self.idle_count += 1
        self._seq += 1
        conn.heap_seq = self._seq
        heapq.heappush(self._heap, (conn.lifetime.idle_deadline, self._seq, conn))
        if not origin.reused and origin not in self.ghosts:
            self.unproven.append((self._seq, conn))
        if (
            origin.watched is None
            and len(self.watched) < MAX_WATCHED
            and origin.needs_watching(conn.lifetime.idle_since)
        ):
            origin.watched = conn
            self.watched.add(conn)
        bound = 2 * self.idle_count + 64
        if len(self._heap) > bound:
            self._compact_heap()
        if len(self.unproven) > bound:
            self.unproven = [e for e in self.unproven if e[1].heap_seq == e[0]]

    def _unidle(self, conn: PooledConnection) -> None:
        """Bookkeeping for a connection leaving the idle set (not the stack)."""
        heap = self._heap
        if heap and heap[-1][1] == conn.heap_seq:
            # Its entry is the list's last (pushed last, as when the next
            # request takes back the connection just released): removing the
            # last item keeps the heap order, and leaves no stale entry.
            heap.pop()
        conn.heap_seq = -1
        self.idle_count -= 1
        if conn.origin.watched is conn:
            conn.origin.watched = None
            self.watched.discard(conn)

    def pop_nearest_deadline(self) -> PooledConnection:
        """Take the idle connection with the nearest deadline off the pool."""
        heap = self._heap
        while True:
            _, seq, conn = heapq.heappop(heap)
            if conn.heap_seq == seq:
                return self.take_idle(conn)

    def take_idle(self, conn: PooledConnection) -> PooledConnection:
        """Take this idle connection off its stack (its heap entry goes stale)."""
        stack = conn.origin.idle
        if stack[-1] is conn:
            stack.pop()
        else:
            stack.remove(conn)
        self._unidle(conn)
        return conn

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

    def clear_idle(self) -> list[PooledConnection]:
        """Empty the idle set; the connections that were in it.

        O(idle connections), found through the heap: no walk of the origins.
        """
        idle = [conn for _, seq, conn in self._heap if conn.heap_seq == seq]
        for conn in idle:
            conn.heap_seq = -1
            conn.origin.idle.clear()
            conn.origin.watched = None
        self._heap.clear()
        self.unproven.clear()
        self.ghosts.clear()
        self.watched.clear()
        self.idle_count = 0
        return idle
