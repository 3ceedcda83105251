"""Scrapy settings and request meta, mapped onto hintpool's pool options.

What maps to what (docs/scrapy.md has the table):

* ``CONCURRENT_REQUESTS`` -> ``max_connections``: that many connections
  in use (Scrapy's requests in flight) plus ``max_keepalive_connections``
  idle ones (256 by default; 0 requests: no limit).
* ``CONCURRENT_REQUESTS_PER_IP`` (when set) or ``_PER_DOMAIN`` ->
  ``max_connections_per_origin``, when the installed pool has that option.
  Scrapy's downloader already holds each slot to that many requests; the
  pool's cap is a second fence per (scheme, host, port).
* ``DOWNLOAD_BIND_ADDRESS`` / meta ``bindaddress`` -> ``local_address``
  (host only: a pool opens many connections, one port cannot serve them).
* TLS: ``DOWNLOAD_VERIFY_CERTIFICATES`` (off by default, as in Scrapy),
  ``DOWNLOADER_CLIENT_TLS_METHOD``, ``DOWNLOAD_TLS_MIN_VERSION`` /
  ``_MAX_VERSION``, ``DOWNLOADER_CLIENT_TLS_CIPHERS``.
* meta ``proxy`` (with the ``Proxy-Authorization`` header Scrapy sets)
  -> ``proxy=``, one pool per proxy, when the installed pool has that
  option; else the request fails with ``NotSupported``.
* ``HINTPOOL_POOL_OPTIONS``: a dict of further pool keyword arguments
  (``keepalive_margin``, ``keepalive_expiry``, ``tls_session_cache``, ...),
  applied last.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Optional

from scrapy.exceptions import NotConfigured, NotSupported
from scrapy.settings import BaseSettings

from ..._async.connection_pool import AsyncConnectionPool

__all__ = [
    "DEFAULT_MAX_IDLE",
    "HandlerSettings",
    "bind_host",
    "make_ssl_context",
    "pool_options",
    "proxy_option",
]

#: (proxy URL, its Proxy-Authorization header or None): one pool each.
ProxyKey = tuple[str, Optional[str]]

#: Idle connections kept at most, all origins together, unless
#: ``HINTPOOL_POOL_OPTIONS`` says otherwise. Servers' deadlines close idle
#: connections anyway; Twisted's pool (Scrapy's default) keeps up to
#: CONCURRENT_REQUESTS_PER_DOMAIN idle per host, with no total.
DEFAULT_MAX_IDLE = 256

logger = logging.getLogger("hintpool.contrib.scrapy")

_TLS_VERSIONS = {
    "TLSv1.0": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# DOWNLOADER_CLIENT_TLS_METHOD pins one version; "TLS" negotiates.
_TLS_METHODS = {"TLS": None, "TLSv1.0": "TLSv1.0", "TLSv1.1": "TLSv1.1"}
_TLS_METHODS["TLSv1.2"] = "TLSv1.2"


@dataclass(frozen=True)
class HandlerSettings:
    """The per-request defaults the handler reads from the settings once."""

    timeout: float
    maxsize: int
    warnsize: int
    fail_on_dataloss: bool

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> HandlerSettings:
        return cls(
            timeout=settings.getfloat("DOWNLOAD_TIMEOUT"),
            maxsize=settings.getint("DOWNLOAD_MAXSIZE"),
            warnsize=settings.getint("DOWNLOAD_WARNSIZE"),
            fail_on_dataloss=settings.getbool("DOWNLOAD_FAIL_ON_DATALOSS"),
        )


def _accepts(keyword: str) -> bool:
    return keyword in inspect.signature(AsyncConnectionPool).parameters


def pool_options(settings: BaseSettings) -> dict[str, Any]:
    """Keyword arguments for every pool of the handler (not TLS, not bind)."""
    extra = settings.getdict("HINTPOOL_POOL_OPTIONS")
    unknown = [name for name in extra if not _accepts(name)]
    if unknown or "ssl_context" in extra or "local_address" in extra:
        raise NotConfigured(
            f"HINTPOOL_POOL_OPTIONS: not options of hintpool.AsyncConnectionPool "
            f"here: {sorted(unknown) or ['ssl_context/local_address']} (TLS and "
            f"the bind address come from Scrapy's own settings)"
        )
    idle = extra.get("max_keepalive_connections", DEFAULT_MAX_IDLE)
    in_flight = settings.getint("CONCURRENT_REQUESTS")
    # Scrapy's downloader keeps at most CONCURRENT_REQUESTS requests in
    # flight, one per connection in use; the pool's limit counts idle
    # connections too, so it gets room for those on top. Capped at
    # CONCURRENT_REQUESTS alone, a crawl of 20 origins closed an idle
    # connection for every other one it opened (docs/scrapy.md).
    total = None if not in_flight or idle is None else in_flight + idle
    options: dict[str, Any] = {
        "max_connections": total,
        "max_keepalive_connections": idle,
    }
    # Item access: Settings.get() warns about the deprecated _PER_IP, and
    # Scrapy's downloader warns already when a project sets it.
    per_ip = int(settings["CONCURRENT_REQUESTS_PER_IP"] or 0)
    per_origin = per_ip or settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")
    if per_origin and _accepts("max_connections_per_origin"):
        options["max_connections_per_origin"] = per_origin
    options.update(extra)
    return options


def make_ssl_context(settings: BaseSettings) -> ssl.SSLContext:
    """One context for the handler's pools: TLS sessions resume only within
    one context (hintpool keys its session cache on it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.getbool("DOWNLOAD_VERIFY_CERTIFICATES", False):
        ctx.load_default_certs()
    else:
        # Scrapy's default: crawl sites whatever their certificates.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    method = settings.get("DOWNLOADER_CLIENT_TLS_METHOD") or "TLS"
    if method not in _TLS_METHODS:
        raise NotConfigured(f"Unknown DOWNLOADER_CLIENT_TLS_METHOD: {method!r}")
    pinned = _TLS_METHODS[method]
    low = settings.get("DOWNLOAD_TLS_MIN_VERSION") or pinned
    high = settings.get("DOWNLOAD_TLS_MAX_VERSION") or pinned
    for name, value in (("MIN", low), ("MAX", high)):
        if value is not None and value not in _TLS_VERSIONS:
            raise NotConfigured(f"Unknown DOWNLOAD_TLS_{name}_VERSION: {value!r}")
    if low in ("TLSv1.0", "TLSv1.1") or high in ("TLSv1.0", "TLSv1.1"):
        # OpenSSL's default security level refuses them outright.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if low is not None:
        ctx.minimum_version = _TLS_VERSIONS[low]
    if high is not None:
        ctx.maximum_version = _TLS_VERSIONS[high]
    ciphers = settings.get("DOWNLOADER_CLIENT_TLS_CIPHERS")
    if ciphers and ciphers != "DEFAULT":
        ctx.set_ciphers(ciphers)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def bind_host(value: Any) -> str | None:
    """``DOWNLOAD_BIND_ADDRESS`` / meta ``bindaddress``: ``"host"`` or
    ``(host, port)``; the port is ignored (with a warning)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    host, port = value
    if port:
        logger.warning(
            "bind address %r: hintpool binds the host only (a pool opens many "
            "connections; one local port cannot serve them)",
            value,
        )
    return str(host)


def proxy_option(proxy: Any, headers: Any) -> ProxyKey | None:
    """meta ``proxy`` (and the ``Proxy-Authorization`` header Scrapy's
    HttpProxyMiddleware sets from the URL's credentials) as a pool key.

    Raises NotSupported when the installed pool has no ``proxy=`` option.
    """
    if not proxy:
        return None
    if not _accepts("proxy"):
        raise NotSupported(
            "this hintpool's pool has no proxy= option: meta['proxy'] "
            f"({proxy!r}) needs a hintpool with proxy support"
        )
    url = str(proxy)
    if "://" not in url:
        url = "http://" + url  # as Scrapy reads a bare host:port
    auth = headers.get(b"Proxy-Authorization")
    return (url, auth.decode("latin-1") if auth else None)
