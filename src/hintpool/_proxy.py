"""Proxies: the ``proxy=`` option, and the CONNECT and SOCKS5 handshakes.

Theory of operation
-------------------
A pool has at most one proxy, as httpx's transports do (httpx routes by URL
with ``mounts``, one transport per proxy). :func:`parse_proxy` turns the
``proxy=`` value into a :class:`ProxyConfig` when the pool is built, so a
bad URL fails there. Requests then take one of three routes:

* ``http://`` target, HTTP(S) proxy: *forward*. The request goes to the
  proxy with an absolute-form target (RFC 9112 section 3.2.2) and the proxy
  headers; the connection is the proxy's, pooled under the proxy's key and
  shared by every target origin.
* ``https://`` target, HTTP(S) proxy: *tunnel*. ``CONNECT host:port`` opens
  a tunnel; TLS to the origin runs inside it. Pooled under the origin's key.
* any target, SOCKS5 proxy: *tunnel* too, opened by the SOCKS5 handshake.

This module is sans-I/O: it builds the bytes to send and judges the bytes
received. ``hintpool._async.tunnel`` drives it over a stream. Credentials
stay in :class:`ProxyConfig`'s private fields: its ``repr()``, its
``label`` and every message here leave them out.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any, Final, final

import httpcore
import httpx

from ._exceptions import ProxyError

__all__ = [
    "PROXY_SCHEMES",
    "ConnectResponse",
    "ProxyConfig",
    "connect_request",
    "forward_request",
    "parse_connect_response",
    "parse_proxy",
]

PROXY_SCHEMES: Final = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
#: A CONNECT answer's head larger than this is not a proxy talking.
MAX_CONNECT_HEAD: Final = 65_536
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?\r?\n")


@final
class ProxyConfig:
    """One proxy, as the pool uses it; see :func:`parse_proxy`."""

    __slots__ = (
        "_auth",
        "headers",
        "host",
        "key",
        "label",
        "origin",
        "port",
        "remote_dns",
        "scheme",
        "ssl_context",
        "url",
    )

    def __init__(
        self,
        scheme: str,
        host: bytes,
        port: int,
        *,
        auth: tuple[bytes, bytes] | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        ssl_context: Any = None,
        url: httpcore.URL | None = None,
    ) -> None:
        self.scheme = scheme
        #: As httpx hands it to httpcore (no default port, target "/").
        self.url = url or httpcore.URL(scheme=scheme, host=host, port=port, target="/")
        self.host = host
        self.port = port
        self._auth = auth
        self.ssl_context = ssl_context
        self.remote_dns = scheme == "socks5h"
        # The first hop: TCP to the proxy, TLS too for an https:// proxy.
        hop = b"https" if scheme == "https" else b"http"
        self.origin = httpcore.Origin(hop, host, port)
        #: The pool key of forwarded requests (the proxy's connections).
        self.key = (hop, host, port)
        host_text = host.decode("ascii")
        if ":" in host_text:
            host_text = f"[{host_text}]"
        #: The proxy's URL without credentials, for statistics and messages.
        self.label = f"{scheme}://{host_text}:{port}"
        extra = list(headers)
        if auth is not None and not self.is_socks:
            token = base64.b64encode(b":".join(auth))
            extra.insert(0, (b"Proxy-Authorization", b"Basic " + token))
        #: Sent with every forwarded request and every CONNECT.
        self.headers: list[tuple[bytes, bytes]] = extra

    @property
    def is_socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def auth(self) -> tuple[bytes, bytes] | None:
        """(username, password) for SOCKS5 username/password authentication."""
        return self._auth

    def forwards(self, scheme: bytes) -> bool:
        """Whether a request to a ``scheme`` origin is forwarded (not tunnelled)."""
        return scheme == b"http" and not self.is_socks

    def __repr__(self) -> str:
        return f"<ProxyConfig {self.label}>"


def _redact(message: str, text: str) -> str:
    userinfo = text.partition("://")[2].partition("/")[0].rpartition("@")[0]
    if userinfo:
        message = message.replace(userinfo, "[secure]")
    return message


def parse_proxy(value: Any, name: str = "proxy") -> ProxyConfig | None:
    """The pool's proxy from a URL string, an ``httpx.URL`` or ``httpx.Proxy``.

    Raises TypeError for another type, ValueError for an unknown scheme, a
    bad port or no host; ImportError for SOCKS without ``socksio``. The
    messages never hold the credentials.
    """
    if value is None:
        return None
    if isinstance(value, httpx.Proxy):
        proxy = value
    elif isinstance(value, (str, httpx.URL)):
        text = str(value)
        scheme = text.partition("://")[0].lower() if "://" in text else ""
        if scheme not in PROXY_SCHEMES:
            shown = scheme or _redact(text, text)
            raise ValueError(
                f"{name} must be a URL with scheme http, https, socks5 or "
                f"socks5h, not {shown!r}"
            )
        try:
            proxy = httpx.Proxy(value)
        except (httpx.InvalidURL, ValueError) as exc:
            message = _redact(str(exc), text)
            raise ValueError(f"{name} must be a valid URL: {message}") from None
    else:
        raise TypeError(
            f"{name} must be None, a URL or an httpx.Proxy, not {type(value).__name__}"
        )
    url = proxy.url
    if not url.raw_host:
        raise ValueError(f"{name} must be a URL with a host")
    if url.scheme.startswith("socks"):
        _require_socksio()
    port = _DEFAULT_PORTS[url.scheme] if url.port is None else url.port
    if not 0 < port < 65536:
        raise ValueError(f"{name} must be a URL with a port from 1 to 65535: {port}")
    return ProxyConfig(
        url.scheme,
        url.raw_host,
        port,
        auth=proxy.raw_auth,
        headers=proxy.headers.raw,
        ssl_context=proxy.ssl_context,
        url=httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target="/"
        ),
    )


def _require_socksio() -> None:
    try:
        import socksio  # noqa: F401
    except ImportError:
        raise ImportError(
            "A SOCKS5 proxy needs the 'socksio' package: "
            "install hintpool with `pip install hintpool[socks]`"
        ) from None


# -- forwarding --------------------------------------------------------------


def _merge(
    first: Sequence[tuple[bytes, bytes]], then: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """``first`` (the proxy's) unless ``then`` (the request's) has the name."""
    if not first:
        return list(then)
    names = {name.lower() for name, _ in then}
    return [h for h in first if h[0].lower() not in names] + list(then)


def forward_request(request: httpcore.Request, proxy: ProxyConfig) -> httpcore.Request:
    """The request as sent to the proxy: absolute-form target, proxy headers.

    Its URL's origin is the proxy's, as the connection it goes on is.
    """
    origin = proxy.origin
    url = httpcore.URL(
        scheme=origin.scheme,
        host=origin.host,
        port=origin.port,
        target=bytes(request.url),
    )
    forwarded = httpcore.Request(
        request.method,
        url,
        headers=_merge(proxy.headers, request.headers),
        content=request.stream,
        extensions=request.extensions,
    )
    return forwarded


# -- CONNECT -----------------------------------------------------------------


def authority(origin: httpcore.Origin) -> bytes:
    host = origin.host
    if b":" in host:  # an IPv6 literal (RFC 9112 section 3.2.3)
        host = b"[" + host + b"]"
    return b"%b:%d" % (host, origin.port)


def connect_request(origin: httpcore.Origin, proxy: ProxyConfig) -> bytes:
    """``CONNECT host:port`` with ``Host`` and the proxy headers."""
    target = authority(origin)
    headers = _merge([(b"Host", target)], proxy.headers)
    lines = [b"CONNECT " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@final
class ConnectResponse:
    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason


def connect_head_end(buffer: bytes) -> int:
    """The end of the answer's head in ``buffer``, or -1 if not there yet."""
    end = buffer.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4
    if len(buffer) > MAX_CONNECT_HEAD:
        raise ProxyError("the proxy's answer to CONNECT has no end of headers")
    return -1


def parse_connect_response(head: bytes, target: str, label: str) -> ConnectResponse:
    """Judge the answer to CONNECT; ProxyError unless it is a 2xx.

    HTTP/1.0 answers are accepted (tinyproxy, old squids send
    ``HTTP/1.0 200 Connection established``).
    """
    match = _STATUS_LINE.match(head)
    if match is None:
        first = head.split(b"\n", 1)[0][:60]
        raise ProxyError(
            f"proxy {label} answered CONNECT {target} with something that is "
            f"not HTTP/1.x: {first!r}"
        )
    status = int(match.group(2))
    reason = (match.group(3) or b"").decode("latin-1").strip()
    if not 200 <= status < 300:
        hint = " (proxy authentication required)" if status == 407 else ""
        raise ProxyError(
            f"proxy {label} refused CONNECT {target}: {status} {reason}{hint}"
        )
    return ConnectResponse(status, reason)
