"""The queue of requests waiting for a connection: fair, and never blocked
by an origin at its cap.

Theory of operation
-------------------
With ``max_connections_per_origin`` a waiter can be stuck for two reasons:
the pool is full (any freed slot will do), or its own origin is at its cap
(only a slot or connection of that origin will do). One FIFO queue would
make every request wait behind a slow origin's backlog; this queue gives
each freed slot to the oldest waiter *that can use it*:

* Every waiter gets a sequence number and goes into its origin's FIFO
  (``_by_origin``) and into one arrival-order deque (``_arrivals``).
* When the pool looks for the oldest waiter that could take a new slot, it
  scans ``_arrivals`` from the front: entries already served or cancelled
  are dropped, and waiters whose origin is at its cap are dropped too --
  *parked*. A parked waiter stays in its origin's FIFO, so it is older than
  everything still in ``_arrivals``.
* An origin goes below its cap only when one of its own connections or
  slots is freed, and the pool then offers that slot with the origin's key:
  the origin's oldest waiter (parked or not) is compared with the first
  eligible entry of ``_arrivals`` by sequence number, and the older wins.
  So no parked waiter is ever overlooked, and between two calls no origin
  below its cap has a parked waiter.

Each waiter is appended once and dropped from each deque once: every
operation is O(1) amortised, whatever the number of origins or waiters.
Without a cap every origin is eligible and this is plain FIFO.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ._origin import WaiterLike

__all__ = ["WaitQueue"]

Entry = tuple[int, WaiterLike]


class WaitQueue:
    """Waiters for a connection slot; see the module docstring."""

    __slots__ = ("_arrivals", "_by_origin", "_live", "_seq")

    def __init__(self) -> None:
        self._arrivals: deque[Entry] = deque()
        self._by_origin: dict[Any, deque[Entry]] = {}
        self._seq = 0
        #: Waiters neither assigned nor cancelled (``statistics().waiting``).
        self._live = 0

    def append(self, waiter: WaiterLike) -> None:
        self._seq += 1
        entry = (self._seq, waiter)
        self._arrivals.append(entry)
        queue = self._by_origin.get(waiter.key)
        if queue is None:
            queue = self._by_origin[waiter.key] = deque()
        queue.append(entry)
        if _live(waiter):
            self._live += 1

    def __len__(self) -> int:
        return self._live

    def __bool__(self) -> bool:
        return self._live > 0

    def __iter__(self) -> Iterator[WaiterLike]:
        """The live waiters in arrival order (for statistics and tests)."""
        entries = [e for q in self._by_origin.values() for e in q if _live(e[1])]
        return iter(waiter for _, waiter in sorted(entries, key=_first))

    def cancel(self, waiter: WaiterLike) -> None:
        """``waiter`` gave up; it is dropped from the deques lazily."""
        if not waiter.cancelled and not waiter.assigned:
            self._live -= 1
        waiter.cancelled = True

    def assign(self, waiter: WaiterLike, result: Any) -> None:
        """Give ``waiter`` (found by :meth:`oldest`) what it waited for."""
        self._live -= 1
        waiter.assign(result)

    def has_waiter(self, key: Any) -> bool:
        """Does a live waiter of this origin wait?"""
        return self._head(key) is not None

    def first_of(self, key: Any) -> WaiterLike | None:
        """The oldest live waiter of this origin (for a free HTTP/2 stream,
        which only that origin's requests can use), or None."""
        head = self._head(key)
        return None if head is None else head[1]

    def oldest(self, key: Any, eligible: Callable[[Any], bool]) -> WaiterLike | None:
        """The oldest live waiter that can use what is freed, or None.

        ``eligible(key)`` says whether a waiter of that origin may take a
        new slot (its origin is below its cap). ``key``: the origin of the
        connection or slot being freed, whose own waiters can take it
        whatever the cap (None: a slot of no origin in particular).
        """
        front = self._first_eligible(eligible)
        if key is not None:
            head = self._head(key)
            if head is not None and (front is None or head[0] < front[0]):
                return head[1]
        return None if front is None else front[1]

    def _head(self, key: Any) -> Entry | None:
        queue = self._by_origin.get(key)
        if queue is None:
            return None
        while queue and not _live(queue[0][1]):
            queue.popleft()
        if queue:
            return queue[0]
        del self._by_origin[key]  # a crawler's origins come and go
        return None

    def _first_eligible(self, eligible: Callable[[Any], bool]) -> Entry | None:
        arrivals = self._arrivals
        while arrivals:
            entry = arrivals[0]
            waiter = entry[1]
            if _live(waiter) and eligible(waiter.key):
                return entry
            # Served, cancelled, or parked: its origin is at its cap, and
            # the origin's own queue keeps it for when a slot frees there.
            arrivals.popleft()
        return None


def _live(waiter: WaiterLike) -> bool:
    return not (waiter.cancelled or waiter.assigned)


def _first(entry: Entry) -> int:
    return entry[0]
