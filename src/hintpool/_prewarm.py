"""Pre-warmed replacements: the bookkeeping half (pure, under the pool's lock).

Theory of operation
-------------------
A connection to a busy origin is about to end when the server said it
takes one more request or none (``max=1``, ``max=0``: see
``PREWARM_AHEAD``) or when its idle deadline falls while the origin is
still getting requests. The next request would then pay connect
and TLS. So the pool opens its replacement in the background first:

* Busy means the last request for the origin came within its announced
  timeout (its ``Keep-Alive: timeout``, else the learned timeout, else
  ``keepalive_expiry``), and so did the one before it, relative to the
  last: requests come at least as often as a connection stays open. An
  origin nobody uses is never pre-warmed, one request alone does not make
  an origin busy, and a replacement that nobody came for is not replaced
  again (its origin is no longer busy when it expires).
* Only within the limits: a free slot of ``max_connections`` and of
  ``max_connections_per_origin``, no request waiting anywhere (a free slot
  is theirs), no idle connection of the origin good for more than one more
  request and half an idle window, one pre-warm per origin at a time, and
  never by closing another connection.
* :func:`consider` reserves the slot and queues the origin on
  ``state.prewarm_due``; the pool opens the connection in a background
  task and reports with :func:`opened` (the connection turns idle, or goes
  straight to a waiter of its origin) or :func:`failed` (the slot is freed
  and passed on, like a failed connect; nothing reaches a caller).
* Counted per origin and in total: ``prewarmed`` (opened),
  ``prewarm_used`` (served a request; its first request is not counted as
  ``reused``), ``prewarm_wasted`` (closed unused: a pre-warmed connection
  is the only kind that can close with ``requests_served == 0``) and
  ``prewarm_failed``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._origin import RESERVED, PooledConnection

if TYPE_CHECKING:
    from ._origin import OriginState, WaiterLike
    from ._state import CheckoutResult, PoolState

__all__ = [
    "CONCURRENT_MEMORY",
    "PREWARM_AHEAD",
    "abandon_take",
    "busy",
    "checked_out",
    "consider",
    "failed",
    "opened",
    "take_ahead",
    "took",
]

#: Start the replacement when the server says this many requests are left
#: (``max=1``): waiting for ``max=0`` left only the time of one response
#: body to connect and shake hands, less than a TLS handshake 25 ms away
#: takes, so at 20 requests/s the next request still had to open its own.
PREWARM_AHEAD = 1


#: How long (in the origin's timeouts) requests that overlapped keep a spare
#: connection ready (``checked_out``). Overlaps on a steady stream come
#: from responses slower than the gap between requests, in runs; a spare
#: that outlives them expires unused (``prewarm_wasted``).
CONCURRENT_MEMORY = 2.0


def _timeout(state: PoolState, origin: OriginState) -> float:
    """The origin's announced timeout, else the learned one, else the
    pool's ``keepalive_expiry`` (capped by ``max_timeout``)."""
    hint = origin.last_hint
    timeout = hint.timeout if hint is not None else None
    expiry = state.policy.keepalive_expiry
    if timeout is None:
        timeout = origin.learned_timeout
        if timeout is not None and origin.learned_upper and expiry is not None:
            timeout = min(timeout, expiry)  # an upper bound: see idle_window
    if timeout is None:
        timeout = expiry
    if timeout is None:
        timeout = math.inf
    return min(timeout, state.policy.max_timeout)


def busy(state: PoolState, origin: OriginState, now: float) -> bool:
    """Do requests for ``origin`` come within its announced timeout of each
    other, the last one within it of ``now``?"""
    timeout = _timeout(state, origin)
    last = origin.last_request
    return now - last <= timeout and last - origin.previous_request <= timeout


def _has_spare(origin: OriginState, now: float, window: float) -> bool:
    """Is an idle connection of ``origin`` good for more than the next
    request, and for more than half its idle window? (One that sat idle
    under the busy one expires about when the ending one retires: measured,
    that left most retirements without a replacement.) Only read when a
    connection is ending; an origin's idle stack is short."""
    fresh_until = now + window / 2
    for conn in origin.idle:
        lifetime = conn.lifetime
        left = lifetime.requests_left
        if (
            left is None or left > PREWARM_AHEAD
        ) and lifetime.idle_deadline > fresh_until:
            return True
    return False


def consider(state: PoolState, origin: OriginState, now: float) -> None:
    """One of ``origin``'s connections is ending: reserve a slot for its
    replacement when the origin is busy and the limits leave room."""
    if (
        not state.prewarm_enabled
        or origin.prewarming
        or origin.http_version == "HTTP/2"  # multiplexed: no spare needed
        or state.waiters
        or state.open_count >= state.max_connections
        or origin.open >= state.max_per_origin
    ):
        return
    window = origin.idle_window(state.policy, origin.last_hint)
    if window <= 0 or not busy(state, origin, now) or _has_spare(origin, now, window):
        return
    state._reserve(origin)  # also takes the origin off the vacant list
    origin.prewarming += 1
    state.prewarm_due.append(origin)


def checked_out(state: PoolState, origin: OriginState, now: float) -> None:
    """A request took a connection of ``origin`` (idle or a new slot).

    With one connection per origin, a request that comes while another is
    still in flight opens its own (a handshake), whatever the replacement
    triggers do. So while two requests to the origin were in flight at once
    within ``CONCURRENT_MEMORY`` timeouts, keep one idle connection spare: a
    request that takes the last one reserves a pre-warm. The spare sits at
    the bottom of the idle stack, used only when requests overlap again.
    None while the connections open already fill the idle limit."""
    in_use = origin.open - len(origin.idle) - origin.prewarming
    if in_use > 1:
        origin.concurrent_at = now
    elif origin.concurrent_at == -math.inf:
        return  # requests never overlapped: per request, the cheap answer
    elif now - origin.concurrent_at > CONCURRENT_MEMORY * _timeout(state, origin):
        return
    if state.open_count >= state.max_idle:
        # Once the requests in flight are done, a spare would only push an
        # idle connection out (``max_keepalive_connections``).
        return
    for conn in origin.idle:
        left = conn.lifetime.requests_left
        if (left is None or left > PREWARM_AHEAD) and conn.lifetime.idle_deadline > now:
            return
    consider(state, origin, now)


def opened(
    state: PoolState,
    conn: PooledConnection,
    now: float,
    to_close: list[PooledConnection],
) -> None:
    """The pre-warmed connection is open: idle from now (or handed to a
    waiter of its origin)."""
    origin = conn.origin
    origin.prewarming -= 1
    conn.prewarmed = True
    state.count_opened(conn)
    state.count(origin, "prewarmed")
    window = origin.idle_window(state.policy, origin.last_hint)
    conn.lifetime.warmed(now, window)
    takers = origin.prewarm_takers
    if takers:
        # Promised to a request that reserved a slot meanwhile: the pre-warm
        # brings its own slot, so the request's goes back.
        state.release_slot(origin)
        takers.pop(0).assign(conn)
        return
    state._make_idle(conn, to_close, spare=True)


def failed(state: PoolState, origin: OriginState, cancelled: bool = False) -> None:
    """The pre-warm could not connect (or was cancelled, by the pool's
    close): free its slot."""
    origin.prewarming -= 1
    takers = origin.prewarm_takers
    if len(takers) > origin.prewarming:  # it opens its own, in its slot
        takers.pop().assign(RESERVED)
    if not cancelled:
        state.count(origin, "prewarm_failed")
    state.release_slot(origin)


# -- a request takes the pre-warm in flight ---------------------------------
#
# A request that finds no idle connection while its origin's pre-warm is
# still connecting would otherwise open a second connection, started later
# than the pre-warm: on a loaded machine that was most of the handshakes
# left. It reserves its slot as usual (so no limit moves), then waits for
# the pre-warm; if that fails, it opens its own in that slot.


def take_ahead(state: PoolState, origin: OriginState, waiter: WaiterLike) -> bool:
    """After a request to ``origin`` reserved a slot: promise it the
    pre-warm in flight, if one is not promised yet."""
    if origin.prewarming <= len(origin.prewarm_takers):
        return False
    origin.prewarm_takers.append(waiter)
    return True


def took(
    state: PoolState,
    origin: OriginState,
    waiter: WaiterLike,
    now: float,
    to_close: list[PooledConnection],
) -> CheckoutResult:
    """The waiting is over (or timed out): the pre-warmed connection, started,
    or RESERVED (open one in the slot still held)."""
    if not waiter.assigned:  # timed out: stop waiting, keep the slot
        origin.prewarm_takers.remove(waiter)
    conn = waiter.result
    if not isinstance(conn, PooledConnection):
        return RESERVED
    # Stale already: closed, and its slot is the request's now.
    return state.claim(conn, now, to_close)


def abandon_take(
    state: PoolState,
    origin: OriginState,
    waiter: WaiterLike,
    to_close: list[PooledConnection],
) -> None:
    """The waiting request was cancelled: give back what it holds."""
    result = waiter.result
    if not waiter.assigned:
        origin.prewarm_takers.remove(waiter)
        state.release_slot(origin)
    elif result is RESERVED:
        state.release_slot(origin)
    else:  # still idle and untouched
        state._make_idle(result, to_close, spare=True)
