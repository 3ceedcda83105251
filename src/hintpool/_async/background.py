"""The pool's background work: the reaper's pass, pre-warming, closing.

A base class of ``AsyncConnectionPool`` (same object, same attributes):
the I/O the reaper's task drives (``hintpool._reaper``), the pre-warms the
bookkeeping asks for (``hintpool._prewarm``), and the closing of the
connections every other part hands back.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import httpcore

from .. import _prewarm
from .._proxy import ProxyConfig
from .._reaper import REAPER_HEARTBEAT, WATCH_INTERVAL, AsyncReaper
from .._state import OriginState, PooledConnection, PoolState, origin_label
from .._synchronization import AsyncShieldCancellation
from .connect import AsyncConnector

__all__ = ["AsyncBackground"]

logger = logging.getLogger("hintpool")

#: A pre-warm has no request to take timeouts from: httpx's default.
_PREWARM_EXTENSIONS = {"timeout": {"connect": 5.0}}


class AsyncBackground:
    # Set by AsyncConnectionPool.__init__.
    _lock: Any  # the sync pool's is a threading.Lock
    _state: PoolState
    _clock: Callable[[], float]
    _connector: AsyncConnector
    _reaper: AsyncReaper
    _proxy: ProxyConfig | None

    async def _reap(self) -> float:
        """Close expired idle connections and watch for server hang-ups.

        Called by the reaper; returns when it should run next.
        """
        to_close: list[PooledConnection] = []
        with self._lock:
            now = self._clock()
            self._state.evict_expired(now, to_close)
            self._state.forget_vacant(now)
            self._state.watch_idle(now, to_close)
            frames = [c for c in self._state.watched if _frames_waiting(c)]
        self._start_prewarms()
        await self._close_connections(to_close)
        if frames:
            await self._serve_idle(frames)
        with self._lock:
            state = self._state
            wake_at = state.next_deadline()
            if state.watched:
                wake_at = min(wake_at, now + WATCH_INTERVAL)
            if state.open_count > state.idle_count:
                # Connections in use will turn idle with deadlines we do not
                # know yet. Waking at least this often means their release
                # rarely has a nearer deadline than the reaper's, so it does
                # not have to wake the reaper on every request.
                wake_at = min(wake_at, now + REAPER_HEARTBEAT)
        return wake_at

    async def _serve_idle(self, connections: list[PooledConnection]) -> None:
        """Idle HTTP/2 connections the server sent frames to without closing
        (the stale check saw them): acknowledge a PING or SETTINGS now; one
        that turns out to be ending (GOAWAY, a close) is closed as the
        server closed it."""
        for conn in connections:
            if not await conn.connection.serve_idle():
                continue
            to_close: list[PooledConnection] = []
            with self._lock:
                if conn.connection.goaway is not None and not conn.goaway:
                    conn.goaway = True
                    self._state.count(conn.origin, "goaways_received")
                self._state.idle_closed_by_server(conn, self._clock(), to_close)
            await self._close_connections(to_close)

    # -- pre-warming (see hintpool._prewarm) ------------------------------------

    def _start_prewarms(self) -> None:
        """Open the pre-warms the bookkeeping reserved slots for."""
        with self._lock:
            due = self._state.prewarm_due
            if not due:
                return
            self._state.prewarm_due = []
            generation = self._state.generation
        for origin in due:
            if not self._reaper.spawn(self._prewarm_connection, origin, generation):
                with self._lock:  # the pool is closing
                    _prewarm.failed(self._state, origin, cancelled=True)

    async def _prewarm_connection(self, origin: OriginState, generation: int) -> None:
        """Open a connection to ``origin`` ahead of need, in the background.

        A failure is logged and counted, never raised: the requests to that
        origin open their own connections as usual. ``generation``: the
        pool's when the pre-warm was asked for; a pool closed since then
        gets no pre-warmed connection."""
        scheme, host, port = origin.key
        # Through a proxy, an origin's own key means a tunnel; the proxy's
        # key, the connections forwarded requests share.
        proxy = self._proxy
        tunnel = proxy is not None and origin.key != proxy.key
        try:
            connection, sock, tls = await self._connector.connect(
                httpcore.Origin(scheme, host, port), _PREWARM_EXTENSIONS, tunnel
            )
        except Exception as exc:
            logger.info("pre-warming %s failed: %r", origin_label(origin.key), exc)
            with self._lock:
                _prewarm.failed(self._state, origin)
            return
        except BaseException:  # cancelled: the pool is closing
            with self._lock:
                _prewarm.failed(self._state, origin, cancelled=True)
            raise
        conn = PooledConnection(origin, connection, sock, tls)
        to_close: list[PooledConnection] = []
        http2 = hasattr(connection, "goaway")
        with self._lock:
            # Closed while connecting, yet not cancelled: a connect that
            # finished in the loop turn close() ran in resumes normally
            # (anyio does not cancel a task whose wait is over). Made idle,
            # it would outlive the pool's close unclosed. HTTP/2: the
            # origin's one connection carries every request, so a spare is
            # of no use; closing it is what an unused one costs.
            unwanted = http2 or self._state.generation != generation
            if unwanted:
                _prewarm.failed(self._state, origin, cancelled=True)
            if http2:
                origin.http_version = "HTTP/2"
        if unwanted:
            await self._close_connections([conn])
            return
        with self._lock:
            _prewarm.opened(self._state, conn, self._clock(), to_close)
            if conn.heap_seq >= 0:
                self._reaper.notify(self._state.wake_time(conn))
        logger.debug("pre-warmed %r", conn)
        await self._close_connections(to_close)

    async def _close_connections(self, connections: list[PooledConnection]) -> None:
        if not connections:
            return
        with AsyncShieldCancellation():
            for conn in connections:
                if conn.http2:
                    await self._idle_goaway(conn)
                if conn.prewarmed and not conn.lifetime.requests_served:
                    with self._lock:
                        self._state.count(conn.origin, "prewarm_wasted")
                logger.debug("closing %r", conn)
                try:
                    await conn.connection.aclose()
                except Exception as exc:  # closing is best effort
                    logger.debug("error closing %r: %r", conn, exc)

    async def _idle_goaway(self, conn: PooledConnection) -> None:
        """Count a GOAWAY the server sent on an idle HTTP/2 connection (an
        idle timeout, a reload): no request was there to read it."""
        if conn.goaway or conn.streams or not self._state.server_closed(conn):
            return
        if await conn.connection.read_goaway():
            conn.goaway = True
            with self._lock:
                self._state.count(conn.origin, "goaways_received")


def _frames_waiting(conn: PooledConnection) -> bool:
    return conn.http2 and getattr(conn.connection, "frames_waiting", False) is True
