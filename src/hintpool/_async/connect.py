"""Opening one HTTP/1.1 connection: TCP (or a Unix socket), then TLS.

Two connection classes can carry a pooled connection:

* hintpool's own (``AsyncFastConnection`` on asyncio, ``FastConnection`` in
  sync code): the ``_h1`` codec driven by an asyncio Protocol or a blocking
  socket. Used whenever it can be: ``wire="auto"``, no custom
  ``network_backend``, and (async) not under trio.
* httpcore's ``HTTP11Connection`` over httpcore's network backends: under
  trio, with a user's ``network_backend`` (mocks, custom streams), or when
  asked for with ``wire="httpcore"``.

Through a proxy (``hintpool._proxy``) the first hop is the proxy: TCP to
it, TLS too for an https:// proxy. Forwarded requests' connections end
there. For a tunnel, ``hintpool._async.tunnel`` runs CONNECT or SOCKS5 on
the socket (hintpool's connection, which then takes the socket over) or on
httpcore's stream, then TLS to the origin runs inside. A tunnel through an
https:// proxy (TLS in TLS) always uses httpcore's connection.

The pool drives both through the same few methods (``handle_request``,
``is_idle``, ``aclose``); see ``hintpool._retry`` and ``hintpool._stale``
for the two questions answered differently by each, and
``hintpool._async.connect_tls`` for TLS.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import httpcore

from .._asyncio_connection import AsyncFastConnection
from .._asyncio_open import AsyncSocketIO
from .._h2support import alpn_protocols, require_h2
from .._proxy import ProxyConfig
from .._shared_caches import hold, release
from .._synchronization import async_fast_wire_available, default_async_backend
from .._tls import TLSConnectionInfo, TLSSessionCache
from .._trace_log import async_logging_trace
from .connect_tls import AsyncConnectorTLS, log_handshake, tls_failure
from .tunnel import open_tunnel

logger = logging.getLogger("hintpool")

__all__ = ["AsyncConnector"]

# Same schedule as httpcore's connect retries: 0 s, 0.5 s, 1 s, 2 s, ...
RETRIES_BACKOFF_FACTOR = 0.5


def _backoff() -> Iterator[float]:
    yield 0.0
    for n in itertools.count():
        yield RETRIES_BACKOFF_FACTOR * (2**n)


class AsyncConnector(AsyncConnectorTLS):
    """Everything needed to open a connection to an origin.

    ``retries`` retries failed connection attempts (ConnectError,
    ConnectTimeout) with exponential backoff, as ``httpx.HTTPTransport``
    does; it never retries a request that was sent.

    ``tls_session_cache`` (None: off) supplies the session offered to each
    new TLS connection; see ``hintpool._tls``.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        network_backend: httpcore.AsyncNetworkBackend | None,
        retries: int = 0,
        local_address: str | None = None,
        uds: str | None = None,
        socket_options: Iterable[Any] | None = None,
        tls_session_cache: TLSSessionCache | None = None,
        wire: str = "auto",
        proxy: ProxyConfig | None = None,
        http1: bool = True,
        http2: bool = False,
    ) -> None:
        # hintpool's own connection runs on real sockets only: a backend the
        # user supplied (a mock, custom streams) keeps httpcore's.
        self._fast_allowed = wire == "auto" and network_backend is None
        self._ssl_context = ssl_context
        self.tls_session_cache = tls_session_cache
        self._network_backend = network_backend
        self._retries = retries
        self._local_address = local_address
        self._uds = uds
        self._socket_options = socket_options
        #: Every connection goes through it (see ``hintpool._proxy``).
        self.proxy = proxy
        self._http1 = http1
        self._http2 = http2
        if http2:
            require_h2()
            if ssl_context is not None:
                ssl_context.set_alpn_protocols(alpn_protocols(http1, http2))

    def close(self) -> None:
        """The pool is closed: the shared caches may be emptied."""
        release(self)

    def uses_fast_wire(self) -> bool:
        """Whether new connections are hintpool's own (see the module doc)."""
        return self._fast_allowed and async_fast_wire_available()

    def may_speak_http2(self, scheme: bytes) -> bool:
        """Whether a new connection to an origin of ``scheme`` may turn out
        HTTP/2: TLS offering h2 by ALPN, or plain HTTP with ``http1=False``
        (prior knowledge). Plain HTTP with both on stays HTTP/1.1, as in
        httpx: there is no upgrade. Connections that end at a proxy
        (forwarded requests) always speak HTTP/1.1."""
        if self.proxy is not None and scheme == b"http":
            return False
        return self._http2 and (scheme == b"https" or not self._http1)

    async def connect(
        self,
        origin: httpcore.Origin,
        extensions: Mapping[str, Any],
        tunnel: bool = False,
    ) -> tuple[Any, Any, TLSConnectionInfo | None]:
        """A new connection to ``origin``, its raw socket when the pool must
        poll it for a server hang-up (else None), and what its TLS handshake
        did (None for plain HTTP).

        With a proxy: ``tunnel`` opens a tunnel to ``origin`` through it;
        otherwise ``origin`` is the proxy's (forwarded requests).
        """
        hold(self)  # until the pool is closed: see _shared_caches
        if tunnel:
            proxy = self.proxy
            assert proxy is not None
            # TLS in TLS (an https:// target through an https:// proxy) runs
            # on httpcore's connection: hintpool's own starts TLS on a socket.
            if (
                self.uses_fast_wire()
                and proxy.scheme != "https"
                and not self.may_speak_http2(origin.scheme)
            ):
                return await self._connect_fast_tunnel(origin, extensions, proxy)
            return await self._connect_httpcore(origin, extensions, proxy)
        if self.uses_fast_wire() and not self.may_speak_http2(origin.scheme):
            return await self._connect_fast(origin, extensions)
        return await self._connect_httpcore(origin, extensions, None)

    async def _connect_httpcore(
        self,
        origin: httpcore.Origin,
        extensions: Mapping[str, Any],
        tunnel_via: ProxyConfig | None,
    ) -> tuple[Any, Any, TLSConnectionInfo | None]:
        backend = self._network_backend
        if backend is None:
            backend = self._network_backend = default_async_backend()
        connect_timeout = extensions.get("timeout", {}).get("connect")
        trace = async_logging_trace(extensions.get("trace"))
        first_hop = origin if tunnel_via is None else tunnel_via.origin

        async def attempt() -> httpcore.AsyncNetworkStream:
            return await self._open_stream(backend, first_hop, connect_timeout, trace)

        stream = await self._retrying(attempt, first_hop, self._retries)
        if tunnel_via is not None:
            if first_hop.scheme == b"https":
                stream, _ = await self._tls_hop(
                    backend, stream, first_hop, extensions, True, trace
                )
            try:
                await open_tunnel(stream, tunnel_via, origin, connect_timeout)
            except BaseException:
                await stream.aclose()
                raise
        tls = None
        if origin.scheme == b"https":
            # Without a tunnel, a pool with a proxy only connects to it.
            to_proxy = tunnel_via is None and self.proxy is not None
            stream, tls = await self._tls_hop(
                backend, stream, origin, extensions, to_proxy, trace
            )
        sock = stream.get_extra_info("socket")
        connection: Any
        if self._speaks_http2(origin, stream):
            from .http2 import AsyncH2Connection  # h2 is an optional extra

            connection = AsyncH2Connection(origin, stream)
        else:
            connection = httpcore.AsyncHTTP11Connection(origin=origin, stream=stream)
        return connection, sock, tls

    def _speaks_http2(
        self, origin: httpcore.Origin, stream: httpcore.AsyncNetworkStream
    ) -> bool:
        if not self.may_speak_http2(origin.scheme):
            return False
        if origin.scheme != b"https" or not self._http1:
            return True  # prior knowledge, or HTTP/2 only (as httpcore does)
        ssl_object = stream.get_extra_info("ssl_object")
        return ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"

    async def _connect_fast_tunnel(
        self,
        origin: httpcore.Origin,
        extensions: Mapping[str, Any],
        proxy: ProxyConfig,
    ) -> tuple[AsyncFastConnection, None, TLSConnectionInfo | None]:
        connect_timeout = extensions.get("timeout", {}).get("connect")

        async def attempt() -> AsyncSocketIO:
            return await AsyncSocketIO.connect(
                proxy.origin,
                timeout=connect_timeout,
                uds=self._uds,
                local_address=self._local_address,
                socket_options=self._socket_options,
            )

        sock_io: AsyncSocketIO = await self._retrying(attempt, proxy, self._retries)
        try:
            await open_tunnel(sock_io, proxy, origin, connect_timeout)
        except BaseException:
            await sock_io.aclose()
            raise
        return await self._connect_fast(origin, extensions, sock_io.detach())

    async def _connect_fast(
        self,
        origin: httpcore.Origin,
        extensions: Mapping[str, Any],
        sock: socket.socket | None = None,
    ) -> tuple[AsyncFastConnection, None, TLSConnectionInfo | None]:
        """``sock``: connected through a tunnel already (closed on failure)."""
        connect_timeout = extensions.get("timeout", {}).get("connect")
        ctx = sni = key = session = None
        cache = self.tls_session_cache
        if origin.scheme == b"https":
            to_proxy = sock is None and self.proxy is not None
            ctx, sni = self._tls_for(origin, extensions, to_proxy)
            key = (ctx, origin.host.decode("ascii"), origin.port, sni)
            session = None if cache is None else cache.get(key)
        started = 0.0

        async def attempt() -> AsyncFastConnection:
            nonlocal started
            started = time.perf_counter()  # the handshake of the last attempt
            return await AsyncFastConnection.open(
                origin,
                timeout=connect_timeout,
                uds=self._uds,
                local_address=self._local_address,
                socket_options=self._socket_options,
                ssl_context=ctx,
                server_hostname=sni,
                session=session,
                trace=async_logging_trace(extensions.get("trace")),
                sock=sock,
            )

        try:
            connection: AsyncFastConnection = await self._retrying(
                attempt, origin, 0 if sock is not None else self._retries
            )
        except BaseException:
            if sock is not None:
                sock.close()  # taken over, unless open() never ran
            raise
        if ctx is None or key is None:
            return connection, None, None
        ssl_object = connection.ssl_object
        assert ssl_object is not None
        elapsed = time.perf_counter() - started
        tls = TLSConnectionInfo(key, session, ssl_object, elapsed)
        if cache is not None:
            cache.handshake_done(tls)
        log_handshake(origin, sni, tls)
        return connection, None, tls

    async def _retrying(
        self, attempt: Callable[[], Any], target: object, retries: int
    ) -> Any:
        """``attempt()``, made again after a backoff while it fails to
        connect, at most ``retries`` more times. As in httpcore, ``retries``
        covers the TCP connect only: a failed TLS handshake (bad
        certificate ...) fails at once."""
        delays = _backoff()
        while True:
            try:
                return await attempt()
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                if retries <= 0 or tls_failure(exc):
                    raise
                retries -= 1
                delay = next(delays)
                logger.debug("connect to %s failed, retrying in %.1fs", target, delay)
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        backend = self._network_backend
        if backend is None:
            backend = self._network_backend = default_async_backend()
        await backend.sleep(seconds)

    async def _open_stream(
        self,
        backend: httpcore.AsyncNetworkBackend,
        origin: httpcore.Origin,
        timeout: float | None,
        trace: Any,
    ) -> httpcore.AsyncNetworkStream:
        # The trace events and their arguments are httpcore's own.
        kwargs: dict[str, Any]
        opener: Callable[..., Any]
        if self._uds is not None:
            name = "connection.connect_unix_socket"
            kwargs = {"path": self._uds, "timeout": timeout}
            opener = backend.connect_unix_socket
        else:
            name = "connection.connect_tcp"
            kwargs = {
                "host": origin.host.decode("ascii"),
                "port": origin.port,
                "local_address": self._local_address,
                "timeout": timeout,
            }
            opener = backend.connect_tcp
        kwargs["socket_options"] = self._socket_options
        if trace is None:
            return await opener(**kwargs)
        await trace(f"{name}.started", kwargs)
        try:
            stream = await opener(**kwargs)
        except BaseException as exc:
            await trace(f"{name}.failed", {"exception": exc})
            raise
        await trace(f"{name}.complete", {"return_value": stream})
        return stream
