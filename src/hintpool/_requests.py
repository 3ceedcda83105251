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


_URL_CACHE: dict[bytes | str, httpcore.URL] = {}
_URL_CACHE_SIZE = 512


def _parse_url(url: bytes | str) -> httpcore.URL:
    """httpcore.URL(url), remembered: clients send to the same few URLs, and
    parsing one costs more than the rest of building the request."""
    parsed = _URL_CACHE.get(url)
    if parsed is None:
        parsed = httpcore.URL(url)
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
    items = headers.items() if isinstance(headers, Mapping) else headers or []
    header_list = [(_as_bytes(k), _as_bytes(v)) for k, v in items]
    if not isinstance(url, httpcore.URL):
        url = _parse_url(url)
    names = {name.lower() for name, _ in header_list}
    if b"host" not in names:
        default_port = {b"http": 80, b"https": 443}.get(url.scheme)
        host = url.host
        if b":" in host:  # IPv6 literal
            host = b"[" + host + b"]"
        if url.port is not None and url.port != default_port:
            host += b":" + str(url.port).encode("ascii")
        header_list.insert(0, (b"Host", host))
    if content is not None and not names & {b"content-length", b"transfer-encoding"}:
        if isinstance(content, bytes):
            header_list.append((b"Content-Length", str(len(content)).encode("ascii")))
        else:
            header_list.append((b"Transfer-Encoding", b"chunked"))
    return httpcore.Request(
        method, url, headers=header_list, content=content, extensions=extensions
    )
