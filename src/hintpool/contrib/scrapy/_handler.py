"""The download handler: Scrapy's requests on hintpool's async pool.

Theory of operation
-------------------
Scrapy (with the asyncio reactor, its default) calls the coroutine
``download_request`` once per request, each in its own asyncio task. The
handler keeps one :class:`hintpool.AsyncConnectionPool` per bind address
and proxy (one for most crawls), created at the first request and owned by a task of
its own whose ``async with`` runs the pool's reaper, so idle connections
close at the server's deadline even between page groups. ``close()`` (when
the engine stops) ends that task, which closes the pool.

Each download runs in a cancel scope whose deadline is the request's
``download_timeout``: it bounds the whole download (connect, head and
body), as Scrapy's own handler does. A download cancelled mid-body closes
its connection; nothing is returned to the pool half-read. Failures become
the exceptions Scrapy's ``RetryMiddleware`` knows (``_errors``), so retry
decisions stay Scrapy's; hintpool's own stale retry (an idempotent request
that met a server close on a reused connection, before any response byte)
happens below and is never seen by Scrapy.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import anyio
import httpcore
import httpx
from scrapy import signals
from scrapy.exceptions import NotConfigured, StopDownload
from scrapy.http import Headers, Response
from scrapy.utils.asyncio import is_asyncio_available
from twisted.python.failure import Failure

from ..._async.connection_pool import AsyncConnectionPool
from ..._requests import build_request
from ._errors import (
    DataLoss,
    DownloadCancelled,
    DownloadTimeout,
    body_error,
    request_error,
)
from ._options import (
    HandlerSettings,
    ProxyKey,
    bind_host,
    make_ssl_context,
    pool_options,
    proxy_option,
)
from ._response import cancel_maxsize, make_response, response_fields, warn_size
from ._stats import write_stats

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

__all__ = ["HintpoolDownloadHandler"]

logger = logging.getLogger("hintpool.contrib.scrapy")

# Methods that carry a body even when it is empty (Content-Length: 0).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _OwnedPool:
    """A pool and the task whose ``async with`` keeps its reaper running."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._own())

    async def _own(self) -> None:
        async with self.pool:
            await self._stop.wait()

    async def aclose(self) -> None:
        self._stop.set()
        await self._task


class _CrawlerPools:
    """The pools of one crawler, shared by its handler instances.

    Scrapy builds one handler per scheme (``http`` and ``https``): sharing
    the pools keeps one connection limit, one TLS session cache and one set
    of statistics per crawler. The last handler to close closes them.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.options = pool_options(settings)
        self.ssl_context = make_ssl_context(settings)
        self.default_bind = bind_host(settings.get("DOWNLOAD_BIND_ADDRESS"))
        self.owned: dict[tuple[str | None, ProxyKey | None], _OwnedPool] = {}
        self.users = 0
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    def pool_for(self, request: Request) -> AsyncConnectionPool:
        """The pool for this request's bind address and proxy (one pool per
        pair: a pool has one local address and at most one proxy)."""
        meta = request.meta
        meta_bind = meta.get("bindaddress")
        bind = bind_host(meta_bind) if meta_bind else self.default_bind
        proxy = proxy_option(meta.get("proxy"), request.headers)
        key = (bind, proxy)
        owned = self.owned.get(key)
        if owned is None:
            options = dict(self.options, ssl_context=self.ssl_context)
            options["local_address"] = bind
            if proxy is not None:
                url, auth = proxy
                headers = None if auth is None else {"Proxy-Authorization": auth}
                options["proxy"] = httpx.Proxy(url, headers=headers)
            owned = self.owned[key] = _OwnedPool(AsyncConnectionPool(**options))
        return owned.pool

    def spider_closed(self) -> None:
        # Before Scrapy dumps its stats at the end of the crawl.
        self.write_stats()

    def write_stats(self) -> None:
        snapshots = [owned.pool.statistics() for owned in self.owned.values()]
        if snapshots and self.crawler.stats is not None:
            write_stats(self.crawler.stats, snapshots)

    async def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        _SHARED.pop(self.crawler, None)
        for owned in list(self.owned.values()):
            await owned.aclose()
        self.write_stats()


_SHARED: weakref.WeakKeyDictionary[Crawler, _CrawlerPools] = weakref.WeakKeyDictionary()


class HintpoolDownloadHandler:
    """A Scrapy download handler for ``http`` and ``https`` on hintpool.

    Enable it in the project's settings::

        DOWNLOAD_HANDLERS = {
            "http": "hintpool.contrib.scrapy.HintpoolDownloadHandler",
            "https": "hintpool.contrib.scrapy.HintpoolDownloadHandler",
        }
        TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
    """

    lazy = False

    def __init__(self, crawler: Crawler) -> None:
        if not is_asyncio_available():
            raise NotConfigured(
                "HintpoolDownloadHandler needs asyncio: set TWISTED_REACTOR to "
                "'twisted.internet.asyncioreactor.AsyncioSelectorReactor'"
            )
        self.crawler = crawler
        self._settings = HandlerSettings.from_settings(crawler.settings)
        shared = _SHARED.get(crawler)
        if shared is None:
            shared = _SHARED[crawler] = _CrawlerPools(crawler)
        shared.users += 1
        self._shared = shared
        self._scopes: set[anyio.CancelScope] = set()
        self._closing = False
        self._dataloss_warned = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> HintpoolDownloadHandler:
        return cls(crawler)

    @property
    def pools(self) -> list[AsyncConnectionPool]:
        """The crawler's pools (one per bind address and proxy in use)."""
        return [owned.pool for owned in self._shared.owned.values()]

    # -- Scrapy's handler API ---------------------------------------------------

    async def download_request(self, request: Request) -> Response:
        if self._closing:
            raise DownloadCancelled(f"{request.url}: the download handler is closed")
        timeout = float(request.meta.get("download_timeout") or self._settings.timeout)
        pool = self._shared.pool_for(request)
        scope = anyio.CancelScope(deadline=anyio.current_time() + (timeout or 1e9))
        self._scopes.add(scope)
        try:
            with scope:
                return await self._exchange(pool, request, timeout)
        finally:
            self._scopes.discard(scope)
        # Only reached when the scope stopped the download.
        if self._closing:
            raise DownloadCancelled(f"{request.url}: the download handler closed")
        raise DownloadTimeout(
            f"Getting {request.url} took longer than {timeout} seconds."
        )

    async def close(self) -> None:
        """Stop this handler's downloads still running; the last handler of
        the crawler to close closes the pools."""
        if self._closing:
            return
        self._closing = True
        for scope in list(self._scopes):
            scope.cancel()
        await self._shared.release()

    # -- one download -----------------------------------------------------------

    async def _exchange(
        self, pool: AsyncConnectionPool, request: Request, timeout: float
    ) -> Response:
        body = request.body
        content = body if body or request.method in _BODY_METHODS else None
        per_step = timeout or None
        core_request = build_request(
            request.method,
            request.url,
            _request_headers(request),
            content,
            {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), per_step)},
        )
        start = time.monotonic()
        try:
            response = await pool.handle_async_request(core_request)
        except Exception as exc:
            translated = request_error(exc, request.url, timeout)
            if translated is None:
                raise
            raise translated from exc
        request.meta["download_latency"] = time.monotonic() - start
        try:
            return await self._read(response, request, timeout)
        finally:
            # A body not read to its end closes the connection (pool rule).
            with anyio.CancelScope(shield=True):
                await response.aclose()

    async def _read(
        self, response: httpcore.Response, request: Request, timeout: float
    ) -> Response:
        meta = request.meta
        maxsize: int = meta.get("download_maxsize", self._settings.maxsize)
        warnsize: int = meta.get("download_warnsize", self._settings.warnsize)
        headers = Headers(response.headers)
        length = headers.get(b"Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if maxsize and expected is not None and expected > maxsize:
            cancel_maxsize(expected, maxsize, request, expected=True)
        warned = bool(warnsize and expected is not None and expected > warnsize)
        if warned:
            warn_size(expected or 0, warnsize, request, expected=True)
        fields = response_fields(response, request, headers)
        stop = self._signal(
            signals.headers_received, request, headers=headers, body_length=expected
        )
        if stop is not None:
            return make_response(fields, b"", stop=stop)
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in response.aiter_stream():
                chunks.append(chunk)
                received += len(chunk)
                stop = self._signal(signals.bytes_received, request, data=chunk)
                if stop is not None:
                    return make_response(fields, b"".join(chunks), stop=stop)
                if maxsize and received > maxsize:
                    cancel_maxsize(received, maxsize, request, expected=False)
                if warnsize and received > warnsize and not warned:
                    warned = True
                    warn_size(received, warnsize, request, expected=False)
        except Exception as exc:
            translated = body_error(exc, request.url, timeout)
            if translated is None:
                raise
            if isinstance(translated, DataLoss):
                partial = self._dataloss(request, fields, chunks)
                if partial is not None:
                    return partial
            raise translated from exc
        return make_response(fields, b"".join(chunks))

    def _dataloss(
        self, request: Request, fields: dict[str, Any], chunks: list[bytes]
    ) -> Response | None:
        """DOWNLOAD_FAIL_ON_DATALOSS off: the partial body, flagged."""
        fail = request.meta.get(
            "download_fail_on_dataloss", self._settings.fail_on_dataloss
        )
        if not fail:
            return make_response(fields, b"".join(chunks), flags=["dataloss"])
        if not self._dataloss_warned:
            self._dataloss_warned = True
            logger.warning(
                "Got data loss in %s. If you want to process broken responses "
                "set the setting DOWNLOAD_FAIL_ON_DATALOSS = False -- This "
                "message won't be shown in further requests",
                request.url,
            )
        return None

    def _signal(
        self, signal: object, request: Request, **kwargs: Any
    ) -> StopDownload | None:
        """Send ``headers_received`` / ``bytes_received``; a handler may
        raise StopDownload to end the download there."""
        results = self.crawler.signals.send_catch_log(
            signal=signal, request=request, spider=self.crawler.spider, **kwargs
        )
        for _, result in results:
            if isinstance(result, Failure) and isinstance(result.value, StopDownload):
                return result.value
        return None


def _request_headers(request: Request) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, values in request.headers.items():
        # For the proxy only: proxy_option() hands it to the pool's proxy.
        if name.lower() == b"proxy-authorization":
            continue
        out.extend((name, value) for value in values)
    return out
