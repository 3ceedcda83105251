"""Parsing of the server's ``Keep-Alive`` and ``Connection`` response headers.

Theory of operation: an HTTP/1.1 server that keeps a connection open may say
for how long, and for how many more requests, with a response header such as
``Keep-Alive: timeout=5, max=100`` (RFC 2068 §19.7.1.1; connection persistence
itself is RFC 9112 §9.3). ``timeout`` is the number
of seconds the server keeps an *idle* connection before closing it, and ``max``
is how many more requests it will accept on this connection. The header is only
a hint, and what real servers send varies, so parsing here is lenient: unknown
or malformed parameters are ignored, and the functions never raise for any
``str`` or ``bytes`` input (anything else is a caller's bug: ``TypeError``).
Junk yields ``None`` (and one DEBUG line on the ``"hintpool"`` logger).
Numbers are validated as plain ASCII decimals before conversion; very large
values are returned as they are, for the pool's policy to clamp (both
``timeout`` and ``max``). This module is pure: no I/O, no clocks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

__all__ = [
    "KeepAlive",
    "cached_response_keep_alive",
    "connection_tokens",
    "parse_keep_alive",
    "response_keep_alive",
]

logger = logging.getLogger("hintpool")

# Plain ASCII decimals only: float() would also accept "+5", "5_0", " 5",
# "1e3", "inf", "nan" and non-ASCII digits such as U+0665 ARABIC-INDIC FIVE.
_DECIMAL_RE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_INTEGER_RE = re.compile(r"[0-9]+")

#: Longer parameter values are ignored, so a hostile header cannot make the
#: (quadratic) integer conversion slow.
_MAX_VALUE_LEN = 32
#: Optional whitespace in HTTP field values (RFC 9110 §5.6.3).
_OWS = " \t"

# Servers repeat the same Keep-Alive value on every response, so remember the
# result for (short) ``bytes`` inputs. The dict is simply cleared when full.
_CACHE_SIZE = 256
_CACHE_MAX_KEY_LEN = 256
_cache: dict[bytes, KeepAlive | None] = {}
#: cached_response_keep_alive() results, likewise.
_response_cache: dict[
    tuple[tuple[bytes, bytes], ...], tuple[KeepAlive | None, bool]
] = {}
_SHORT_LIST = 4


class KeepAlive:
    """The parameters of a ``Keep-Alive`` response header.

    ``timeout`` is in seconds (always a ``float`` when present); ``max`` is
    the number of further requests the server will accept. Either may be
    ``None`` when the server did not send a valid value. Instances are
    immutable, hashable and compare equal by value.
    """

    __slots__ = ("_max", "_timeout")
    __match_args__ = ("timeout", "max")

    _timeout: float | None
    _max: int | None

    def __init__(self, timeout: float | None = None, max: int | None = None) -> None:
        object.__setattr__(self, "_timeout", timeout)
        object.__setattr__(self, "_max", max)

    @property
    def timeout(self) -> float | None:
        """Seconds the server keeps an idle connection open, if it said."""
        return self._timeout

    @property
    def max(self) -> int | None:
        """How many more requests the server accepts on the connection."""
        return self._max

    if not TYPE_CHECKING:  # so that type checkers still flag stray assignments

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(f"cannot assign to {name!r}: KeepAlive is frozen")

        def __delattr__(self, name: str) -> None:
            raise AttributeError(f"cannot delete {name!r}: KeepAlive is frozen")

    def __repr__(self) -> str:
        return f"KeepAlive(timeout={self.timeout!r}, max={self.max!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeepAlive):
            return NotImplemented
        return self.timeout == other.timeout and self.max == other.max

    def __hash__(self) -> int:
        return hash((self.timeout, self.max))

    def __reduce__(self) -> tuple[type[KeepAlive], tuple[float | None, int | None]]:
        return (KeepAlive, (self.timeout, self.max))


def _parse_timeout(value: str) -> float | None:
    if len(value) > _MAX_VALUE_LEN or _DECIMAL_RE.fullmatch(value) is None:
        return None
    return float(value)


def _parse_max(value: str) -> int | None:
    if len(value) > _MAX_VALUE_LEN or _INTEGER_RE.fullmatch(value) is None:
        return None
    return int(value)


def _parse(text: str) -> KeepAlive | None:
    timeout: float | None = None
    max_: int | None = None
    invalid = False
    for param in text.replace(";", ",").split(","):
        name, eq, value = param.partition("=")
        if not eq:
            continue
        name = name.strip(_OWS).lower()
        if name != "timeout" and name != "max":
            continue
        value = value.strip(_OWS)
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1].strip(_OWS)
        if name == "timeout":
            parsed_timeout = _parse_timeout(value)
            if parsed_timeout is None:
                invalid = True
            else:
                timeout = parsed_timeout
        else:
            parsed_max = _parse_max(value)
            if parsed_max is None:
                invalid = True
            else:
                max_ = parsed_max
    result = None if timeout is None and max_ is None else KeepAlive(timeout, max_)
    if (
        (invalid or result is None)
        and logger.isEnabledFor(logging.DEBUG)
        and text.strip(_OWS)
    ):
        logger.debug(
            "hintpool: ignoring %s Keep-Alive header %r",
            "unusable" if result is None else "invalid parameters in",
            text[:100],
        )
    return result


def parse_keep_alive(value: str | bytes) -> KeepAlive | None:
    """Parse a ``Keep-Alive`` header value such as ``"timeout=5, max=100"``.

    Parameters are separated by ``,`` (or ``;``), names are case-insensitive,
    values may be double-quoted, unknown parameters are ignored and for a
    repeated parameter the last *valid* occurrence wins. ``timeout`` must be a
    non-negative decimal (``5``, ``0.5``) and ``max`` a non-negative integer;
    anything else is ignored. Returns ``None`` if neither was found. ``bytes``
    (or another bytes-like object) are decoded as latin-1. Never raises for a
    ``str`` or bytes-like value, whatever it holds; any other type (``None``,
    a number) raises ``TypeError``.
    """
    if isinstance(value, str):
        return _parse(value)
    try:
        return _cache[value]
    except (KeyError, TypeError):  # not seen yet, or unhashable (bytearray)
        pass
    if not isinstance(value, bytes):
        if not isinstance(value, (bytearray, memoryview)):
            raise TypeError(
                "parse_keep_alive() takes a str or bytes header value, "
                f"not {type(value).__name__}"
            )
        return _parse(bytes(value).decode("latin-1"))
    result = _parse(value.decode("latin-1"))
    if len(value) <= _CACHE_MAX_KEY_LEN:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[value] = result
    return result


def connection_tokens(value: str | bytes) -> frozenset[str]:
    """The lower-cased tokens of a ``Connection`` header value.

    ``"Keep-Alive, Upgrade"`` gives ``frozenset({"keep-alive", "upgrade"})``.
    ``bytes`` are decoded as latin-1; empty list elements are dropped.
    """
    if not isinstance(value, str):
        value = bytes(value).decode("latin-1")
    return frozenset(
        token for token in (t.strip(_OWS).lower() for t in value.split(",")) if token
    )


def response_keep_alive(
    headers: Sequence[tuple[bytes, bytes]],
) -> tuple[KeepAlive | None, bool]:
    """Extract ``(hint, close)`` from raw response headers in one pass.

    ``headers`` are ``(name, value)`` byte pairs with names in any case. Several
    ``Keep-Alive`` headers are treated as one comma-joined value, in order.
    ``close`` is true when any ``Connection`` header has the token ``close``.
    """
    keep_alive: list[bytes] = []
    close = False
    for name, value in headers:
        # Both names are ten characters long: a cheap first filter.
        if len(name) != 10:
            continue
        lowered = name.lower()
        if lowered == b"keep-alive":
            keep_alive.append(value)
        elif (
            lowered == b"connection"
            and not close
            and b"close" in value.lower()
            and "close" in connection_tokens(value)
        ):
            close = True
    if not keep_alive:
        return None, close
    if len(keep_alive) == 1:
        return parse_keep_alive(keep_alive[0]), close
    return parse_keep_alive(b", ".join(keep_alive)), close


def cached_response_keep_alive(
    headers: Sequence[tuple[bytes, bytes]],
) -> tuple[KeepAlive | None, bool]:
    """:func:`response_keep_alive`, remembered for a short list of
    ``(bytes, bytes)`` tuples (hintpool's connections hand over only the
    headers named like ``Connection`` and ``Keep-Alive``, the same on every
    response of a server): one look-up. Longer lists are scanned."""
    if len(headers) > _SHORT_LIST:
        return response_keep_alive(headers)
    key = tuple(headers)
    try:
        result = _response_cache.get(key)
    except TypeError:  # not tuples of bytes after all: no caching
        return response_keep_alive(headers)
    if result is None:
        result = response_keep_alive(headers)
        if sum(len(name) + len(value) for name, value in key) <= _CACHE_MAX_KEY_LEN:
            if len(_response_cache) >= _CACHE_SIZE:
                _response_cache.clear()
            _response_cache[key] = result
    return result
