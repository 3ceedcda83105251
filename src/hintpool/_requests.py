"""Building an ``httpcore.Request`` for the pools' own ``request()`` API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Union

import httpcore

HeaderTypes = Union[
    Sequence[tuple[bytes, bytes]], Mapping[bytes, bytes], Mapping[str, str], None
]


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else value


_URL_CACHE: dict[bytes | str, tuple[httpcore.URL, bytes]] = {}
_URL_CACHE_SIZE = 512
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
# httpcore's in-memory body class (not exported): bytes bodies are wrapped
# in it, as httpcore.Request does.
HTTPCORE_BYTE_STREAM: Any = type(httpcore.Request("GET", "http://x/").stream)


def _host_header(url: httpcore.URL) -> bytes:
    host = url.host
    if b":" in host:  # IPv6 literal
        host = b"[" + host + b"]"
    if url.port is not None and url.port != _DEFAULT_PORTS.get(url.scheme):
        host += b":" + str(url.port).encode("ascii")
    return host


def _parse_url(url: httpcore.URL | bytes | str) -> tuple[httpcore.URL, bytes]:
    """The URL and its ``Host`` header value, remembered for strings:
    clients send to the same few URLs, and parsing one costs more than the
    rest of building the request."""
    if isinstance(url, httpcore.URL):
        return url, _host_header(url)
    parsed = _URL_CACHE.get(url)
    if parsed is None:
        parsed_url = httpcore.URL(url)
        parsed = (parsed_url, _host_header(parsed_url))
        if len(_URL_CACHE) >= _URL_CACHE_SIZE:
            _URL_CACHE.clear()
        _URL_CACHE[url] = parsed
    return parsed


def build_request(
    method: bytes | str,
    url: httpcore.URL | bytes | str,
    headers: HeaderTypes,
    content: bytes | Iterator[bytes] | AsyncIterator[bytes] | None,
    extensions: dict[str, Any] | None,
) -> httpcore.Request:
    """A request with ``Host`` and body framing headers filled in, like
    httpcore's ``request()`` does."""
    if headers:
        items = headers.items() if isinstance(headers, Mapping) else headers
        header_list = [(_as_bytes(k), _as_bytes(v)) for k, v in items]
        names = {name.lower() for name, _ in header_list}
    else:
        header_list = []
        names = set()
    parsed_url, host = _parse_url(url)
    if b"host" not in names:
        header_list.insert(0, (b"Host", host))
    if content is not None and not names & {b"content-length", b"transfer-encoding"}:
        if isinstance(content, bytes):
            header_list.append((b"Content-Length", str(len(content)).encode("ascii")))
        else:
            header_list.append((b"Transfer-Encoding", b"chunked"))
    if (extensions and "target" in extensions) or not (
        content is None or isinstance(content, bytes)
    ):
        return httpcore.Request(
            method,
            parsed_url,
            headers=header_list,
            content=content,
            extensions=extensions,
        )
    return checked_request(
        _as_bytes(method),
        parsed_url,
        header_list,
        HTTPCORE_BYTE_STREAM(content or b""),
        {} if extensions is None else extensions,
    )


def checked_request(
    method: bytes,
    url: httpcore.URL,
    headers: list[tuple[bytes, bytes]],
    stream: Any,
    extensions: dict[str, Any],
) -> httpcore.Request:
    """What ``httpcore.Request()`` builds from parts whose types the caller
    already checked, without its per-call type checks (they cost several
    microseconds a request). Not for an ``extensions["target"]``."""
    request: httpcore.Request = httpcore.Request.__new__(httpcore.Request)
    request.method = method
    request.url = url
    request.headers = headers
    request.stream = stream
    request.extensions = extensions
    return request
