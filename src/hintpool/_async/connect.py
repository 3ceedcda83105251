"""Opening one HTTP/1.1 connection: TCP (or a Unix socket), then TLS."""

from __future__ import annotations

import itertools
import logging
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpcore

from .._synchronization import default_async_backend
from .._tls import TLSConnectionInfo, TLSSessionCache
from .._tls_stream import async_start_tls

logger = logging.getLogger("hintpool")

__all__ = ["AsyncConnector"]

# Same schedule as httpcore's connect retries: 0 s, 0.5 s, 1 s, 2 s, ...
RETRIES_BACKOFF_FACTOR = 0.5

# Backends whose streams are real sockets: TLS is ours (sessions can be
# offered). Any other backend (a mock, a user's own) keeps its start_tls.
_SOCKET_BACKENDS = (httpcore.AnyIOBackend, httpcore.TrioBackend, httpcore.SyncBackend)


def _backoff() -> Iterator[float]:
    yield 0.0
    for n in itertools.count():
        yield RETRIES_BACKOFF_FACTOR * (2**n)


class AsyncConnector:
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
    ) -> None:
        self._ssl_context = ssl_context
        self.tls_session_cache = tls_session_cache
        self._network_backend = network_backend
        self._retries = retries
        self._local_address = local_address
        self._uds = uds
        self._socket_options = socket_options

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Built lazily: loading the CA bundle takes tens of milliseconds
            # and plain-HTTP pools never need it.
            import httpx

            self._ssl_context = httpx.create_ssl_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context

    async def connect(
        self, origin: httpcore.Origin, extensions: Mapping[str, Any]
    ) -> tuple[httpcore.AsyncHTTP11Connection, Any, TLSConnectionInfo | None]:
        """A new connection to ``origin``, its raw socket (or None) and what
        its TLS handshake did (None for plain HTTP)."""
        backend = self._network_backend
        if backend is None:
            backend = self._network_backend = default_async_backend()
        timeouts = extensions.get("timeout", {})
        connect_timeout = timeouts.get("connect")
        delays = _backoff()
        retries_left = self._retries
        while True:
            try:
                stream = await self._open_stream(backend, origin, connect_timeout)
                break
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if retries_left <= 0:
                    raise
                retries_left -= 1
                delay = next(delays)
                logger.debug("connect to %s failed, retrying in %.1fs", origin, delay)
                await backend.sleep(delay)
        tls = None
        if origin.scheme == b"https":
            sni = extensions.get("sni_hostname") or origin.host.decode("ascii")
            if isinstance(backend, _SOCKET_BACKENDS):
                stream, tls = await self._start_tls(
                    stream, origin, sni, connect_timeout
                )
            else:
                try:
                    stream = await stream.start_tls(
                        self.ssl_context, server_hostname=sni, timeout=connect_timeout
                    )
                except BaseException:
                    await stream.aclose()
                    raise
        sock = stream.get_extra_info("socket")
        connection = httpcore.AsyncHTTP11Connection(origin=origin, stream=stream)
        return connection, sock, tls

    async def _start_tls(
        self,
        stream: httpcore.AsyncNetworkStream,
        origin: httpcore.Origin,
        sni: str,
        timeout: float | None,
    ) -> tuple[httpcore.AsyncNetworkStream, TLSConnectionInfo]:
        """TLS offering the cached session for (context, host, port, SNI)."""
        ctx = self.ssl_context
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
        if logger.isEnabledFor(logging.DEBUG):
            how = "resumed" if tls.resumed else "full"
            version = ssl_object.version()
            logger.debug(
                "TLS to %s (SNI %s): %s %s handshake", origin, sni, how, version
            )
        return tls_stream, tls

    async def _open_stream(
        self,
        backend: httpcore.AsyncNetworkBackend,
        origin: httpcore.Origin,
        timeout: float | None,
    ) -> httpcore.AsyncNetworkStream:
        if self._uds is not None:
            return await backend.connect_unix_socket(
                self._uds, timeout=timeout, socket_options=self._socket_options
            )
        return await backend.connect_tcp(
            origin.host.decode("ascii"),
            origin.port,
            timeout=timeout,
            local_address=self._local_address,
            socket_options=self._socket_options,
        )
