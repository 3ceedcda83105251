"""Which idle connection to close when a limit is reached, and saying so.

Theory of operation
-------------------
Two limits close idle connections that could still serve: with
``max_keepalive_connections`` idle connections kept, one more turning idle
closes one; with ``max_connections`` open, a request for a new origin (or a
queued one) closes an idle connection to take its slot.

Which one matters when more origins are in use than idle connections are
kept. Closing the connection nearest its deadline (least recently used, the
old rule) is right when a few origins take most requests, or when a crawl
finishes one origin before the next (the finished ones go), and exactly
wrong for a crawl that cycles through its origins: the connection closed is
the one needed next, and nothing is ever reused. Closing the newest is the
reverse. ``benchmarks/bench_eviction.py`` measured them and the rule kept,
``"unproven"`` (a form of 2Q; figures and command in
docs/configuration.md):

* a connection that turns idle is on probation (unproven) when its origin
  never reused a connection and is not a ghost. The newest such connection
  is closed first: a crawl that cycles through more origins than there are
  idle slots keeps a stable set of connections, reused on every cycle,
  instead of rotating every origin out just before its turn;
* an origin whose probationary connection was closed becomes a ghost for a
  short while (a bounded FIFO: as many origins as the most requests seen in
  flight at an eviction, plus ``GHOST_SLACK``). If it turns a connection
  idle again meanwhile, that one is not on probation: a depth-first crawl
  loses one connection per new origin, not all of them, while a cycle long
  enough to be worth keeping comes back only after its ghost is gone;
* with no probationary connection idle, the one nearest its deadline goes
  (least recently used): busy origins keep their connections, finished ones
  go.

``"deadline"`` and ``"newest"`` are kept for the benchmark. A pick costs
O(1) amortized (a stack of probationary connections and the ghost FIFO,
stale entries skipped lazily) or O(log n) (the deadline heap).

When evictions by one limit dominate (more than half of the requests,
after ``LOG_AFTER`` of them), one INFO line names the limit to raise.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._state import PooledConnection, PoolState

__all__ = ["EvictionLog", "pick_victim"]

logger = logging.getLogger("hintpool")

STRATEGIES: Final = ("unproven", "deadline", "newest")
#: Origins remembered as ghosts beyond the number of requests in flight.
GHOST_SLACK: Final = 4
#: Requests sent before a verdict on evictions is given.
LOG_AFTER: Final = 200

IDLE_LIMIT: Final = "max_keepalive_connections"
OPEN_LIMIT: Final = "max_connections"
_ADVICE: Final = {
    IDLE_LIMIT: "to about the number of origins in use at once",
    OPEN_LIMIT: "to at least the number of requests in flight at once",
}


def pick_victim(
    state: PoolState, just_idled: PooledConnection | None
) -> PooledConnection:
    """Take the idle connection to close off the pool (still to be counted).

    ``just_idled`` is the connection whose turning idle passed the idle
    limit (None when a new connection needs the slot).
    """
    strategy = state.eviction
    if strategy == "unproven":
        stack = state.unproven
        while stack:
            seq, conn = stack.pop()
            if conn.heap_seq == seq and not conn.origin.reused:
                ghosts = state.ghosts
                ghosts.pop(conn.origin, None)
                ghosts[conn.origin] = None
                # Room for every request in flight to come back for its
                # origin, far fewer than the evictions of a whole cycle. The
                # peak, since in-flight requests dip while a burst of
                # responses is handed back.
                in_flight = state.open_count - state.idle_count
                state.ghost_room = room = max(state.ghost_room, in_flight)
                while len(ghosts) > room + GHOST_SLACK:
                    del ghosts[next(iter(ghosts))]
                return state.take_idle(conn)
    elif strategy == "newest" and just_idled is not None:
        return state.take_idle(just_idled)
    return state.pop_nearest_deadline()


class EvictionLog:
    """Counts evictions by the limit that caused them; logs once."""

    __slots__ = ("by_limit", "logged")

    def __init__(self) -> None:
        self.by_limit = {IDLE_LIMIT: 0, OPEN_LIMIT: 0}
        self.logged = False

    def evicted(self, limit: str, requests: int, value: float) -> None:
        count = self.by_limit[limit] = self.by_limit[limit] + 1
        if self.logged or requests < LOG_AFTER or 2 * count <= requests:
            return
        self.logged = True
        logger.info(
            "%d connections were closed while still usable, in %d requests, "
            "to stay within %s=%s: raise %s %s so that connections are "
            "reused (see 'Limits for crawlers' in the configuration docs)",
            count,
            requests,
            limit,
            int(value) if value != float("inf") else None,
            limit,
            _ADVICE[limit],
        )
