"""Building an ``httpcore.Request`` for the pools' own ``request()`` API,
and requests and responses without httpcore's per-call type checks."""

from __future__ import annotations

import re
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


class ByteStream(HTTPCORE_BYTE_STREAM):  # type: ignore[misc]
    """httpcore's in-memory body (same name, same behaviour), whose bytes
    hintpool's connections take from ``content`` instead of iterating: an
    async generator per request costs more than sending a GET."""

    def __init__(self, content: bytes) -> None:
        # What the base class's __init__ sets, without calling it.
        self._content = self.content = content


#: The body of every request without one: nothing in it changes.
_NO_CONTENT = ByteStream(b"")


def _host_header(url: httpcore.URL) -> bytes:
    host = url.host
    if b":" in host:  # IPv6 literal
        host = b"[" + host + b"]"
    if url.port is not None and url.port != _DEFAULT_PORTS.get(url.scheme):
        host += b":" + str(url.port).encode("ascii")
    return host


# A URL made only of these parts and characters parses the same by hand as
# by urllib (what httpcore.URL uses): no user info, IPv6 literal, fragment,
# ";" parameters (urllib drops the last segment's), percent-encoded host,
# whitespace or control character. Anything else goes to httpcore.URL.
_SIMPLE_URL = re.compile(
    rb"(https?)://([A-Za-z0-9.\-]+)(?::([0-9]{1,5}))?([/?][A-Za-z0-9\-._~!$&'()*+,=:@/?%]*)?"
).fullmatch


def _simple_url(url: str) -> tuple[httpcore.URL, bytes] | None:
    """``httpcore.URL(url)`` and the ``Host`` header value, for the common
    URL, at a fraction of the cost: a crawler's URLs are rarely cached."""
    try:
        match = _SIMPLE_URL(url.encode("ascii"))
    except UnicodeEncodeError:
        return None  # httpcore.URL says what is wrong with it
    if match is None:
        return None
    scheme, host, port, rest = match.groups()
    host = host.lower()
    if port is None:
        port_number = None
        host_header = host
    else:
        port_number = int(port)
        if port_number > 65535:
            return None
        if port_number == _DEFAULT_PORTS[scheme]:
            host_header = host
        else:
            host_header = b"%s:%d" % (host, port_number)
    path, _, query = (rest or b"").partition(b"?")
    parsed: httpcore.URL = httpcore.URL.__new__(httpcore.URL)
    parsed.scheme = scheme
    parsed.host = host
    parsed.port = port_number
    parsed.target = (path or b"/") + (b"?" + query if query else b"")
    return parsed, host_header


def _has_user_info(url: bytes | str) -> bool:
    text = url if isinstance(url, str) else url.decode("latin-1")
    authority = re.split("[/?#]", text.partition("//")[2], maxsplit=1)[0]
    return "@" in authority


def _parse_url(url: httpcore.URL | bytes | str) -> tuple[httpcore.URL, bytes]:
    """The URL and its ``Host`` header value, remembered for strings:
    clients send to the same few URLs, and parsing one costs more than the
    rest of building the request. Not one with user info: the cache is
    shared by every pool (see ``_shared_caches``), and a password must not
    outlive the client given it."""
    if isinstance(url, httpcore.URL):
        return url, _host_header(url)
    parsed = _URL_CACHE.get(url)
    if parsed is None:
        parsed = _simple_url(url) if isinstance(url, str) else None
        if parsed is None:
            parsed_url = httpcore.URL(url)
            parsed = (parsed_url, _host_header(parsed_url))
            if _has_user_info(url):
                return parsed
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
        method if type(method) is bytes else _as_bytes(method),
        parsed_url,
        header_list,
        ByteStream(content) if content else _NO_CONTENT,
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


def checked_response(
    status: int,
    headers: list[tuple[bytes, bytes]],
    stream: Any,
    extensions: dict[str, Any],
    hint_headers: list[tuple[bytes, bytes]],
) -> httpcore.Response:
    """What ``httpcore.Response()`` builds, without its per-call checks (the
    connections hand over a codec's own header list and their own stream).

    ``hint_headers`` (``ResponseHead.hint_headers``) is kept for
    :func:`hint_headers`."""
    response: httpcore.Response = httpcore.Response.__new__(httpcore.Response)
    response.status = status
    response.headers = headers
    response.stream = stream
    response.extensions = extensions
    response._stream_consumed = False
    response._hint_headers = hint_headers  # type: ignore[attr-defined]
    return response


def hint_headers(response: httpcore.Response) -> list[tuple[bytes, bytes]]:
    """The headers that may carry keep-alive hints: the few the codec set
    aside for a response of hintpool's own connections, else all of them."""
    headers: list[tuple[bytes, bytes]] = getattr(
        response, "_hint_headers", response.headers
    )
    return headers
