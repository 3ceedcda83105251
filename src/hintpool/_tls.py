"""TLS session cache: which session may be offered to which new connection.

Theory of operation
-------------------
Resuming a TLS session skips the certificate chain (and, for TLS 1.2, one
round trip). Python's ``ssl`` resumes when a saved ``SSLSession`` is passed
at wrap time; this module decides which one, and never does I/O itself.

* Key = (the pool's ``SSLContext`` object, host, port, SNI name). A resumed
  session skips certificate and hostname verification, so a session is only
  ever offered to the exact (host, port, SNI) it was verified for, and only
  through the context that verified it: a different ``verify``/``cert`` is a
  different context, hence a different key. (A session from another context
  would also make ``wrap_*`` raise ``ValueError``.)
* A session is stored only after a response was read on its connection:
  the handshake and a whole request/response went through. TLS 1.3 sends its
  ticket after the handshake, so right after it ``has_ticket`` is False and
  offering that session silently gives a full handshake; by the time a
  response was read the ticket is there. TLS 1.2 session-ID sessions have no
  ticket and still resume, so ``has_ticket`` is required for TLS 1.3 only.
* On a resumed TLS 1.3 connection the *offered* session still says
  ``has_ticket`` until the server's new ticket arrives: a session whose
  ``id`` equals the offered one is not new and is not stored again.
* A resumption the server refused (new ticket keys, restart, expiry) drops
  the entry at once; the new connection's session replaces it later.
* LRU with a size cap, and a TTL from the time of storing, also bounded by
  the session's own ``time + timeout`` (the server's lifetime hint).
  ``SSLSession`` cannot be pickled: the cache lives in memory only.
* RFC 8446 (C.4) suggests single-use TLS 1.3 tickets for privacy; like Go's
  and OpenSSL's clients we offer the freshest ticket of a key to every new
  connection (no 0-RTT data is ever sent, so replay is not a concern), and
  every connection that brings a new ticket replaces it.

The cache takes its own small lock: the sync pool calls it from many
threads, outside the pool's bookkeeping lock.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import OrderedDict
from typing import Callable, Final, final

__all__ = [
    "DEFAULT_TLS_SESSION_CACHE_SIZE",
    "DEFAULT_TLS_SESSION_TTL",
    "SessionKey",
    "TLSConnectionInfo",
    "TLSSessionCache",
    "make_session_cache",
]

DEFAULT_TLS_SESSION_CACHE_SIZE: Final = 1_000
#: Seconds. Servers rotate their ticket keys; 2 h is what most keep them.
DEFAULT_TLS_SESSION_TTL: Final = 7_200.0

#: (SSLContext, host, port, SNI server name)
SessionKey = tuple[ssl.SSLContext, str, int, str]


@final
class TLSConnectionInfo:
    """What the pool remembers about one TLS connection's handshake."""

    __slots__ = (
        "handshake_seconds",
        "key",
        "offered",
        "resumed",
        "ssl_object",
        "stored",
    )

    def __init__(
        self,
        key: SessionKey,
        offered: ssl.SSLSession | None,
        ssl_object: ssl.SSLObject | ssl.SSLSocket,
        handshake_seconds: float,
    ) -> None:
        self.key = key
        self.offered = offered
        self.ssl_object = ssl_object
        self.resumed = bool(ssl_object.session_reused)
        self.handshake_seconds = handshake_seconds
        # Set once a session from this connection went into the cache; later
        # responses on the same connection then cost one attribute check.
        self.stored = False

    def __repr__(self) -> str:
        how = "resumed" if self.resumed else "full"
        return f"<TLSConnectionInfo {self.key[1]}:{self.key[2]} {how}>"


def _storable(info: TLSConnectionInfo, session: ssl.SSLSession | None) -> bool:
    if session is None:
        return False
    if info.ssl_object.version() == "TLSv1.3":
        if not session.has_ticket:
            return False  # the ticket has not arrived: it would not resume
        offered = info.offered
        if offered is not None and session.id == offered.id:
            return False  # still the offered ticket, not a new one
    return True


_Entry = tuple[ssl.SSLSession, float]  # (session, expires at)


@final
class TLSSessionCache:
    """LRU + TTL cache of TLS sessions; see the module docstring.

    :param maxsize: keys kept at most (the least recently used goes first).
    :param ttl: seconds a stored session may be offered.
    :param clock: wall clock in seconds (``SSLSession.time`` is wall time).
    """

    def __init__(
        self,
        maxsize: int = DEFAULT_TLS_SESSION_CACHE_SIZE,
        ttl: float = DEFAULT_TLS_SESSION_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if maxsize < 1:
            raise ValueError(
                f"maxsize must be at least 1 (turn the cache off instead), "
                f"got {maxsize!r}"
            )
        if not ttl > 0:
            raise ValueError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[SessionKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<TLSSessionCache {len(self)}/{self.maxsize} ttl={self.ttl:g}s>"

    def get(self, key: SessionKey) -> ssl.SSLSession | None:
        """The session to offer a new connection for ``key``, if any."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            session, expires_at = entry
            if self._clock() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return session

    def put(self, key: SessionKey, session: ssl.SSLSession) -> None:
        """Store ``session`` for ``key`` (the caller checked it qualifies)."""
        now = self._clock()
        # SSLSession.time/timeout: when it was made and the server's
        # lifetime hint; a session past it would be refused anyway.
        expires_at = min(now + self.ttl, session.time + session.timeout)
        if expires_at <= now:
            return
        with self._lock:
            entries = self._entries
            entries[key] = (session, expires_at)
            entries.move_to_end(key)
            while len(entries) > self.maxsize:
                entries.popitem(last=False)

    def discard(self, key: SessionKey, session: ssl.SSLSession) -> None:
        """Forget ``key``'s entry if it still holds ``session``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is session:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- the two moments the pool reports ----------------------------------

    def handshake_done(self, info: TLSConnectionInfo) -> None:
        """A handshake completed; a refused resumption drops the old entry."""
        if info.offered is not None and not info.resumed:
            self.discard(info.key, info.offered)

    def response_read(self, info: TLSConnectionInfo) -> None:
        """A response was read to its end on ``info``'s connection."""
        if info.stored:
            return
        session = info.ssl_object.session
        if _storable(info, session):
            assert session is not None
            self.put(info.key, session)
            info.stored = True


def make_session_cache(
    setting: bool | int, ttl: float = DEFAULT_TLS_SESSION_TTL
) -> TLSSessionCache | None:
    """The cache for a ``tls_session_cache`` option: True, False, or a size."""
    if setting is True:
        return TLSSessionCache(ttl=ttl)
    if setting is False or setting == 0:
        return None
    if isinstance(setting, int) and setting > 0:
        return TLSSessionCache(maxsize=setting, ttl=ttl)
    raise ValueError(
        f"tls_session_cache must be True, False or a size >= 0, not {setting!r}"
    )
