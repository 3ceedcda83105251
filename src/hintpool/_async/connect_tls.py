"""TLS for new connections: which context and SNI, session resumption.

A base class of ``AsyncConnector`` (same object, same attributes). Every
handshake on a socket is hintpool's own (``hintpool._tls_stream``), which
offers the session cached for (context, host, port, SNI) and records what
the handshake did (``hintpool._tls``); a user's ``network_backend`` keeps
its own ``start_tls``.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpcore

from .._h2support import alpn_protocols
from .._proxy import ProxyConfig
from .._tls import TLSConnectionInfo, TLSSessionCache
from .._tls_stream import async_start_tls

logger = logging.getLogger("hintpool")

__all__ = ["AsyncConnectorTLS", "log_handshake", "tls_failure"]

# Backends whose streams are real sockets: TLS is ours (sessions can be
# offered). Any other backend (a mock, a user's own) keeps its start_tls.
_SOCKET_BACKENDS = (httpcore.AnyIOBackend, httpcore.TrioBackend, httpcore.SyncBackend)


class AsyncConnectorTLS:
    # Set by AsyncConnector.__init__.
    _ssl_context: ssl.SSLContext | None
    _http1: bool
    _http2: bool
    proxy: ProxyConfig | None
    tls_session_cache: TLSSessionCache | None

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Built lazily: loading the CA bundle takes tens of milliseconds
            # and plain-HTTP pools never need it.
            import httpx

            self._ssl_context = httpx.create_ssl_context()
            self._ssl_context.set_alpn_protocols(
                alpn_protocols(self._http1, self._http2)
            )
        return self._ssl_context

    @property
    def proxy_ssl_context(self) -> ssl.SSLContext:
        """TLS to an https:// proxy: the proxy's own context, else the pool's."""
        proxy = self.proxy
        if proxy is not None and proxy.ssl_context is not None:
            ctx: ssl.SSLContext = proxy.ssl_context
            return ctx
        return self.ssl_context

    def _tls_for(
        self, origin: httpcore.Origin, extensions: Mapping[str, Any], to_proxy: bool
    ) -> tuple[ssl.SSLContext, str]:
        """Context and SNI for TLS to ``origin`` (the proxy if ``to_proxy``:
        the request's ``sni_hostname`` is the origin's, not the proxy's)."""
        host = origin.host.decode("ascii")
        if to_proxy:
            return self.proxy_ssl_context, host
        return self.ssl_context, extensions.get("sni_hostname") or host

    async def _tls_hop(
        self,
        backend: httpcore.AsyncNetworkBackend,
        stream: httpcore.AsyncNetworkStream,
        origin: httpcore.Origin,
        extensions: Mapping[str, Any],
        to_proxy: bool,
        trace: Any,
    ) -> tuple[httpcore.AsyncNetworkStream, TLSConnectionInfo | None]:
        ctx, sni = self._tls_for(origin, extensions, to_proxy)
        connect_timeout = extensions.get("timeout", {}).get("connect")
        if trace is not None:
            await trace(
                "connection.start_tls.started",
                {
                    "ssl_context": ctx,
                    "server_hostname": sni,
                    "timeout": connect_timeout,
                },
            )
        try:
            stream, tls = await self._start_tls_on(
                backend, stream, origin, ctx, sni, connect_timeout
            )
        except BaseException as exc:
            if trace is not None:
                await trace("connection.start_tls.failed", {"exception": exc})
            raise
        if trace is not None:
            await trace("connection.start_tls.complete", {"return_value": stream})
        return stream, tls

    async def _start_tls_on(
        self,
        backend: httpcore.AsyncNetworkBackend,
        stream: httpcore.AsyncNetworkStream,
        origin: httpcore.Origin,
        ctx: ssl.SSLContext,
        sni: str,
        timeout: float | None,
    ) -> tuple[httpcore.AsyncNetworkStream, TLSConnectionInfo | None]:
        if isinstance(backend, _SOCKET_BACKENDS):
            return await self._start_tls(stream, origin, ctx, sni, timeout)
        try:
            tls_stream = await stream.start_tls(
                ctx, server_hostname=sni, timeout=timeout
            )
        except BaseException:
            await stream.aclose()
            raise
        return tls_stream, None

    async def _start_tls(
        self,
        stream: httpcore.AsyncNetworkStream,
        origin: httpcore.Origin,
        ctx: ssl.SSLContext,
        sni: str,
        timeout: float | None,
    ) -> tuple[httpcore.AsyncNetworkStream, TLSConnectionInfo]:
        """TLS offering the cached session for (context, host, port, SNI):
        an origin's session is never offered to its proxy, nor the other way
        round, as their hosts and ports differ."""
        key = (ctx, origin.host.decode("ascii"), origin.port, sni)
        cache = self.tls_session_cache
        session = None if cache is None else cache.get(key)
        started = time.perf_counter()
        tls_stream = await async_start_tls(stream, ctx, sni, session, timeout)
        elapsed = time.perf_counter() - started
        ssl_object = tls_stream.get_extra_info("ssl_object")
        tls = TLSConnectionInfo(key, session, ssl_object, elapsed)
        if cache is not None:
            cache.handshake_done(tls)
        log_handshake(origin, sni, tls)
        return tls_stream, tls


def tls_failure(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, ssl.SSLError)


def log_handshake(
    origin: httpcore.Origin, sni: str | None, tls: TLSConnectionInfo
) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        how = "resumed" if tls.resumed else "full"
        version = tls.ssl_object.version()
        logger.debug("TLS to %s (SNI %s): %s %s handshake", origin, sni, how, version)
