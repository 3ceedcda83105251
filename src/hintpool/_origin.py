"""What the pool knows about one origin and one connection.

``OriginState`` holds an origin's idle stack, counters (see
``hintpool._stats``) and what was learned of its idle timeout;
``PooledConnection`` is one wire connection with its lifetime (see
``hintpool._policy``). ``hintpool._state`` does the bookkeeping over them.
"""

from __future__ import annotations

import math
from typing import Any, Final, Protocol

from ._hints import KeepAlive
from ._policy import Lifetime, LifetimePolicy
from ._stats import Counters, OriginKey, origin_label

__all__ = [
    "MAX_WATCHED",
    "RELEARN_AFTER",
    "RESERVED",
    "SEEN_OPEN_SLACK",
    "WAIT",
    "OriginState",
    "PooledConnection",
    "Sentinel",
    "WaiterLike",
]


class Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: checkout result: a slot is reserved, open a new connection in it.
RESERVED: Final = Sentinel("RESERVED")
#: checkout result: no slot, queue a waiter.
WAIT: Final = Sentinel("WAIT")

#: Seconds after which a learned idle timeout is re-measured.
RELEARN_AFTER: Final = 600.0
#: Idle connections watched for a server hang-up at once, all origins.
MAX_WATCHED: Final = 256
#: A close noticed at most this long after the connection was last seen
#: open teaches its age then; one noticed later, only a provisional upper
#: bound (``PooledConnection.learn_close``). The reaper looks every 50 ms,
#: so the age then is that close to the truth, and a pass late by a few
#: hundred ms (a loaded machine) still teaches an age on the safe side by
#: less than the default margin. A longer gap (a blocked event loop, a
#: request long after the previous one) would understate it too much.
SEEN_OPEN_SLACK: Final = 1.0


class WaiterLike(Protocol):
    key: Any
    cancelled: bool
    assigned: bool
    result: Any

    def assign(self, result: Any) -> None: ...


class OriginState(Counters):
    """What the pool knows and counts about one origin."""

    __slots__ = (
        "concurrent_at",
        "http_version",
        "idle",
        "key",
        "last_hint",
        "last_request",
        "learned_at",
        "learned_hinted",
        "learned_timeout",
        "learned_upper",
        "max_streams",
        "open",
        "opening",
        "previous_request",
        "prewarm_takers",
        "prewarming",
        "proxy",
        "shared",
        "streams_peak",
        "watched",
        "young_close_at",
        "young_close_serial",
    )

    def __init__(self, key: OriginKey) -> None:
        super().__init__()
        self.key = key
        self.idle: list[PooledConnection] = []
        self.open = 0
        self.last_hint: KeepAlive | None = None
        self.learned_timeout: float | None = None
        self.learned_at = 0.0
        #: Learned from a close that came before a hint's timeout: then it
        #: caps the hint. One learned without a hint yields to a hint.
        self.learned_hinted = False
        #: Learned from a close noticed long after the connection was last
        #: seen open: only an upper bound of the timeout. It may shorten the
        #: pool's default window, never lengthen it, and the reaper keeps
        #: watching for a close that teaches the timeout itself.
        self.learned_upper = False
        #: A hint-less close younger than the margin, not learned yet: when,
        #: and how many connections had been opened then (``_young_close``).
        self.young_close_at = -math.inf
        self.young_close_serial = -1
        #: The one idle connection the reaper watches for this origin.
        self.watched: PooledConnection | None = None
        #: The label of the proxy it is reached through (statistics only).
        self.proxy: str | None = None
        #: HTTP/2 (``hintpool._multiplex``): active connections with a free
        #: stream (a dict as an ordered set), the gate requests wait at while
        #: a connection that may turn out HTTP/2 is opening, what the last
        #: connection spoke, the most streams one connection carried, and
        #: the stream limit the server last announced (a new connection
        #: assumes it until its own SETTINGS arrive).
        self.shared: dict[PooledConnection, None] = {}
        self.opening: Any = None
        self.http_version: str | None = None
        self.streams_peak = 0
        self.max_streams: int | None = None
        #: When a request last asked for a connection (see hintpool._prewarm).
        self.last_request = -math.inf
        self.previous_request = -math.inf
        #: Pre-warmed connections being opened (0 or 1).
        self.prewarming = 0
        #: Requests promised the pre-warm in flight (at most ``prewarming``).
        self.prewarm_takers: list[WaiterLike] = []
        #: When a request last found another one of this origin in flight.
        self.concurrent_at = -math.inf

    def learn_idle_close(
        self,
        age: float,
        now: float,
        floor: float = 0.0,
        serial: int = 0,
        upper: bool = False,
    ) -> None:
        """The server closed one of our idle connections ``age`` s after use.

        Learned when the origin sends no timeout hint, or when the close
        came before the hint's timeout: something between us and the origin
        (a proxy's tunnel, a load balancer) ends connections earlier than
        the origin says, and the earlier of the two then counts (see
        ``LifetimePolicy.idle_window``). A close younger than ``floor`` (the
        pool's margin) would stop reuse altogether, and is far likelier a
        reload or a graceful shutdown closing every idle connection at once
        than a timeout: against a hint it teaches nothing; without one it
        teaches only when seen again on a connection opened after it
        (``serial``: the connection's number among the origin's, see
        ``_young_close``). The estimate is the smallest age seen; it is
        forgotten after ``RELEARN_AFTER`` seconds so a one-off early close
        (a restart) does not stop reuse for good. An ``upper`` age (the
        close was noticed late, see ``PooledConnection.learn_close``) is
        replaced by the next one that is not, smaller or not.
        """
        hint = self.last_hint
        timeout = None if hint is None else hint.timeout
        if timeout is not None and not floor <= age < timeout:
            return
        learned = self.learned_timeout
        stale = now - self.learned_at > RELEARN_AFTER
        if (
            timeout is None
            and age < floor
            and (learned is None or learned >= floor or stale)  # unconfirmed
            and not self._young_close(now, serial)
        ):
            return
        age = max(0.0, age)
        hinted = timeout is not None
        if (
            learned is None
            or age < learned
            or stale
            or (hinted and not self.learned_hinted)
            or (self.learned_upper and not upper)
        ):
            self.learned_timeout = age
            self.learned_at = now
            self.learned_hinted = hinted
            self.learned_upper = upper

    def idle_window(self, policy: LifetimePolicy, hint: KeepAlive | None) -> float:
        """``policy``'s idle window for a connection of this origin."""
        return policy.idle_window(
            hint, self.learned_timeout, self.learned_hinted, self.learned_upper
        )

    def _young_close(self, now: float, serial: int) -> bool:
        """Whether a hint-less close younger than the margin is confirmed.

        A reload or shutdown closes the connections open at that moment,
        and the ones opened afterwards reach the new workers or the
        restarted server; a tiny idle timeout closes those young too. So
        the first young close is only noted, with the number of connections
        opened so far; it teaches when a connection opened after it is
        closed young as well, within ``RELEARN_AFTER`` seconds. The other
        connections the same reload closed are older: they teach nothing.
        """
        if now - self.young_close_at > RELEARN_AFTER:
            self.young_close_at = now
            self.young_close_serial = self.connections_opened
            return False
        if serial > self.young_close_serial:
            self.young_close_at = -math.inf
            return True
        return False

    def needs_watching(self, now: float) -> bool:
        """Should the reaper watch this origin's idle connections for closes?"""
        hint = self.last_hint
        if hint is not None and hint._timeout is not None:  # slot: per request
            return False
        if self.learned_timeout is None:
            return True
        if now - self.learned_at > RELEARN_AFTER:
            self.learned_timeout = None
            self.learned_upper = False
            return True
        return self.learned_upper


class PooledConnection:
    """One connection as the pool sees it: the wire object plus its lifetime."""

    __slots__ = (
        "connection",
        "generation",
        "goaway",
        "heap_seq",
        "http2",
        "lifetime",
        "origin",
        "prewarmed",
        "serial",
        "sock",
        "streams",
        "tls",
    )

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
        # The pool's generation when opened: close() starts a new one, and
        # connections of an older one are never reused.
        self.generation = -1
        #: An HTTP/2 connection carries ``streams`` requests at once; one
        #: that received GOAWAY takes no new stream.
        self.http2 = False
        self.streams = 0
        self.goaway = False
        #: Opened ahead of need (hintpool._prewarm).
        self.prewarmed = False
        #: Its number among its origin's connections (``connections_opened``
        #: once it opened): which of two came first.
        self.serial = 0

    def learn_close(self, now: float, floor: float) -> None:
        """The server closed this connection while idle; noticed ``now``.

        It closed after it was last seen open (``Lifetime.open_seen``: when
        it turned idle, or a later poll of its socket) and before ``now``.
        The age then is a safe estimate: never longer than the server's
        timeout. When that is more than ``SEEN_OPEN_SLACK`` ago (nothing
        looked for a while), it would understate the timeout by too much,
        and ``now``'s age, which may overstate it by as much, is learned as
        an upper bound only (``OriginState.learned_upper``). So is it when
        the two ages lie either side of ``floor``: whether the close was a
        young one (a reload, see ``OriginState.learn_idle_close``) is then
        unknown, and a starved reaper must not make a timeout look young.
        """
        lifetime = self.lifetime
        seen = lifetime.open_seen
        noticed = now - lifetime.idle_since
        open_age = seen - lifetime.idle_since
        if now - seen <= SEEN_OPEN_SLACK and (open_age >= floor or noticed < floor):
            self.origin.learn_idle_close(open_age, now, floor, self.serial)
        else:
            self.origin.learn_idle_close(noticed, now, floor, self.serial, upper=True)

    def reached_deadline(self, now: float, margin: float) -> None:
        """This watched connection expires, seen open by the poll before.

        The server's timeout is then longer than the age at that poll. A
        provisional estimate settles on that age plus the margin: its window
        ends there, before any close, and the watching stops. Otherwise a
        provisional estimate whose window ends before the server's close
        would never see one, and the reaper would poll for ten minutes.
        """
        origin = self.origin
        learned = origin.learned_timeout
        seen = self.lifetime.open_seen
        if learned is None or not origin.learned_upper:
            return
        if now - seen <= SEEN_OPEN_SLACK:
            age = seen - self.lifetime.idle_since
            origin.learned_timeout = min(learned, age + margin)
            origin.learned_upper = False
            origin.learned_at = now

    def __repr__(self) -> str:
        return (
            f"<PooledConnection {origin_label(self.origin.key)} "
            f"{self.lifetime.state.value} served={self.lifetime.requests_served}>"
        )
