"""Checks of the keyword arguments of pools and transports, in one place.

Every keyword of :class:`~hintpool.ConnectionPool`,
:class:`~hintpool.HTTPTransport` and their async twins is checked when the
object is built, so a wrong value fails there with a message that names
the keyword, instead of later, deep in a request, or never. A wrong type
raises ``TypeError``, a value out of range ``ValueError``.

The pools call :func:`check_pool_options`; the transports call
:func:`check_transport_options` for the keywords that only they take
(``verify``, ``limits``, ...) and pass the rest on to their pool.
"""

from __future__ import annotations

import math
import numbers
import os
import ssl
from typing import Any, Callable

import httpx

from ._proxy import parse_proxy

__all__ = ["WIRES", "check_pool_options", "check_transport_options"]

#: The values of the pools' ``wire=`` option.
WIRES = ("auto", "httpcore")

Check = Callable[[str, Any], None]


def _fail_type(name: str, expected: str, value: Any) -> None:
    raise TypeError(f"{name} must be {expected}, not {type(value).__name__}")


def _integer(minimum: int, *, optional: bool = False) -> Check:
    """An int (never a bool) of at least ``minimum``; None if ``optional``."""
    expected = f"an integer >= {minimum}" + (" or None" if optional else "")

    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            _fail_type(name, expected, value)
        if value < minimum:
            raise ValueError(f"{name} must be {expected}, got {value!r}")

    return check


def _seconds(
    *, positive: bool = False, finite: bool = False, optional: bool = False
) -> Check:
    """A real number of seconds, >= 0 (or > 0); never NaN."""
    expected = "a number of seconds " + ("> 0" if positive else ">= 0")
    if optional:
        expected += " or None"

    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            _fail_type(name, expected, value)
        ok = value > 0 if positive else value >= 0  # False for NaN
        if not ok or (finite and not math.isfinite(value)):
            raise ValueError(f"{name} must be {expected}, got {value!r}")

    return check


def _instance(*types: type, expected: str, optional: bool = False) -> Check:
    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, types):
            _fail_type(name, expected, value)

    return check


def _network_backend(name: str, value: Any) -> None:
    # Duck-typed: the async pool takes an AsyncNetworkBackend, the sync pool
    # a NetworkBackend, and mocks of either only need the methods.
    if value is not None and not callable(getattr(value, "connect_tcp", None)):
        _fail_type(name, "an httpcore network backend or None", value)


def _socket_options(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        _fail_type(name, "an iterable of setsockopt() tuples or None", value)
    if not isinstance(value, (list, tuple)):
        return  # an iterator: the pool keeps a tuple of it, unchecked
    for option in value:
        if not (isinstance(option, tuple) and len(option) in (3, 4)):
            raise ValueError(
                f"{name} must be (level, option, value) tuples, got {option!r}"
            )


def _tls_session_cache(name: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    _integer(0)(name, value)


def _wire(name: str, value: Any) -> None:
    if value not in WIRES:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, WIRES))}, not {value!r}"
        )


def _clock(name: str, value: Any) -> None:
    if not callable(value):
        _fail_type(name, "a callable returning seconds", value)


def _cert(name: str, value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if not (
        isinstance(value, tuple)
        and len(value) in (2, 3)
        and all(isinstance(part, (str, type(None))) for part in value)
    ):
        _fail_type(name, "None, a file name or a (cert, key[, password]) tuple", value)


def _proxy(name: str, value: Any) -> None:
    # Scheme, port and host are checked too (hintpool._proxy).
    parse_proxy(value, name)


_PATH = (str, os.PathLike)
_BOOL = _instance(bool, expected="True or False")

_RULES: dict[str, Check] = {
    # pools
    "ssl_context": _instance(
        ssl.SSLContext, expected="an ssl.SSLContext or None", optional=True
    ),
    "max_connections": _integer(1, optional=True),
    "max_keepalive_connections": _integer(0, optional=True),
    "max_connections_per_origin": _integer(1, optional=True),
    "keepalive_expiry": _seconds(optional=True),
    "keepalive_margin": _seconds(finite=True),
    "max_keepalive_timeout": _seconds(),
    "retries": _integer(0),
    "local_address": _instance(
        str, expected="an IP address string or None", optional=True
    ),
    "uds": _instance(*_PATH, expected="a socket path or None", optional=True),
    "socket_options": _socket_options,
    "network_backend": _network_backend,
    "max_origins": _integer(1),
    "retry_stale": _BOOL,
    "prewarm": _BOOL,
    "tls_session_cache": _tls_session_cache,
    "tls_session_ttl": _seconds(positive=True),
    "wire": _wire,
    "clock": _clock,
    # transports only
    "verify": _instance(
        ssl.SSLContext,
        str,
        bool,
        expected="an ssl.SSLContext, a CA file name or a bool",
    ),
    "cert": _cert,
    "trust_env": _BOOL,
    "http1": _BOOL,
    "http2": _BOOL,
    "limits": _instance(httpx.Limits, expected="an httpx.Limits"),
    "proxy": _proxy,
}


def _check(options: dict[str, Any]) -> None:
    for name, value in options.items():
        # "limits.max_connections" follows the rule of "max_connections".
        _RULES[name.rpartition(".")[2]](name, value)


def check_pool_options(**options: Any) -> None:
    """Raise TypeError / ValueError naming the first wrong keyword."""
    _check(options)
    _check_per_origin_cap(
        options.get("max_connections_per_origin"), options.get("max_connections")
    )


def _check_per_origin_cap(cap: int | None, total: int | None) -> None:
    # A cap above the pool's own limit could never be reached: almost
    # surely a mix-up of the two numbers.
    if cap is not None and total is not None and cap > total:
        raise ValueError(
            f"max_connections_per_origin ({cap}) must not exceed "
            f"max_connections ({total})"
        )


def check_transport_options(**options: Any) -> None:
    """The transport's own keywords, and the fields of ``limits``."""
    _check(options)
    limits = options["limits"]
    _check(
        {
            "limits.max_connections": limits.max_connections,
            "limits.max_keepalive_connections": limits.max_keepalive_connections,
            "limits.keepalive_expiry": limits.keepalive_expiry,
        }
    )
