"""The async connection pool: routes requests to pooled HTTP/1.1 connections.

The bookkeeping (which connection, which slot, who waits) is in
``hintpool._state``; the lifetime rules are in ``hintpool._policy``. This
module does the I/O around them: connect, send, close, wait.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
import types
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Callable

import httpcore

from .. import _prewarm
from .._exceptions import (
    PoolTimeout,
    UnsupportedProtocol,
    raise_translated,
    translate,
)
from .._hints import cached_response_keep_alive
from .._multiplex import first_stream, stream_done, take_stream
from .._options import check_pool_options
from .._policy import LifetimePolicy
from .._prewarm import PREWARM_AHEAD
from .._proxy import forward_request, parse_proxy
from .._reaper import REAPER_HEARTBEAT, WATCH_INTERVAL, AsyncReaper
from .._requests import HeaderTypes, build_request, hint_headers
from .._stale import server_closed
from .._state import (
    RESERVED,
    WAIT,
    CheckoutResult,
    OriginState,
    PooledConnection,
    PoolState,
    PoolStatistics,
    origin_label,
)
from .._synchronization import (
    AsyncBookkeepingLock,
    AsyncShieldCancellation,
    AsyncWaiter,
)
from .._tls import DEFAULT_TLS_SESSION_TTL, TLSSessionCache, make_session_cache
from .connect import AsyncConnector
from .resend import AsyncResend

__all__ = ["AsyncConnectionPool"]

logger = logging.getLogger("hintpool")

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_CONNECTION_KEEP_ALIVE = (b"Connection", b"keep-alive")
#: A pre-warm has no request to take timeouts from: httpx's default.
_PREWARM_EXTENSIONS = {"timeout": {"connect": 5.0}}


class AsyncConnectionPool(AsyncResend):
    """A pool of HTTP/1.1 connections that honours ``Keep-Alive`` hints
    (and, with ``http2=True``, of multiplexed HTTP/2 connections).

    Use it directly (httpcore's ``request()`` / ``stream()`` /
    ``handle_async_request()`` API), or through
    :class:`hintpool.AsyncHTTPTransport` with httpx.

    :param max_connections: open connections at most, all origins together
        (``None``: no limit).
    :param max_keepalive_connections: idle connections kept at most.
    :param max_connections_per_origin: open connections at most to any one
        origin (``None``: no cap). Waiting is fair: a freed slot goes to the
        oldest request that can use it, so requests to an origin at its cap
        never hold up requests to other origins.
    :param keepalive_expiry: idle seconds allowed when a server sends no
        ``Keep-Alive: timeout`` (``None``: no limit).
    :param keepalive_margin: seconds taken off every announced timeout.
    :param max_keepalive_timeout: cap on announced timeouts.
    :param retry_stale: send an idempotent request once more on a new
        connection when a reused one fails before any response byte (see
        ``hintpool._retry``).
    :param tls_session_cache: resume TLS sessions on new connections to an
        origin: True (up to 1,000 origins), a size, or False / 0 (off).
    :param tls_session_ttl: seconds a TLS session is offered at most.
    :param prewarm: open a replacement in the background when a connection
        to a busy origin is about to end (the server's ``max`` runs out, or
        its idle deadline falls while requests still come), so the next
        request finds a warm connection; needs ``async with`` (the reaper's
        task group runs it). Sync pools do not pre-warm.
    :param wire: ``"auto"`` (default): hintpool's own HTTP/1.1 connection
        where it can run (asyncio and sync, no custom ``network_backend``),
        httpcore's elsewhere; ``"httpcore"``: always httpcore's connection.
    :param http1: speak HTTP/1.1 (default True).
    :param http2: offer HTTP/2 by ALPN on ``https://`` (needs the ``h2``
        package: ``pip install hintpool[http2]``); with ``http1=False``,
        HTTP/2 with prior knowledge on ``http://`` too. See docs/http2.md.
    :param clock: monotonic clock, injectable for tests (under trio's
        MockClock pass ``trio.current_time``).
    :param proxy: send every request through this proxy: a URL
        (``http://``, ``https://``, ``socks5://``, ``socks5h://``), an
        ``httpx.URL`` or an ``httpx.Proxy``, with httpx's meaning. See
        ``hintpool._proxy`` for what is pooled with what.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = 100,
        max_keepalive_connections: int | None = 20,
        max_connections_per_origin: int | None = None,
        keepalive_expiry: float | None = 5.0,
        keepalive_margin: float = 1.0,
        max_keepalive_timeout: float = 600.0,
        retries: int = 0,
        local_address: str | None = None,
        uds: str | None = None,
        socket_options: Iterable[Any] | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        max_origins: int = 10_000,
        retry_stale: bool = True,
        tls_session_cache: bool | int = True,
        tls_session_ttl: float = DEFAULT_TLS_SESSION_TTL,
        prewarm: bool = False,
        wire: str = "auto",
        http1: bool = True,
        http2: bool = False,
        clock: Callable[[], float] = time.monotonic,
        proxy: Any = None,
    ) -> None:
        check_pool_options(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            max_connections_per_origin=max_connections_per_origin,
            keepalive_expiry=keepalive_expiry,
            keepalive_margin=keepalive_margin,
            max_keepalive_timeout=max_keepalive_timeout,
            retries=retries,
            local_address=local_address,
            uds=uds,
            socket_options=socket_options,
            network_backend=network_backend,
            max_origins=max_origins,
            retry_stale=retry_stale,
            tls_session_cache=tls_session_cache,
            tls_session_ttl=tls_session_ttl,
            prewarm=prewarm,
            wire=wire,
            http1=http1,
            http2=http2,
            clock=clock,
            proxy=proxy,
        )
        if not (http1 or http2):
            raise ValueError("http1 and http2 cannot both be False")
        self._proxy = parse_proxy(proxy)
        if socket_options is not None:
            # Every new connection applies them: an iterator would be used up
            # by the first one.
            socket_options = tuple(socket_options)
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
            clock=clock,
            proxy_label=None if self._proxy is None else self._proxy.label,
            proxy_key=(
                self._proxy.key
                if self._proxy is not None and not self._proxy.is_socks
                else None
            ),
            max_per_origin=(
                math.inf
                if max_connections_per_origin is None
                else max_connections_per_origin
            ),
        )
        self._connector = AsyncConnector(
            ssl_context=ssl_context,
            network_backend=network_backend,
            retries=retries,
            local_address=local_address,
            uds=uds,
            socket_options=socket_options,
            tls_session_cache=make_session_cache(tls_session_cache, tls_session_ttl),
            wire=wire,
            proxy=self._proxy,
            http1=http1,
            http2=http2,
        )
        self._clock = clock
        self._lock = AsyncBookkeepingLock()
        self._retry_stale = retry_stale
        self._prewarm = prewarm
        self._reaper = AsyncReaper(self)

    # -- public API ------------------------------------------------------------

    @property
    def policy(self) -> LifetimePolicy:
        return self._policy

    @property
    def proxy(self) -> str | None:
        """The proxy's URL without credentials, or None."""
        return None if self._proxy is None else self._proxy.label

    @property
    def _proxy_url(self) -> httpcore.URL | None:
        # httpcore's proxy pools' name for it, which httpx's own tests read.
        proxy = self._proxy
        return None if proxy is None else proxy.url

    @property
    def tls_session_cache(self) -> TLSSessionCache | None:
        """The TLS sessions kept for resumption (None when turned off)."""
        return self._connector.tls_session_cache

    def statistics(self) -> PoolStatistics:
        """The pool's totals and current counts, O(1) whatever the number of
        origins; ``origins`` builds each origin's entry when it is read (see
        PoolStatistics)."""
        with self._lock:
            return self._state.statistics(self._lock)

    def __repr__(self) -> str:
        state = self._state
        return (
            f"<{type(self).__name__} open={state.open_count} "
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
        # Read through our own stream rather than ``response.aread()``, whose
        # typing-ABC checks cost more than the rest of the read.
        stream = response.stream
        assert isinstance(stream, AsyncPoolByteStream)
        try:
            content_read = stream.read_now()
            if content_read is None:
                content_read = b"".join([chunk async for chunk in stream])
        finally:
            to_close = stream.close_now()
            if to_close is None:
                await stream.aclose()
            elif to_close:
                await self._close_connections(to_close)
        response._content = content_read  # what aread() would have stored
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
        tunnel = False
        proxy = self._proxy
        if proxy is not None:
            if proxy.forwards(scheme):
                # On the proxy's connections, shared by every http:// origin.
                key = proxy.key
                request = forward_request(request, proxy)
            else:
                tunnel = True

        conn = await self._acquire(key, request, tunnel)
        try:
            response: httpcore.Response = await conn.connection.handle_async_request(
                request
            )
        except BaseException as exc:
            response, conn = await self._send_again(key, request, tunnel, conn, exc)
        # Typed loosely rather than cast(): a function call per request.
        stream: Any = response.stream
        if conn.http2:
            response.stream = AsyncPoolByteStream(stream, self, conn)
            return response
        hint, will_close = cached_response_keep_alive(hint_headers(response))
        conn.lifetime.response_headers(hint, will_close)
        if hint is not None:
            conn.origin.last_hint = hint
        left = conn.lifetime.requests_left
        if left is not None and left <= PREWARM_AHEAD and self._state.prewarm_enabled:
            # The server's last response or the one before: the replacement
            # connects while this body is read and the next request is sent.
            with self._lock:
                _prewarm.consider(self._state, conn.origin, self._clock())
            self._start_prewarms()
        response.stream = AsyncPoolByteStream(stream, self, conn)
        return response

    async def aclose(self) -> None:
        """Stop the reaper and close every idle connection; active ones close
        when their response is closed.

        The pool stays usable, as httpx's and httpcore's do: a later request
        opens a new connection (a transport shared by several clients keeps
        working when one of them is closed)."""
        to_close: list[PooledConnection] = []
        with self._lock:
            self._state.prewarm_enabled = False
            self._state.close_all(to_close)
        # Cancels the pre-warms still connecting: they free their slots.
        await self._reaper.stop()
        await self._close_connections(to_close)

    async def __aenter__(self) -> AsyncConnectionPool:
        """Start the reaper (idle connections are closed at their deadline
        even when no request comes); ``__aexit__`` closes the pool."""
        await self._reaper.start()
        self._state.prewarm_enabled = self._prewarm and self._reaper.spawns_tasks
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
        origin: OriginState,
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

    # -- releasing a connection ------------------------------------------------

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

    async def _reap(self) -> float:
        """Close expired idle connections and watch for server hang-ups.

        Called by the reaper; returns when it should run next.
        """
        to_close: list[PooledConnection] = []
        with self._lock:
            now = self._clock()
            self._state.evict_expired(now, to_close)
            self._state.forget_vacant(now)
            hung_up = [c for c in self._state.watched if self._state.server_closed(c)]
            for conn in hung_up:
                self._state.idle_closed_by_server(conn, now, to_close)
        self._start_prewarms()
        await self._close_connections(to_close)
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

    # -- pre-warming (see hintpool._prewarm) ------------------------------------

    def _start_prewarms(self) -> None:
        """Open the pre-warms the bookkeeping reserved slots for."""
        with self._lock:
            due = self._state.prewarm_due
            if not due:
                return
            self._state.prewarm_due = []
        for origin in due:
            if not self._reaper.spawn(self._prewarm_connection, origin):
                with self._lock:  # the pool is closing
                    _prewarm.failed(self._state, origin, cancelled=True)

    async def _prewarm_connection(self, origin: OriginState) -> None:
        """Open a connection to ``origin`` ahead of need, in the background.

        A failure is logged and counted, never raised: the requests to that
        origin open their own connections as usual."""
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
        if hasattr(connection, "goaway"):
            # HTTP/2: the origin's one connection carries every request, so
            # a spare is of no use; closing it is what an unused one costs.
            with self._lock:
                _prewarm.failed(self._state, origin, cancelled=True)
                origin.http_version = "HTTP/2"
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


def _open_gate(origin: Any) -> None:
    """The connection opened (or failed): requests waiting to learn whether
    it speaks HTTP/2 go on."""
    gate = origin.opening
    if gate is not None:
        origin.opening = None
        gate.assign(None)


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
