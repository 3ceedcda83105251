"""Checking a connection out: an idle one, a stream of a shared HTTP/2
one, a new one in a reserved slot, or a place in the queue.

A base class of ``AsyncConnectionPool`` (same object, same attributes); the
bookkeeping it drives is ``hintpool._state``'s.
"""

from __future__ import annotations

import logging
from typing import Any

import httpcore

from .. import _prewarm
from .._exceptions import PoolTimeout, raise_translated, translate
from .._multiplex import first_stream, handed_stream, take_stream
from .._state import RESERVED, WAIT, CheckoutResult, PooledConnection
from .._synchronization import AsyncWaiter
from .background import AsyncBackground

__all__ = ["AsyncAcquire"]

logger = logging.getLogger("hintpool")


class AsyncAcquire(AsyncBackground):
    async def _acquire(
        self,
        key: tuple[bytes, bytes, int],
        request: httpcore.Request,
        tunnel: bool,
        fresh: bool = False,
    ) -> PooledConnection:
        to_close: list[PooledConnection] = []
        taker: AsyncWaiter[CheckoutResult] | None = None
        while True:
            with self._lock:
                origin = self._state.origin(key)
                if origin.shared and not fresh:
                    shared = take_stream(self._state, origin)
                    if shared is not None:
                        return shared
                gate = origin.opening
                if gate is None:
                    now = self._clock()
                    result = self._state.checkout(origin, now, to_close, fresh)
                    if self._state.prewarm_enabled and result is not WAIT:
                        if result is RESERVED and origin.prewarming and not fresh:
                            taker = AsyncWaiter(key)
                            if not _prewarm.take_ahead(self._state, origin, taker):
                                taker = None
                        _prewarm.checked_out(self._state, origin, now)
                    if isinstance(result, PooledConnection) and result.http2:
                        # Shared in the same step as taken off the idle
                        # stack: a request in between would find neither
                        # and open a second connection.
                        first_stream(self._state, result)
                    elif result is WAIT:
                        waiter: AsyncWaiter[CheckoutResult] = AsyncWaiter(key)
                        self._state.queue(waiter, origin)
                    elif (
                        result is RESERVED
                        and taker is None
                        and origin.http_version != "HTTP/1.1"
                        and self._connector.may_speak_http2(key[0])
                    ):
                        # Until it is known whether it speaks HTTP/2, the next
                        # requests to this origin wait for this connection.
                        origin.opening = AsyncWaiter(key)
            if gate is None:
                break
            if not await gate.wait(request.extensions.get("timeout", {}).get("pool")):
                raise PoolTimeout("timed out waiting for a connection slot")
        if self._state.prewarm_due:
            self._start_prewarms()
        if to_close:
            await self._close_connections(to_close)
        if result is WAIT:
            result = await self._wait(waiter, request, fresh)
            # The slot was reserved on the origin's current state, which is
            # a new object if the old one was forgotten while we waited.
            with self._lock:
                origin = self._state.origin(key)
        if result is RESERVED and taker is not None:
            result = await self._take_prewarm(taker, origin, request)
        if result is RESERVED:
            return await self._open(origin, request, tunnel)
        assert isinstance(result, PooledConnection)
        return result

    async def _take_prewarm(
        self,
        taker: AsyncWaiter[CheckoutResult],
        origin: Any,
        request: httpcore.Request,
    ) -> CheckoutResult:
        """Wait for the pre-warm in flight instead of opening a connection
        (``hintpool._prewarm.take_ahead``), at most the connect timeout."""
        to_close: list[PooledConnection] = []
        try:
            await taker.wait(request.extensions.get("timeout", {}).get("connect"))
        except BaseException:
            with self._lock:
                _prewarm.abandon_take(self._state, origin, taker, to_close)
            await self._close_connections(to_close)
            raise
        with self._lock:
            result = _prewarm.took(self._state, origin, taker, self._clock(), to_close)
        await self._close_connections(to_close)
        return result

    async def _wait(
        self,
        waiter: AsyncWaiter[CheckoutResult],
        request: httpcore.Request,
        fresh: bool,
    ) -> CheckoutResult:
        timeout = request.extensions.get("timeout", {}).get("pool")
        to_close: list[PooledConnection] = []
        try:
            assigned = await waiter.wait(timeout)
        except BaseException:
            with self._lock:
                self._state.abandon(waiter, to_close)
            await self._close_connections(to_close)
            raise
        if not assigned:
            with self._lock:
                self._state.abandon(waiter, to_close)
            await self._close_connections(to_close)
            raise PoolTimeout("timed out waiting for a connection slot")
        result = waiter.result
        assert result is not None
        if isinstance(result, PooledConnection):
            if handed_stream(result):
                # A stream of a busy HTTP/2 connection, counted when handed
                # over; even a retry takes it (``fresh`` is the HTTP/1.1
                # keep-alive race, which a connection in use is past).
                return result
            with self._lock:
                if fresh:
                    result = self._state.recycle(result, to_close)
                else:
                    result = self._state.claim(result, self._clock(), to_close)
                    if isinstance(result, PooledConnection) and result.http2:
                        first_stream(self._state, result)
            if to_close:
                await self._close_connections(to_close)
        return result

    async def _open(
        self, origin: Any, request: httpcore.Request, tunnel: bool
    ) -> PooledConnection:
        try:
            connection, sock, tls = await self._connector.connect(
                request.url.origin, request.extensions, tunnel
            )
        except BaseException as exc:
            with self._lock:
                self._state.count_failure(origin, translate(exc))
                self._state.release_slot(origin)
                _open_gate(origin)
            raise_translated(exc)
        conn = PooledConnection(origin, connection, sock, tls)
        with self._lock:
            self._state.connection_opened(conn)
            if hasattr(connection, "goaway"):
                first_stream(self._state, conn)
            else:
                origin.http_version = "HTTP/1.1"
            _open_gate(origin)
        logger.debug("opened %r", conn)
        return conn


def _open_gate(origin: Any) -> None:
    """The connection opened (or failed): requests waiting to learn whether
    it speaks HTTP/2 go on."""
    gate = origin.opening
    if gate is not None:
        origin.opening = None
        gate.assign(None)
