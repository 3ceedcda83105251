"""Handing a connection back: a response closed, a connection failed.

A base class of ``AsyncConnectionPool`` (same object, same attributes).
"""

from __future__ import annotations

from .._exceptions import translate
from .._multiplex import stream_done
from .._state import PooledConnection
from .background import AsyncBackground

__all__ = ["AsyncRelease"]


class AsyncRelease(AsyncBackground):
    def _response_closed(self, conn: PooledConnection) -> list[PooledConnection]:
        """Hand ``conn`` back; the connections to close now (await
        ``_close_connections``: not a coroutine itself, as it rarely has to)."""
        to_close: list[PooledConnection] = []
        with self._lock:
            if conn.http2:
                stream_done(self._state, conn, self._clock(), to_close)
            else:
                reusable = conn.connection.is_idle()
                self._state.release(conn, self._clock(), reusable, to_close)
            if conn.heap_seq >= 0:  # it went idle: maybe the nearest deadline
                self._reaper.notify(self._state.wake_time(conn))
        if self._state.prewarm_due:
            self._start_prewarms()
        return to_close

    async def _discard(
        self,
        conn: PooledConnection,
        error: BaseException | None = None,
        failed_on_reuse: bool = False,
    ) -> None:
        to_close: list[PooledConnection] = []
        with self._lock:
            if error is not None:
                self._state.count_failure(conn.origin, translate(error))
            if failed_on_reuse:
                self._state.failed_on_reuse(conn, self._clock(), to_close)
            else:
                self._state.discard(conn, to_close)
        await self._close_connections(to_close)

    def _body_failed(self, conn: PooledConnection, exc: BaseException) -> None:
        with self._lock:
            self._state.count_failure(conn.origin, translate(exc))
