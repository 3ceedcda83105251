"""The origins the pool knows, their connection slots, what it counts.

A base class of ``hintpool._state.PoolState`` (same object, same attributes),
as ``hintpool._idle.IdleConnections`` is:

* ``origins`` maps each origin key to its ``OriginState``. Origins with no
  connection left are kept in ``vacant``, oldest vacancy first, so that
  forgetting is O(1) per origin, never a scan.
* ``open_count`` and each origin's ``open`` count the slots in use; a slot
  that frees goes to the oldest queued request that can use it
  (``hintpool._waiters``).
* Every counter is kept per origin and in ``totals`` at once
  (``hintpool._stats``): ``statistics()`` is O(1) and survives forgotten
  origins.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from ._evict import IDLE_LIMIT, EvictionLog
from ._origin import (
    RELEARN_AFTER,
    RESERVED,
    OriginState,
    PooledConnection,
    Sentinel,
    WaiterLike,
)
from ._stats import (
    Counters,
    OriginKey,
    OriginsView,
    PoolStatistics,
    ProxyStatistics,
    failure_counter,
    proxy_statistics,
)
from ._waiters import WaitQueue

__all__ = ["FORGET_AFTER", "ORIGIN_LIMIT", "OriginLedger"]

#: The eviction of an idle connection for a fresh one to the same origin.
ORIGIN_LIMIT = "max_connections_per_origin"

#: Seconds an origin with no connection is remembered. What it taught the
#: pool (a learned timeout) is stale by then anyway (RELEARN_AFTER), and its
#: counters stay in the pool's totals.
FORGET_AFTER: Final = RELEARN_AFTER


class OriginLedger:
    # Kept by the other base class of PoolState; read for statistics().
    idle_count: int

    def __init__(
        self,
        *,
        max_connections: float,
        max_idle: float,
        max_per_origin: float,
        max_origins: int,
        clock: Callable[[], float],
        proxy_label: str | None,
        proxy_key: OriginKey | None,
    ) -> None:
        self.proxy_label = proxy_label
        #: Where forwarded requests' connections (to the proxy) are pooled.
        self.proxy_key = proxy_key
        self.clock = clock
        self.max_connections = max_connections
        self.max_per_origin = max_per_origin
        self.max_idle = max_idle
        self.max_origins = max_origins
        self.origins: dict[OriginKey, OriginState] = {}
        #: Origins without a connection -> when they lost their last one.
        self.vacant: OrderedDict[OriginKey, float] = OrderedDict()
        self.open_count = 0
        #: Every counter of every origin, summed as it is counted, so that
        #: statistics() is O(1) and survives forgotten origins.
        self.totals = Counters()
        #: Bumped by close_all(): connections of an older one are not reused.
        self.generation = 0
        self.evictions = EvictionLog()
        self.waiters = WaitQueue()

    def origin(self, key: OriginKey) -> OriginState:
        state = self.origins.get(key)
        if state is None:
            state = self.origins[key] = OriginState(key)
            state.proxy = self.proxy_label
            now = self.clock()
            self.vacant[key] = now
            self.forget_vacant(now, keep=key)
        return state

    def forget_vacant(self, now: float, keep: OriginKey | None = None) -> None:
        """Drop the origins vacant for ``FORGET_AFTER`` seconds, and the
        oldest vacant ones beyond ``max_origins`` (never ``keep``, the one
        just created or vacated: it is the newest)."""
        vacant = self.vacant
        excess = len(self.origins) - self.max_origins
        while vacant:
            key = next(iter(vacant))
            # The same sum as next_forget(), so that a reaper woken at that
            # time surely forgets (now - FORGET_AFTER may round the other way).
            if key == keep or (excess <= 0 and vacant[key] + FORGET_AFTER > now):
                break
            del vacant[key]
            del self.origins[key]
            excess -= 1

    def next_forget(self) -> float:
        """When the oldest vacant origin is due to be forgotten."""
        vacant = self.vacant
        return vacant[next(iter(vacant))] + FORGET_AFTER if vacant else float("inf")

    def _lost_connection(self, origin: OriginState) -> None:
        # Only noted here: forgetting happens in origin() and in the reaper's
        # pass (forget_vacant), where no caller holds an OriginState.
        origin.open -= 1
        if not origin.open:
            self.vacant[origin.key] = self.clock()

    def can_open(self, key: OriginKey) -> bool:
        """Is this origin below its cap (may it take a new slot)?"""
        state = self.origins.get(key)
        return state is None or state.open < self.max_per_origin

    # -- slots and the queue ----------------------------------------------

    def _reserve(self, origin: OriginState) -> Sentinel:
        self.open_count += 1
        if not origin.open:
            self.vacant.pop(origin.key, None)
        origin.open += 1
        return RESERVED

    def _must_queue(self, key: OriginKey) -> bool:
        """FIFO: a waiter of this origin, or one that could take the slot
        this request wants, came first."""
        waiters = self.waiters
        return (
            waiters.has_waiter(key) or waiters.oldest(None, self.can_open) is not None
        )

    def queue(self, waiter: WaiterLike, origin: OriginState) -> None:
        """Queue a request that found no slot (``checkout`` said WAIT)."""
        self.waiters.append(waiter)
        self.count(origin, "waited")

    def release_slot(self, origin: OriginState) -> None:
        """A reserved slot was not used (connect failed): pass it on."""
        self._lost_connection(origin)
        self.open_count -= 1
        self._offer_slot(origin.key)

    def _offer_slot(self, freed: OriginKey) -> None:
        """A slot of origin ``freed`` became free: the oldest waiter that
        can use it takes it (one of ``freed``'s own, or of any origin below
        its cap)."""
        waiters = self.waiters
        if not waiters:
            return
        waiter = waiters.oldest(freed, self.can_open)
        if waiter is not None:
            self._reserve(self.origin(waiter.key))
            waiters.assign(waiter, RESERVED)

    # -- counting --------------------------------------------------------------

    def count_opened(self, conn: PooledConnection) -> None:
        origin = conn.origin
        origin.connections_opened += 1
        conn.serial = origin.connections_opened
        self.totals.connections_opened += 1
        conn.generation = self.generation
        tls = conn.tls
        if tls is not None:
            if tls.resumed:
                self.count(origin, "tls_handshakes_resumed")
            else:
                self.count(origin, "tls_handshakes_full")
            self.count(origin, "tls_handshake_seconds", tls.handshake_seconds)

    def count(self, origin: OriginState, name: str, amount: float = 1) -> None:
        """Add to one counter of ``origin`` and to the pool's total."""
        setattr(origin, name, getattr(origin, name) + amount)
        totals = self.totals
        setattr(totals, name, getattr(totals, name) + amount)

    def count_failure(self, origin: OriginState, exc: BaseException) -> None:
        """Count a connect, timeout, protocol or network error of ``origin``."""
        name = failure_counter(exc)
        if name is not None:
            self.count(origin, name)

    def _count_eviction(self, origin: OriginState, limit: str) -> None:
        self.count(origin, "evicted")
        if limit == ORIGIN_LIMIT:
            return  # a retry's fresh connection: no limit is too small
        value = self.max_idle if limit == IDLE_LIMIT else self.max_connections
        self.evictions.evicted(limit, self.totals.requests, value)

    def statistics(
        self, lock: AbstractContextManager[Any] | None = None
    ) -> PoolStatistics:
        """O(1): the totals, and a view that builds per-origin entries when
        read (under ``lock``, the pool's)."""
        return PoolStatistics(
            open=self.open_count,
            idle=self.idle_count,
            active=self.open_count - self.idle_count,
            waiting=len(self.waiters),
            origins=OriginsView(self.origins, lock or nullcontext()),
            proxies=self._proxy_statistics(),
            **self.totals.values(),
        )

    def _proxy_statistics(self) -> dict[str, ProxyStatistics]:
        label = self.proxy_label
        if label is None:
            return {}
        forward = None if self.proxy_key is None else self.origins.get(self.proxy_key)
        return {label: proxy_statistics(label, self.totals, forward)}
