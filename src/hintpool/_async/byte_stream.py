"""The response body the pool hands out: closing it hands the connection
back to the pool."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

from .._exceptions import raise_translated
from .._state import PooledConnection
from .._synchronization import AsyncShieldCancellation

if TYPE_CHECKING:
    from .connection_pool import AsyncConnectionPool

__all__ = ["AsyncPoolByteStream"]


class AsyncPoolByteStream:
    """The response body; closing it hands the connection back to the pool."""

    __slots__ = ("_closed", "_conn", "_pool", "_stream")

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        pool: AsyncConnectionPool,
        conn: PooledConnection,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._conn = conn
        self._closed = False

    def read_now(self) -> bytes | None:
        """The whole body, if the connection has every byte of it already
        (taken without iterating: see ``request()``); else None."""
        take = getattr(self._stream, "take_complete", None)
        if take is None:
            return None
        content: bytes | None = take()
        if content is not None:
            self._body_read()
        return content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except BaseException as exc:
            self._pool._body_failed(self._conn, exc)
            with AsyncShieldCancellation():
                await self.aclose()
            raise_translated(exc)
        else:
            self._body_read()

    def _body_read(self) -> None:
        # Servers start their idle timer when the response is written: the
        # idle deadline counts from the last byte, not from when the caller
        # closes the response.
        self._conn.lifetime.body_end = self._pool._clock()
        # The whole response was read: the TLS session (and, for TLS 1.3,
        # its ticket, which comes after the handshake) is worth keeping now.
        tls = self._conn.tls
        if tls is not None and not tls.stored:
            cache = self._pool.tls_session_cache
            if cache is not None:
                cache.response_read(tls)

    def close_now(self) -> list[PooledConnection] | None:
        """``aclose()`` without awaiting, when the connection's stream can
        close so: the connections the pool must still close (await
        ``_close_connections`` if any), or None: nothing was done, await
        ``aclose()``."""
        if self._closed:
            return []
        close = getattr(self._stream, "close_now", None)
        if close is None or not close():
            return None
        self._closed = True
        return self._pool._response_closed(self._conn)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
        finally:
            # If cancelled above, the wire connection is not idle and the
            # pool closes it (shielded): nothing leaks.
            to_close = self._pool._response_closed(self._conn)
            if to_close:
                await self._pool._close_connections(to_close)
