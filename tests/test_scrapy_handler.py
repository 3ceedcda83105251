"""hintpool.contrib.scrapy's handler driven directly, on asyncio.

Scrapy runs ``download_request`` in an asyncio task under its asyncio
reactor; here the coroutine runs under ``asyncio.run`` (Scrapy sees a running
asyncio loop, as it does under its reactor), against the local test server.
Real crawls (Scrapy's engine, middlewares, stats dump) are in
tests/test_scrapy_crawl.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Iterator
from typing import Any, Callable, TypeVar

import pytest

scrapy = pytest.importorskip("scrapy")

from scrapy import Request, signals  # noqa: E402
from scrapy.exceptions import (  # noqa: E402
    NotConfigured,
    NotSupported,
    StopDownload,
)
from scrapy.settings import Settings  # noqa: E402
from scrapy.utils.misc import load_object  # noqa: E402
from scrapy.utils.test import get_crawler  # noqa: E402
from twisted.internet import defer  # noqa: E402
from twisted.internet import error as tx_error  # noqa: E402
from twisted.internet.ssl import Certificate  # noqa: E402
from twisted.web.client import ResponseFailed, ResponseNeverReceived  # noqa: E402

from hintpool import AsyncConnectionPool  # noqa: E402
from hintpool._local.tls import local_tls  # noqa: E402
from hintpool.contrib.scrapy import HintpoolDownloadHandler  # noqa: E402
from hintpool.contrib.scrapy._options import (  # noqa: E402
    DEFAULT_MAX_IDLE,
    bind_host,
    make_ssl_context,
    pool_options,
)
from tests.server import ServerConfig, TestServer  # noqa: E402

T = TypeVar("T")

RACE_CONFIG = ServerConfig(
    keep_alive="timeout=2, max={left}", idle_timeout=2.0, max_requests=5
)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@pytest.fixture
def server() -> Iterator[TestServer]:
    srv = TestServer(config=RACE_CONFIG)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _retryable(exc: BaseException) -> bool:
    """Would Scrapy's RetryMiddleware (default RETRY_EXCEPTIONS) retry it?"""
    classes = [
        load_object(c) if isinstance(c, str) else c
        for c in Settings().getlist("RETRY_EXCEPTIONS")
    ]
    return isinstance(exc, tuple(classes))


async def _fetch(
    settings: dict[str, Any] | None,
    *requests: Request,
) -> tuple[list[Any], HintpoolDownloadHandler]:
    """Download each request in turn; responses or the exceptions raised."""
    crawler = get_crawler(settings_dict=settings or {})
    handler = HintpoolDownloadHandler.from_crawler(crawler)
    out: list[Any] = []
    try:
        for request in requests:
            try:
                out.append(await handler.download_request(request))
            except Exception as exc:
                out.append(exc)
    finally:
        await handler.close()
    return out, handler


def test_responses_carry_scrapys_fields_and_reuse(server: TestServer) -> None:
    urls = [f"{server.url}/bytes/10?i={i}" for i in range(3)]
    results, handler = run(lambda: _fetch(None, *map(Request, urls)))
    for response in results:
        assert isinstance(response, scrapy.http.Response)
        assert response.status == 200
        assert response.body == b"x" * 10
        assert str(response.ip_address) == "127.0.0.1"
        assert response.protocol == "HTTP/1.1"
        assert response.certificate is None
        assert response.flags == []
        assert response.headers[b"Keep-Alive"].startswith(b"timeout=2")
    assert server.connections_opened == 1
    (pool,) = handler.pools
    stats = pool.statistics()
    assert (stats.reused, stats.open) == (2, 0)


def test_post_body_is_sent_with_its_length(server: TestServer) -> None:
    request = Request(f"{server.url}/echo", method="POST", body=b"a=1&b=2")
    empty = Request(f"{server.url}/echo", method="POST")
    (response, response_empty), _ = run(lambda: _fetch(None, request, empty))
    assert response.body == b"a=1&b=2"
    assert response.headers[b"X-Method"] == b"POST"
    assert response_empty.status == 200 and response_empty.body == b""


def test_https_without_verification_by_default_and_certificate() -> None:
    tls = local_tls(["127.0.0.1"])
    srv = TestServer(config=RACE_CONFIG, tls=tls.server_context)
    srv.start()
    try:
        url = f"{srv.url}/bytes/5"
        (response,), _ = run(lambda: _fetch(None, Request(url)))
        (refused,), _ = run(
            lambda: _fetch({"DOWNLOAD_VERIFY_CERTIFICATES": True}, Request(url))
        )
    finally:
        srv.stop()
    assert response.status == 200
    # Twisted's Certificate, as Scrapy's own handler gives it.
    assert isinstance(response.certificate, Certificate)
    assert response.certificate.dumpPEM().startswith(b"-----BEGIN CERTIFICATE")
    assert isinstance(refused, tx_error.ConnectError)
    assert isinstance(refused, scrapy.exceptions.DownloadFailedError)
    assert isinstance(refused.__cause__, ssl.SSLError) or "certificate" in str(refused)


@pytest.mark.parametrize(
    ("path", "expected_size"),
    [("/bytes/8000000", True), ("/chunked/8000000", False)],
)
def test_maxsize_cancels_and_closes_the_connection(
    server: TestServer, path: str, expected_size: bool, caplog: Any
) -> None:
    requests = [
        Request(server.url + path),
        # the meta key overrides the setting for one request
        Request(f"{server.url}/bytes/5000", meta={"download_maxsize": 10_000}),
    ]
    with caplog.at_level(logging.WARNING, logger="hintpool.contrib.scrapy"):
        (cancelled, ok), handler = run(
            lambda: _fetch({"DOWNLOAD_MAXSIZE": 1000}, *requests)
        )
    assert isinstance(cancelled, scrapy.exceptions.DownloadCancelledError)
    assert isinstance(cancelled, defer.CancelledError)
    assert not _retryable(cancelled)
    prefix = "Expected to receive" if expected_size else "Received"
    assert str(cancelled).startswith(prefix)
    assert "larger than download max size (1000)" in caplog.text
    assert ok.status == 200 and len(ok.body) == 5000
    # The aborted body's connection was closed, not reused (8 MB cannot all
    # have arrived: had it, hintpool would keep the clean connection).
    assert server.connections_opened == 2
    assert handler.pools[0].statistics().open == 0


def test_warnsize_warns_once_and_downloads(server: TestServer, caplog: Any) -> None:
    request = Request(f"{server.url}/chunked/3000")
    with caplog.at_level(logging.WARNING, logger="hintpool.contrib.scrapy"):
        (response,), _ = run(lambda: _fetch({"DOWNLOAD_WARNSIZE": 1000}, request))
    assert len(response.body) == 3000
    assert caplog.text.count("larger than download warn size (1000)") == 1


def test_body_stalling_past_download_timeout(server: TestServer) -> None:
    stalled = Request(f"{server.url}/fault/stall-body", meta={"download_timeout": 0.2})
    (exc,), handler = run(lambda: _fetch(None, stalled))
    assert isinstance(exc, scrapy.exceptions.DownloadTimeoutError)
    assert isinstance(exc, tx_error.TimeoutError)
    assert _retryable(exc)
    assert "took longer than 0.2 seconds" in str(exc)
    assert handler.pools[0].statistics().open == 0


def test_connection_refused_is_retryable(refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    (exc,), _ = run(lambda: _fetch(None, Request(url)))
    assert isinstance(exc, scrapy.exceptions.DownloadConnectionRefusedError)
    assert isinstance(exc, tx_error.ConnectionRefusedError)
    assert _retryable(exc)


def test_server_closing_without_response(server: TestServer) -> None:
    post = Request(f"{server.url}/fault/close-no-response", method="POST", body=b"x")
    (exc,), _ = run(lambda: _fetch(None, post))
    assert isinstance(exc, scrapy.exceptions.DownloadFailedError)
    assert isinstance(exc, ResponseNeverReceived)
    assert _retryable(exc)  # Scrapy's rules decide, for POSTs as well
    assert exc.reasons and exc.reasons[0].value is exc.__cause__


def test_dataloss_fails_or_flags(server: TestServer) -> None:
    url = f"{server.url}/fault/truncated-chunked"
    lenient = Request(url + "?lenient", meta={"download_fail_on_dataloss": False})
    (exc, partial), _ = run(lambda: _fetch(None, Request(url), lenient))
    assert isinstance(exc, scrapy.exceptions.ResponseDataLossError)
    assert isinstance(exc, ResponseFailed)
    assert partial.flags == ["dataloss"]
    assert partial.body == b"hello"


def test_close_cancels_downloads_in_flight(server: TestServer) -> None:
    async def scenario() -> tuple[BaseException | None, int]:
        crawler = get_crawler()
        handler = HintpoolDownloadHandler.from_crawler(crawler)
        task = asyncio.ensure_future(
            handler.download_request(Request(f"{server.url}/fault/stall-body"))
        )
        while server.connections_opened == 0 or not handler.pools:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the 10 body bytes are read
        await handler.close()
        exc = await asyncio.gather(task, return_exceptions=True)
        return exc[0], handler.pools[0].statistics().open

    exc, still_open = run(scenario)
    assert isinstance(exc, scrapy.exceptions.DownloadCancelledError)
    assert still_open == 0


_POOL_HAS_PROXY = "proxy" in AsyncConnectionPool.__init__.__code__.co_varnames


@pytest.mark.skipif(_POOL_HAS_PROXY, reason="this pool supports proxy=")
def test_proxy_meta_without_proxy_support(server: TestServer) -> None:
    request = Request(server.url, meta={"proxy": "http://127.0.0.1:1"})
    (exc,), _ = run(lambda: _fetch(None, request))
    assert isinstance(exc, NotSupported)
    assert "proxy=" in str(exc)


@pytest.mark.skipif(not _POOL_HAS_PROXY, reason="this pool has no proxy=")
def test_proxy_meta_goes_through_a_pool_per_proxy(server: TestServer) -> None:
    # A second local server stands in for the proxy: it gets the request in
    # absolute form (and answers 404 to a target it does not know).
    proxy = TestServer(config=RACE_CONFIG)
    proxy.start()
    try:
        proxied = Request(
            f"{server.url}/?via-proxy",
            meta={"proxy": proxy.url.removeprefix("http://")},
            headers={"Proxy-Authorization": "Basic dXNlcjpwYXNz"},
        )
        direct = Request(f"{server.url}/?direct")
        (via, straight), handler = run(lambda: _fetch(None, proxied, direct))
        assert via.status == 404 and proxy.requests_served == 1
        assert straight.status == 200 and server.requests_served == 1
        assert len(handler.pools) == 2
    finally:
        proxy.stop()


def test_http_and_https_handlers_share_one_pool_and_write_stats(
    server: TestServer,
) -> None:
    async def scenario() -> tuple[Any, Any]:
        crawler = get_crawler()
        crawler.stats.open_spider()
        first = HintpoolDownloadHandler.from_crawler(crawler)
        second = HintpoolDownloadHandler.from_crawler(crawler)
        await first.download_request(Request(f"{server.url}/?a"))
        await second.download_request(Request(f"{server.url}/?b"))
        assert first.pools == second.pools
        await first.close()
        assert first.pools[0].statistics().idle == 1  # the other still uses it
        await second.close()
        return crawler.stats.get_stats(), first.pools[0].statistics()

    stats, pool_stats = run(scenario)
    assert pool_stats.open == 0
    assert stats["hintpool/connections_opened"] == 1
    assert stats["hintpool/reused"] == 1
    assert stats["hintpool/requests"] == 2
    for key in ("retired_by_max", "expired", "tls_resumed", "learned_timeouts"):
        assert stats[f"hintpool/{key}"] == 0


def test_bindaddress_meta_gets_its_own_pool(server: TestServer) -> None:
    requests = [
        Request(f"{server.url}/?a"),
        Request(f"{server.url}/?b", meta={"bindaddress": ("127.0.0.1", 0)}),
    ]
    (first, second), handler = run(lambda: _fetch(None, *requests))
    assert first.status == second.status == 200
    assert len(handler.pools) == 2


def test_settings_map_onto_pool_options() -> None:
    options = pool_options(Settings({"CONCURRENT_REQUESTS": 7}))
    assert options["max_connections"] == 7 + DEFAULT_MAX_IDLE
    assert options["max_keepalive_connections"] == DEFAULT_MAX_IDLE
    assert pool_options(Settings({"CONCURRENT_REQUESTS": 0}))["max_connections"] is None
    few_idle = pool_options(
        Settings(
            {
                "CONCURRENT_REQUESTS": 7,
                "HINTPOOL_POOL_OPTIONS": {"max_keepalive_connections": 3},
            }
        )
    )
    assert (few_idle["max_connections"], few_idle["max_keepalive_connections"]) == (
        10,
        3,
    )
    accepts_cap = (
        "max_connections_per_origin"
        in AsyncConnectionPool.__init__.__code__.co_varnames
    )
    with pytest.warns(scrapy.exceptions.ScrapyDeprecationWarning, match="PER_IP"):
        # Scrapy 2.19 deprecates it, and warns when the downloader reads it.
        Settings({"CONCURRENT_REQUESTS_PER_IP": 3}).getint("CONCURRENT_REQUESTS_PER_IP")
    per_ip = pool_options(Settings({"CONCURRENT_REQUESTS_PER_IP": 3}))
    assert ("max_connections_per_origin" in per_ip) == accepts_cap
    extra = pool_options(Settings({"HINTPOOL_POOL_OPTIONS": {"keepalive_margin": 0.5}}))
    assert extra["keepalive_margin"] == 0.5
    with pytest.raises(NotConfigured, match="not options"):
        pool_options(Settings({"HINTPOOL_POOL_OPTIONS": {"nonsense": 1}}))
    with pytest.raises(NotConfigured, match="not options"):
        pool_options(Settings({"HINTPOOL_POOL_OPTIONS": {"ssl_context": None}}))


def test_tls_settings() -> None:
    default = make_ssl_context(Settings())
    assert default.verify_mode == ssl.CERT_NONE and not default.check_hostname
    pinned = make_ssl_context(Settings({"DOWNLOADER_CLIENT_TLS_METHOD": "TLSv1.2"}))
    assert pinned.minimum_version == pinned.maximum_version == ssl.TLSVersion.TLSv1_2
    verified = make_ssl_context(Settings({"DOWNLOAD_VERIFY_CERTIFICATES": True}))
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    with pytest.raises(NotConfigured, match="TLS_METHOD"):
        make_ssl_context(Settings({"DOWNLOADER_CLIENT_TLS_METHOD": "SSLv3"}))
    with pytest.raises(NotConfigured, match="MIN_VERSION"):
        make_ssl_context(Settings({"DOWNLOAD_TLS_MIN_VERSION": "TLSv9"}))


def test_bind_host(caplog: Any) -> None:
    assert bind_host(None) is None
    assert bind_host("127.0.0.2") == "127.0.0.2"
    with caplog.at_level(logging.WARNING, logger="hintpool.contrib.scrapy"):
        assert bind_host(("127.0.0.2", 4000)) == "127.0.0.2"
    assert "binds the host only" in caplog.text


def test_stop_download_from_headers_received(server: TestServer) -> None:
    """A headers_received handler raising StopDownload ends the download
    there, as with Scrapy's handler; the unread body's connection closes."""

    async def scenario() -> tuple[Any, Any]:
        crawler = get_crawler()

        def stop(**kwargs: Any) -> None:
            raise StopDownload(fail=False)

        crawler.signals.connect(stop, signal=signals.headers_received, weak=False)
        handler = HintpoolDownloadHandler.from_crawler(crawler)
        try:
            big = f"{server.url}/bytes/8000000"
            response = await handler.download_request(Request(big))
        finally:
            await handler.close()
        return response, handler.pools[0].statistics()

    response, stats = run(scenario)
    assert response.flags == ["download_stopped"]
    assert response.body == b""
    assert stats.open == 0 and stats.reused == 0


def test_connect_failures_map_by_cause() -> None:
    from hintpool import ConnectError
    from hintpool.contrib.scrapy._errors import request_error

    def caused(cause: BaseException) -> BaseException:
        try:
            raise ConnectError("connect failed") from cause
        except ConnectError as exc:
            return exc

    dns = request_error(caused(socket.gaierror(-2, "no name")), "http://x/", 1.0)
    assert isinstance(dns, scrapy.exceptions.CannotResolveHostError)
    assert isinstance(dns, tx_error.DNSLookupError)
    reset = request_error(caused(ConnectionResetError()), "http://x/", 1.0)
    assert isinstance(reset, scrapy.exceptions.DownloadFailedError)
    assert isinstance(reset, tx_error.ConnectError)
    assert all(_retryable(e) for e in (dns, reset))
    assert request_error(ValueError("a bug"), "http://x/", 1.0) is None
