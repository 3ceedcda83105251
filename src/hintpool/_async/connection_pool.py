"""The async connection pool: routes requests to pooled HTTP/1.1 connections.

The bookkeeping (which connection, which slot, who waits) is in
``hintpool._state``; the lifetime rules are in ``hintpool._policy``. This
module does the I/O around them: connect, send, close, wait.
"""

from __future__ import annotations

import logging
import ssl
import time
import types
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Callable

import httpcore

from .._exceptions import PoolClosed, PoolTimeout, UnsupportedProtocol, translate
from .._hints import response_keep_alive
from .._policy import LifetimePolicy
from .._requests import HeaderTypes, build_request
from .._stale import server_closed
from .._state import (
    POOL_CLOSED,
    RESERVED,
    WAIT,
    CheckoutResult,
    PooledConnection,
    PoolState,
    PoolStatistics,
)
from .._synchronization import (
    AsyncBookkeepingLock,
    AsyncShieldCancellation,
    AsyncWaiter,
)
from .connect import AsyncConnector

__all__ = ["AsyncConnectionPool"]

logger = logging.getLogger("hintpool")

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_CONNECTION_KEEP_ALIVE = (b"Connection", b"keep-alive")


class AsyncConnectionPool:
    """A pool of HTTP/1.1 connections that honours ``Keep-Alive`` hints.

    Use it directly (httpcore's ``request()`` / ``stream()`` /
    ``handle_async_request()`` API), or through
    :class:`hintpool.AsyncHTTPTransport` with httpx.

    :param max_connections: open connections at most, all origins together
        (``None``: no limit).
    :param max_keepalive_connections: idle connections kept at most.
    :param keepalive_expiry: idle seconds allowed when a server sends no
        ``Keep-Alive: timeout`` (``None``: no limit).
    :param keepalive_margin: seconds taken off every announced timeout.
    :param max_keepalive_timeout: cap on announced timeouts.
    :param clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = 100,
        max_keepalive_connections: int | None = 20,
        keepalive_expiry: float | None = 5.0,
        keepalive_margin: float = 1.0,
        max_keepalive_timeout: float = 600.0,
        retries: int = 0,
        local_address: str | None = None,
        uds: str | None = None,
        socket_options: Iterable[Any] | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        max_origins: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError("max_connections must be at least 1 (or None)")
        if max_keepalive_connections is not None and max_keepalive_connections < 0:
            raise ValueError("max_keepalive_connections must be >= 0 (or None)")
        self._policy = LifetimePolicy(
            margin=keepalive_margin,
            max_timeout=max_keepalive_timeout,
            keepalive_expiry=keepalive_expiry,
        )
        max_conn = float("inf") if max_connections is None else max_connections
        max_idle = (
            max_conn
            if max_keepalive_connections is None
            else min(max_keepalive_connections, max_conn)
        )
        self._state = PoolState(
            max_connections=max_conn,
            max_idle=max_idle,
            policy=self._policy,
            server_closed=server_closed,
            max_origins=max_origins,
        )
        self._connector = AsyncConnector(
            ssl_context=ssl_context,
            network_backend=network_backend,
            retries=retries,
            local_address=local_address,
            uds=uds,
            socket_options=socket_options,
        )
        self._clock = clock
        self._lock = AsyncBookkeepingLock()
        self._closed = False

    # -- public API ------------------------------------------------------------

    @property
    def policy(self) -> LifetimePolicy:
        return self._policy

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot of the pool's counters (see PoolStatistics)."""
        with self._lock:
            return self._state.statistics()

    def __repr__(self) -> str:
        state = self._state
        closed = " closed" if self._closed else ""
        return (
            f"<{type(self).__name__}{closed} open={state.open_count} "
            f"idle={state.idle_count} origins={len(state.origins)}>"
        )

    async def request(
        self,
        method: bytes | str,
        url: httpcore.URL | bytes | str,
        *,
        headers: HeaderTypes = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpcore.Response:
        """Send a request and read the whole response (httpcore's API)."""
        request = build_request(method, url, headers, content, extensions)
        response = await self.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    @asynccontextmanager
    async def stream(
        self,
        method: bytes | str,
        url: httpcore.URL | bytes | str,
        *,
        headers: HeaderTypes = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> AsyncIterator[httpcore.Response]:
        """Send a request; the body is read inside the ``with`` block."""
        request = build_request(method, url, headers, content, extensions)
        response = await self.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()

    async def handle_async_request(
        self, request: httpcore.Request
    ) -> httpcore.Response:
        if self._closed:
            raise PoolClosed("the connection pool has been closed")
        url = request.url
        scheme = url.scheme
        default_port = _DEFAULT_PORTS.get(scheme)
        if default_port is None:
            if scheme == b"":
                raise UnsupportedProtocol(
                    "Request URL is missing an 'http://' or 'https://' protocol."
                )
            raise UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme.decode()}://'."
            )
        if not url.host:
            raise UnsupportedProtocol("Request URL is missing a host.")
        port = url.port or default_port
        key = (scheme, url.host, port)
        _ask_for_keep_alive(request)

        conn = await self._acquire(key, request)
        try:
            response: httpcore.Response = await conn.connection.handle_async_request(
                request
            )
        except BaseException as exc:
            await self._discard(conn)
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        hint, will_close = response_keep_alive(response.headers)
        conn.lifetime.response_headers(hint, will_close)
        if hint is not None:
            conn.origin.last_hint = hint
        assert isinstance(response.stream, AsyncIterable)
        response.stream = AsyncPoolByteStream(response.stream, self, conn)
        return response

    async def aclose(self) -> None:
        """Close every idle connection; active ones close when released."""
        to_close: list[PooledConnection] = []
        with self._lock:
            self._closed = True
            self._state.close_all(to_close)
        await self._close_connections(to_close)

    async def __aenter__(self) -> AsyncConnectionPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: types.TracebackType | None = None,
    ) -> None:
        await self.aclose()

    # -- acquiring a connection ------------------------------------------------

    async def _acquire(
        self, key: tuple[bytes, bytes, int], request: httpcore.Request
    ) -> PooledConnection:
        to_close: list[PooledConnection] = []
        with self._lock:
            origin = self._state.origin(key)
            result = self._state.checkout(origin, self._clock(), to_close)
            if result is WAIT:
                waiter: AsyncWaiter[CheckoutResult] = AsyncWaiter(key)
                self._state.waiters.append(waiter)
        if to_close:
            await self._close_connections(to_close)
        if result is WAIT:
            result = await self._wait(waiter, request)
        if result is RESERVED:
            return await self._open(origin, request)
        assert isinstance(result, PooledConnection)
        return result

    async def _wait(
        self, waiter: AsyncWaiter[CheckoutResult], request: httpcore.Request
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
        if result is POOL_CLOSED:
            raise PoolClosed("the connection pool was closed while waiting")
        if isinstance(result, PooledConnection):
            with self._lock:
                result = self._state.claim(result, self._clock(), to_close)
            if to_close:
                await self._close_connections(to_close)
        return result

    async def _open(self, origin: Any, request: httpcore.Request) -> PooledConnection:
        try:
            connection, sock = await self._connector.connect(
                request.url.origin, request.extensions
            )
        except BaseException as exc:
            with self._lock:
                self._state.release_slot(origin)
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        conn = PooledConnection(origin, connection, sock)
        with self._lock:
            self._state.connection_opened(conn)
        logger.debug("opened %r", conn)
        return conn

    # -- releasing a connection ------------------------------------------------

    async def _response_closed(self, conn: PooledConnection) -> None:
        to_close: list[PooledConnection] = []
        with self._lock:
            reusable = not self._closed and conn.connection.is_idle()
            self._state.release(conn, self._clock(), reusable, to_close)
        if to_close:
            await self._close_connections(to_close)

    async def _discard(self, conn: PooledConnection) -> None:
        to_close: list[PooledConnection] = []
        with self._lock:
            self._state.discard(conn, to_close)
        await self._close_connections(to_close)

    async def _close_connections(self, connections: list[PooledConnection]) -> None:
        if not connections:
            return
        with AsyncShieldCancellation():
            for conn in connections:
                logger.debug("closing %r", conn)
                try:
                    await conn.connection.aclose()
                except Exception as exc:  # closing is best effort
                    logger.debug("error closing %r: %r", conn, exc)


def _ask_for_keep_alive(request: httpcore.Request) -> None:
    """Add ``Connection: keep-alive`` unless the caller set ``Connection``.

    Apache only sends its ``Keep-Alive`` hint to requests that ask for it.
    """
    for name, _ in request.headers:
        if len(name) == 10 and name.lower() == b"connection":
            return
    request.headers = [*request.headers, _CONNECTION_KEEP_ALIVE]


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

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except BaseException as exc:
            with AsyncShieldCancellation():
                await self.aclose()
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

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
            await self._pool._response_closed(self._conn)
