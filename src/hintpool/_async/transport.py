"""``hintpool.AsyncHTTPTransport``: a drop-in for ``httpx.AsyncHTTPTransport``."""

from __future__ import annotations

import ssl
import types
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import httpcore
import httpx

from .._exceptions import as_httpx_errors, raise_as_httpx
from .._h2support import alpn_protocols, require_h2
from .._options import check_transport_options
from .._requests import checked_request
from .._state import PoolStatistics
from .._tls import DEFAULT_TLS_SESSION_TTL
from .connection_pool import AsyncConnectionPool

__all__ = ["AsyncHTTPTransport"]


class AsyncHTTPTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through a hint-aware :class:`AsyncConnectionPool`.

    Takes the keyword arguments of ``httpx.AsyncHTTPTransport`` with the same
    meaning, plus hintpool's own: ``keepalive_margin`` (seconds taken off a
    server's announced idle timeout, default 1.0), ``max_keepalive_timeout``
    (cap on announced timeouts, default 600), ``retry_stale`` (send an
    idempotent request once more on a new connection when a reused one turns
    out closed by the server, default True) and ``max_origins`` (how many
    origins' statistics are remembered once they have no connection left),
    ``tls_session_cache`` (resume TLS sessions on new connections: True, a
    number of origins, or False) and ``tls_session_ttl`` (seconds, 7200),
    ``max_connections_per_origin`` (open connections at most to any one
    origin, default None: no cap; see :class:`AsyncConnectionPool`),
    ``prewarm`` (open a busy origin's next connection before its current
    one ends, async only, default True; see :class:`AsyncConnectionPool`),
    ``wire`` (``"auto"``: hintpool's own HTTP/1.1 connection on asyncio and
    in sync code, httpcore's under trio; ``"httpcore"``: httpcore's always).

    ``proxy``: a URL (``http://``, ``https://``, ``socks5://``,
    ``socks5h://``), an ``httpx.URL`` or an ``httpx.Proxy``, as in httpx;
    see the proxies page of the docs for what is pooled with what.

    ``http2=True`` offers HTTP/2 by ALPN on ``https://`` (the ``h2``
    package: ``pip install hintpool[http2]``); ``http1=False, http2=True``
    speaks HTTP/2 with prior knowledge on ``http://`` too.
    """

    def __init__(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 - immutable, as in httpx
        proxy: Any = None,
        uds: str | None = None,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[Any] | None = None,
        *,
        keepalive_margin: float = 1.0,
        max_keepalive_timeout: float = 600.0,
        max_connections_per_origin: int | None = None,
        max_origins: int = 10_000,
        retry_stale: bool = True,
        tls_session_cache: bool | int = True,
        tls_session_ttl: float = DEFAULT_TLS_SESSION_TTL,
        prewarm: bool = True,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        wire: str = "auto",
    ) -> None:
        check_transport_options(
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            proxy=proxy,
        )
        if not (http1 or http2):
            raise ValueError("http1 and http2 cannot both be False")
        if http2:
            require_h2()
        ssl_context = httpx.create_ssl_context(
            verify=verify, cert=cert, trust_env=trust_env
        )
        ssl_context.set_alpn_protocols(alpn_protocols(http1, http2))
        self._pool = AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            max_connections_per_origin=max_connections_per_origin,
            keepalive_expiry=limits.keepalive_expiry,
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
            proxy=proxy,
            http1=http1,
            http2=http2,
        )

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool behind this transport."""
        return self._pool

    def statistics(self) -> PoolStatistics:
        return self._pool.statistics()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._pool!r}>"

    async def __aenter__(self) -> AsyncHTTPTransport:
        await self._pool.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: types.TracebackType | None = None,
    ) -> None:
        with as_httpx_errors():
            await self._pool.__aexit__(exc_type, exc_value, traceback)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        core_url = httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        )
        extensions = request.extensions
        # httpx has checked every part already.
        if "target" in extensions:  # httpcore's constructor rewrites the URL
            req = httpcore.Request(
                method=request.method,
                url=core_url,
                headers=request.headers.raw,
                content=request.stream,
                extensions=extensions,
            )
        else:
            req = checked_request(
                request.method.encode("ascii"),
                core_url,
                request.headers.raw,
                request.stream,
                extensions,
            )
        try:
            resp = await self._pool.handle_async_request(req)
        except Exception as exc:
            raise_as_httpx(exc)
        assert isinstance(resp.stream, AsyncIterable)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=AsyncResponseStream(resp.stream),
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        with as_httpx_errors():
            await self._pool.aclose()


class AsyncResponseStream(httpx.AsyncByteStream):
    __slots__ = ("_stream",)

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            raise_as_httpx(exc)

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with as_httpx_errors():
                await self._stream.aclose()
