"""Sending a failed request again: the two rules, on the pool.

* HTTP/1.1, the keep-alive race: an idempotent request that failed on a
  reused connection before any response byte goes once more on a new
  connection (``hintpool._retry`` has the rule).
* HTTP/2, unprocessed streams: a request the server did not process (above
  a GOAWAY's ``last_stream_id``, refused with ``REFUSED_STREAM``, or never
  sent because the connection was ending; ``ConnectionNotAvailable`` from
  ``hintpool._async.http2``) goes again on another connection whatever its
  method, RFC 9113 §6.8, as long as its body can be sent again.

A base class of ``AsyncConnectionPool`` (same object, same attributes),
over the checkout and hand-back it sends again through.
"""

from __future__ import annotations

import logging

import httpcore

from .._exceptions import raise_translated, translate
from .._multiplex import stream_done
from .._retry import may_retry, replayable_body
from .._state import PooledConnection
from .acquire import AsyncAcquire
from .release import AsyncRelease

__all__ = ["MAX_UNPROCESSED_RETRIES", "AsyncResend"]

logger = logging.getLogger("hintpool")

#: Attempts at sending a request the server did not process (HTTP/2 GOAWAY,
#: REFUSED_STREAM), each on another connection.
MAX_UNPROCESSED_RETRIES = 5


class AsyncResend(AsyncAcquire, AsyncRelease):
    _retry_stale: bool  # set by AsyncConnectionPool.__init__

    async def _send_again(
        self,
        key: tuple[bytes, bytes, int],
        request: httpcore.Request,
        tunnel: bool,
        conn: PooledConnection,
        exc: BaseException,
    ) -> tuple[httpcore.Response, PooledConnection]:
        """After ``conn`` failed with ``exc``: send the request once more
        where a rule allows it (else raise the mapped error)."""
        if conn.http2:
            return await self._send_unprocessed(key, request, tunnel, conn, exc)
        if not (
            self._retry_stale
            and (conn.lifetime.requests_served > 1 or conn.prewarmed)
            and may_retry(request, exc, conn.connection)
        ):
            await self._discard(conn, exc)
            raise_translated(exc)
        # The keep-alive race: the server closed this reused connection
        # as the request went out. Once more, on a new connection.
        logger.debug("retrying %r on a new connection: %r", request, exc)
        await self._discard(conn, failed_on_reuse=True)
        conn = await self._acquire(key, request, tunnel, fresh=True)
        with self._lock:
            self._state.count(conn.origin, "retries")
        try:
            response = await conn.connection.handle_async_request(request)
        except BaseException as retry_exc:
            if conn.http2:
                return await self._send_unprocessed(
                    key, request, tunnel, conn, retry_exc
                )
            await self._discard(conn, retry_exc)
            raise_translated(retry_exc)
        return response, conn

    async def _send_unprocessed(
        self,
        key: tuple[bytes, bytes, int],
        request: httpcore.Request,
        tunnel: bool,
        conn: PooledConnection,
        exc: BaseException,
    ) -> tuple[httpcore.Response, PooledConnection]:
        """An HTTP/2 stream failed. One the server did not process (GOAWAY
        below its id, REFUSED_STREAM: ConnectionNotAvailable) goes again on
        another connection whatever its method (RFC 9113 §6.8), while its
        body can be sent again."""
        for attempt in range(MAX_UNPROCESSED_RETRIES + 1):
            unprocessed = isinstance(exc, httpcore.ConnectionNotAvailable)
            await self._stream_failed(conn, None if unprocessed else exc)
            if not unprocessed or not replayable_body(request.stream):
                break
            if attempt == MAX_UNPROCESSED_RETRIES:
                break
            logger.debug("sending %r again: the server did not process it", request)
            with self._lock:
                counter = "goaway_retries" if conn.goaway else "retries"
                self._state.count(conn.origin, counter)
            conn = await self._acquire(key, request, tunnel)
            try:
                response = await conn.connection.handle_async_request(request)
            except BaseException as again_exc:
                if not conn.http2:
                    await self._discard(conn, again_exc)
                    raise_translated(again_exc)
                exc = again_exc
                continue
            return response, conn
        if isinstance(exc, httpcore.ConnectionNotAvailable):
            exc = httpcore.RemoteProtocolError(
                "the server did not process the request (HTTP/2 GOAWAY or "
                "REFUSED_STREAM) and it could not be sent again"
            )
            with self._lock:
                self._state.count_failure(conn.origin, exc)
        raise_translated(exc)

    async def _stream_failed(
        self, conn: PooledConnection, error: BaseException | None
    ) -> None:
        to_close: list[PooledConnection] = []
        with self._lock:
            if error is not None:
                self._state.count_failure(conn.origin, translate(error))
            stream_done(self._state, conn, self._clock(), to_close)
        await self._close_connections(to_close)
