"""Serialising an HTTP/1.1 request head for :class:`hintpool._h1.H1Codec`.

Validation and framing are decided in one pass over the headers; names and
methods already seen valid are remembered, since callers send the same few
on every request, so the common request costs a dict lookup per header and
one ``translate`` over the whole head. Whole heads are remembered too, but
never one that carries credentials (see ``_REQUESTS``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._exceptions import LocalProtocolError

# Request body framing.
LENGTH, CHUNKED, SENT = range(3)
# Kinds of request header names that framing, reuse and caching depend on.
_OTHER, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _SECRET = range(5)

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_KINDS = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"authorization": _SECRET,
    b"proxy-authorization": _SECRET,
    b"cookie": _SECRET,
}
# Valid header names seen so far -> kind: callers send the same few names on
# every request, so validation and classification cost one dict lookup.
_NAMES: dict[bytes, int] = {}
_METHODS: set[bytes] = set()
_CACHE_LIMIT = 1024
# Not allowed in a request head, but for the CR LF ending each line (HTAB is).
_CONTROLS = bytes([*range(9), *range(10, 32), 127])
_COLON_JOIN = b": ".join
# (method, target, *headers) -> what request() returns for them: a client
# sends the same few requests again and again, and a lookup costs a fifth of
# validating and joining. Heads longer than _CACHED_HEAD_MAX are not kept, so
# the cache stays small. Nor is a head with Authorization, Proxy-Authorization
# or Cookie: the cache is shared by every pool and emptied only when the last
# one is closed (see _shared_caches), and credentials must not outlive the client
# that was given them. The hit path pays nothing for that rule (a head found
# was checked when it was stored); such a request is built anew.
_REQUESTS: dict[tuple[object, ...], tuple[bytes, int, int, bool]] = {}
_CACHED_HEAD_MAX = 1024


def _name_kind(name: bytes) -> int:
    kind = _NAMES.get(name)
    if kind is None:
        if not isinstance(name, bytes) or _TOKEN(name) is None:
            raise LocalProtocolError(f"Illegal header name {name!r}")
        kind = _KINDS.get(name.lower(), _OTHER)
        if len(_NAMES) < _CACHE_LIMIT:
            _NAMES[name] = kind
    return kind


def header_tokens(value: bytes) -> list[bytes]:
    return [token.strip(b" \t") for token in value.lower().split(b",")]


def request_framing(
    headers: Sequence[tuple[bytes, bytes]],
) -> tuple[int, int, bool, bool]:
    """(framing, Content-Length, Connection: close, carries credentials) of
    a request; validates names."""
    framing = SENT  # no body: nothing to send, end_request() is optional
    length = 0
    close = secret = False
    names = _NAMES
    for name, value in headers:
        kind = names.get(name)
        if kind is None:
            kind = _name_kind(name)
        if not kind:
            continue
        if kind == _CONNECTION:
            close = close or (
                value != b"keep-alive" and b"close" in header_tokens(value)
            )
        elif kind == _SECRET:
            secret = True
        elif kind == _CONTENT_LENGTH:
            value = value.strip(b" \t")
            if not value.isdigit() or framing == CHUNKED:
                raise LocalProtocolError(
                    f"Illegal or conflicting Content-Length {value!r}"
                )
            if framing == LENGTH and int(value) != length:
                raise LocalProtocolError("Conflicting Content-Length headers")
            framing, length = LENGTH, int(value)
        elif value.strip(b" \t").lower() != b"chunked":
            raise LocalProtocolError("Only Transfer-Encoding: chunked is supported")
        elif framing != SENT:
            raise LocalProtocolError("Conflicting Content-Length/Transfer-Encoding")
        else:
            framing = CHUNKED
    if framing == LENGTH and not length:
        framing = SENT
    return framing, length, close, secret


def request_head(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> bytes:
    """The request line and head; names are validated by request_framing()."""
    if method not in _METHODS:
        if not isinstance(method, bytes) or _TOKEN(method) is None:
            raise LocalProtocolError(f"Illegal request method {method!r}")
        if len(_METHODS) < _CACHE_LIMIT:
            _METHODS.add(method)
    if not target or target.find(b" ") >= 0:
        raise LocalProtocolError(f"Illegal request target {target!r}")
    if headers:
        block = b"\r\n".join(map(_COLON_JOIN, headers))
        head = b"".join((method, b" ", target, b" HTTP/1.1\r\n", block, b"\r\n\r\n"))
    else:
        head = b"".join((method, b" ", target, b" HTTP/1.1\r\n\r\n"))
    # One pass over the whole head: each line ends with CR LF, and no other
    # control character (CR, LF and NUL above all) may appear anywhere.
    if len(head) - len(head.translate(None, _CONTROLS)) != 2 * len(headers) + 4:
        raise LocalProtocolError("Illegal control character in the request head")
    return head


def request(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[bytes, int, int, bool]:
    """(head, framing, Content-Length, Connection: close) of a request;
    raises LocalProtocolError for an invalid one."""
    key: tuple[object, ...] | None = None
    known = None
    # Exact types: a memoryview equals the bytes it holds, but is no method.
    if type(method) is bytes and type(target) is bytes:
        try:
            key = (method, target, *headers)
            known = _REQUESTS.get(key)
        except TypeError:  # an unhashable header pair or value: not kept
            key = None
    if known is not None:
        return known
    framing, length, close, secret = request_framing(headers)
    head = request_head(method, target, headers)
    if key is not None and not secret and len(head) <= _CACHED_HEAD_MAX:
        if len(_REQUESTS) >= _CACHE_LIMIT:
            _REQUESTS.clear()
        _REQUESTS[key] = (head, framing, length, close)
    return head, framing, length, close
