"""Connection lifetime policy: pure, no I/O, the clock is passed in.

Theory of operation
-------------------
A pooled HTTP/1.1 connection lives through a small state machine::

    NEW --start--> ACTIVE --idle--> IDLE --start--> ACTIVE ...
     |                                ^
     +--warm--------------------------+  (pre-warmed: opened before a request)
                      |               |
                      +--retire-----> RETIRED   (server's ``max`` used up,
                      |               |          or it said ``Connection: close``)
                      |               +--expire--> EXPIRED (idle deadline passed)
                      +--close------> CLOSED    (error, server hang-up, pool close)

The table :data:`TRANSITIONS` is the whole of it; anything else raises
:class:`IllegalTransition`, an internal error that tests turn into failures.

After each response's headers the server's ``Keep-Alive`` hint (or its
absence) sets two numbers for the connection:

* ``idle_window`` -- how long it may sit idle before the pool must stop
  using it: ``min(timeout, max_timeout) - margin`` for a hinted server
  (never below 0: a window of 0 means "do not reuse after idle"), the
  origin's learned timeout minus the margin when one is known (no more
  than ``keepalive_expiry`` while it is only an upper bound), else the
  pool's ``keepalive_expiry`` (None: no deadline).
* ``requests_left`` -- ``max`` as the server last said it (Apache counts it
  down with every response: ``max=0`` marks the last one), capped at
  :data:`MAX_REQUESTS_CAP` as timeouts are capped; without a fresh ``max``,
  the last known count goes down by one per response.

When the response has been read to its end, :meth:`Lifetime.response_done`
either turns the connection IDLE with ``idle_deadline = now + idle_window``
or RETIRED. The pool asks only :meth:`Lifetime.reusable`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

from ._hints import KeepAlive
from ._options import check_pool_options

__all__ = [
    "MAX_REQUESTS_CAP",
    "WATCH_INTERVAL",
    "IllegalTransition",
    "Lifetime",
    "LifetimePolicy",
    "State",
]

#: How often idle connections of origins whose idle timeout is still to be
#: learned are checked for a server hang-up (the reaper polls them; the
#: bookkeeping plans its wake-ups with it).
WATCH_INTERVAL = 0.05

#: Cap on an announced ``max``: a server saying ``max=99999999999999999999``
#: still gets its connections recycled now and then, as a huge ``timeout``
#: is capped by ``max_keepalive_timeout``. Real servers announce hundreds
#: (Apache 100, nginx 1000).
MAX_REQUESTS_CAP = 1_000_000


class State(enum.Enum):
    # Members are singletons compared by identity: hashing by identity is
    # right, and much cheaper than Enum's own __hash__ (a Python method) on
    # the two transitions every request makes.
    __hash__ = object.__hash__

    NEW = "new"
    ACTIVE = "active"
    IDLE = "idle"
    RETIRED = "retired"
    EXPIRED = "expired"
    CLOSED = "closed"


class Event(enum.Enum):
    __hash__ = object.__hash__  # see State

    START = "start"
    IDLE = "idle"
    RETIRE = "retire"
    EXPIRE = "expire"
    CLOSE = "close"
    WARM = "warm"


_S, _E = State, Event

#: (state, event) -> next state. Anything missing is illegal.
TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (_S.NEW, _E.START): _S.ACTIVE,
    (_S.NEW, _E.CLOSE): _S.CLOSED,
    # Pre-warmed: opened ahead of any request, idle until one comes.
    (_S.NEW, _E.WARM): _S.IDLE,
    (_S.ACTIVE, _E.IDLE): _S.IDLE,
    (_S.ACTIVE, _E.RETIRE): _S.RETIRED,
    (_S.ACTIVE, _E.CLOSE): _S.CLOSED,
    (_S.IDLE, _E.START): _S.ACTIVE,
    (_S.IDLE, _E.EXPIRE): _S.EXPIRED,
    (_S.IDLE, _E.CLOSE): _S.CLOSED,
    # Closing twice (an error path after the pool already closed the
    # connection) is harmless and stays where it is.
    (_S.RETIRED, _E.CLOSE): _S.RETIRED,
    (_S.EXPIRED, _E.CLOSE): _S.EXPIRED,
    (_S.CLOSED, _E.CLOSE): _S.CLOSED,
}

# Members as module constants: reading one off an Enum class costs several
# times a global's look-up, and every request makes a few transitions.
_NEW, _ACTIVE, _IDLE = State.NEW, State.ACTIVE, State.IDLE
_RETIRED = State.RETIRED
_START, _TO_IDLE, _RETIRE = Event.START, Event.IDLE, Event.RETIRE
_EXPIRE, _CLOSE = Event.EXPIRE, Event.CLOSE

#: States in which the connection is gone for good.
FINAL_STATES: Final = frozenset({State.RETIRED, State.EXPIRED, State.CLOSED})


class IllegalTransition(RuntimeError):
    """A lifecycle transition the table does not allow: a hintpool bug."""


@dataclass(frozen=True)
class LifetimePolicy:
    """The pool-wide rules that turn hints into deadlines.

    ``margin``: seconds taken off a server's timeout, so the pool stops using
    a connection before the server closes it (undici uses 2 s, Node 1 s).
    ``max_timeout``: cap on any announced timeout (a server saying
    ``timeout=86400`` still gets its connections recycled).
    ``keepalive_expiry``: idle time allowed when the server says nothing
    (httpx's meaning; ``None`` keeps idle connections without a deadline).
    """

    margin: float = 1.0
    max_timeout: float = 600.0
    keepalive_expiry: float | None = 5.0

    def __post_init__(self) -> None:
        # Named as the pools' keywords that these fields come from.
        check_pool_options(
            keepalive_margin=self.margin,
            max_keepalive_timeout=self.max_timeout,
            keepalive_expiry=self.keepalive_expiry,
        )

    def idle_window(
        self,
        hint: KeepAlive | None,
        learned_timeout: float | None = None,
        learned_hinted: bool = False,
        learned_upper: bool = False,
    ) -> float:
        """Seconds a connection may stay idle after a response (inf: no limit).

        Without a timeout hint the learned timeout counts. With one, a
        learned timeout counts only if it is shorter and was learned while
        the hint was in force (``learned_hinted``): connections were seen
        closed before the announced time (``OriginState.learn_idle_close``).
        One learned before the server sent hints yields to them. One that
        is only an upper bound (``learned_upper``) shortens the window
        ``keepalive_expiry`` gives, never lengthens it.
        """
        # The slot, not the property: every request asks.
        timeout = hint._timeout if hint is not None else None
        if learned_timeout is not None and (
            timeout is None or (learned_hinted and learned_timeout < timeout)
        ):
            if timeout is None and learned_upper and self.keepalive_expiry is not None:
                window = min(learned_timeout, self.max_timeout) - self.margin
                return max(0.0, min(window, self.keepalive_expiry))
            timeout = learned_timeout
        if timeout is not None:
            return max(0.0, min(timeout, self.max_timeout) - self.margin)
        if self.keepalive_expiry is None:
            return math.inf
        return self.keepalive_expiry


class Lifetime:
    """Lifecycle state and deadlines of one connection."""

    __slots__ = (
        "body_end",
        "idle_deadline",
        "idle_since",
        "last_hint",
        "open_seen",
        "requests_left",
        "requests_served",
        "state",
        "will_close",
    )

    def __init__(self) -> None:
        self.state = _NEW
        self.idle_deadline = math.inf
        self.idle_since = 0.0
        #: When it was last seen open while idle (from ``idle_since`` on):
        #: a server close came after it (``PooledConnection.learn_close``).
        self.open_seen = 0.0
        #: When the last byte of the current response was read (0: not yet).
        self.body_end = 0.0
        self.requests_left: int | None = None
        self.requests_served = 0
        self.last_hint: KeepAlive | None = None
        self.will_close = False

    def __repr__(self) -> str:
        return (
            f"<Lifetime {self.state.value} served={self.requests_served} "
            f"left={self.requests_left} deadline={self.idle_deadline:.3f}>"
        )

    def _go(self, event: Event) -> None:
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise IllegalTransition(
                f"{event.value!r} is not allowed in state {self.state.value!r}"
            ) from None

    def start_request(self) -> None:
        if self.state is _IDLE:  # the common case, as TRANSITIONS says
            self.state = _ACTIVE
        else:
            self._go(_START)
        self.requests_served += 1
        self.body_end = 0.0

    def response_headers(self, hint: KeepAlive | None, will_close: bool) -> None:
        """Record what the response headers said about the connection."""
        if self.state is not _ACTIVE:
            raise IllegalTransition(f"response headers in state {self.state.value!r}")
        if hint is not None:
            self.last_hint = hint
        if hint is not None and hint._max is not None:  # the slot: see idle_window
            self.requests_left = min(hint._max, MAX_REQUESTS_CAP)
        elif self.requests_left is not None:
            self.requests_left = max(0, self.requests_left - 1)
        self.will_close = will_close

    def response_done(self, now: float, idle_window: float) -> bool:
        """The response was read to the end: IDLE (True) or RETIRED (False).

        ``idle_window`` comes from :meth:`LifetimePolicy.idle_window`.
        """
        if self.will_close or self.requests_left == 0 or idle_window <= 0:
            self._go(_RETIRE)
            return False
        if self.state is _ACTIVE:  # as TRANSITIONS says, without a look-up
            self.state = _IDLE
        else:
            self._go(_TO_IDLE)
        if 0.0 < self.body_end < now:
            now = self.body_end  # the server's idle timer started then
        self.idle_since = self.open_seen = now
        self.idle_deadline = now + idle_window
        return True

    def warmed(self, now: float, idle_window: float) -> None:
        """Opened ahead of need (pre-warmed): idle from ``now``, when the
        server's idle timer starts too."""
        self._go(Event.WARM)
        self.idle_since = self.open_seen = now
        self.idle_deadline = now + idle_window

    def response_aborted(self) -> None:
        """The wire connection cannot be reused (closed by httpcore, body not
        read, error): RETIRED if the server had announced the end, else
        CLOSED."""
        if self.state is _ACTIVE and (self.will_close or self.requests_left == 0):
            self._go(_RETIRE)
        else:
            self._go(_CLOSE)

    def reusable(self, now: float) -> bool:
        return self.state is _IDLE and now < self.idle_deadline

    def expire(self) -> None:
        self._go(_EXPIRE)

    def close(self) -> None:
        self._go(_CLOSE)

    @property
    def retired_by_max(self) -> bool:
        return self.state is _RETIRED and self.requests_left == 0

    @property
    def retired_by_close(self) -> bool:
        """Retired because the server said ``Connection: close``."""
        return self.state is _RETIRED and self.will_close
