"""The async connection pool: routes requests to pooled HTTP/1.1 connections.

The bookkeeping (which connection, which slot, who waits) is in
``hintpool._state``; the lifetime rules are in ``hintpool._policy``. This
module does the I/O around them: connect, send, close, wait, in parts:
checking a connection out (``acquire``), handing it back (``release``),
the reaper's pass, pre-warms and closing (``background``), sending again
(``resend``), and the response body (``byte_stream``).
"""

from __future__ import annotations

import logging
import math
import ssl
import time
import types
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Callable

import httpcore

from .. import _prewarm
from .._exceptions import (
    UnsupportedProtocol,
)
from .._hints import cached_response_keep_alive
from .._options import check_pool_options
from .._policy import LifetimePolicy
from .._prewarm import PREWARM_AHEAD
from .._proxy import forward_request, parse_proxy
from .._reaper import AsyncReaper
from .._requests import HeaderTypes, build_request, hint_headers
from .._stale import server_closed
from .._state import (
    PooledConnection,
    PoolState,
    PoolStatistics,
)
from .._synchronization import (
    AsyncBookkeepingLock,
)
from .._tls import DEFAULT_TLS_SESSION_TTL, TLSSessionCache, make_session_cache
from .byte_stream import AsyncPoolByteStream
from .connect import AsyncConnector
from .resend import AsyncResend

__all__ = ["AsyncConnectionPool"]

logger = logging.getLogger("hintpool")

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_CONNECTION_KEEP_ALIVE = (b"Connection", b"keep-alive")


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
        task group runs it). On by default; sync pools do not pre-warm.
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
        prewarm: bool = True,
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
        try:
            # Cancels the pre-warms still connecting: they free their slots.
            await self._reaper.stop()
            await self._close_connections(to_close)
        finally:
            self._connector.close()

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


def _ask_for_keep_alive(request: httpcore.Request) -> None:
    """Add ``Connection: keep-alive`` unless the caller set ``Connection``.

    Apache only sends its ``Keep-Alive`` hint to requests that ask for it.
    """
    for name, _ in request.headers:
        if len(name) == 10 and name.lower() == b"connection":
            return
    request.headers = [*request.headers, _CONNECTION_KEEP_ALIVE]
