"""Every keyword of pools and transports is checked when they are built.

A wrong type raises TypeError, a value out of range ValueError, and the
message names the keyword (``limits.max_connections`` for a field of
``httpx.Limits``).
"""

from __future__ import annotations

import math
from typing import Any

import httpcore
import httpx
import pytest

import hintpool
from hintpool import KeepAlive, parse_keep_alive
from hintpool._policy import MAX_REQUESTS_CAP, Lifetime

POOLS = [hintpool.ConnectionPool, hintpool.AsyncConnectionPool]
TRANSPORTS = [hintpool.HTTPTransport, hintpool.AsyncHTTPTransport]

# (keyword, bad value, exception): each shared by pools and transports.
SHARED_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("retries", -1, ValueError),
    ("retries", 1.5, TypeError),
    ("retries", True, TypeError),
    ("max_origins", -1, ValueError),
    ("max_origins", 0, ValueError),
    ("max_origins", "many", TypeError),
    ("max_connections_per_origin", 0, ValueError),
    ("max_connections_per_origin", -1, ValueError),
    ("max_connections_per_origin", 2.5, TypeError),
    ("max_connections_per_origin", True, TypeError),
    ("keepalive_margin", -1, ValueError),
    ("keepalive_margin", math.inf, ValueError),
    ("keepalive_margin", "1", TypeError),
    ("max_keepalive_timeout", -0.5, ValueError),
    ("max_keepalive_timeout", math.nan, ValueError),
    ("retry_stale", "yes", TypeError),
    ("retry_stale", None, TypeError),
    ("prewarm", "yes", TypeError),
    ("prewarm", None, TypeError),
    ("tls_session_cache", -1, ValueError),
    ("tls_session_cache", 1.5, TypeError),
    ("tls_session_ttl", -1, ValueError),
    ("tls_session_ttl", 0, ValueError),
    ("tls_session_ttl", "1h", TypeError),
    ("wire", "fast", ValueError),
    ("wire", None, ValueError),
    ("uds", 5, TypeError),
    ("local_address", 5, TypeError),
    ("socket_options", 5, TypeError),
    ("socket_options", "SO_KEEPALIVE", TypeError),
    ("socket_options", [(1, 2)], ValueError),
    ("network_backend", "anyio", TypeError),
    ("proxy", 8080, TypeError),
    ("proxy", "ftp://127.0.0.1:21", ValueError),
    ("proxy", "127.0.0.1:3128", ValueError),
    ("proxy", "http://127.0.0.1:99999", ValueError),
    ("proxy", "http://127.0.0.1:port", ValueError),
    ("proxy", "http://user:secret@127.0.0.1:-1", ValueError),
]

POOL_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("max_connections", 0, ValueError),
    ("max_connections", 2.5, TypeError),
    ("max_keepalive_connections", -1, ValueError),
    ("keepalive_expiry", -1, ValueError),
    ("keepalive_expiry", "5", TypeError),
    ("ssl_context", True, TypeError),
    ("clock", 5.0, TypeError),
]

TRANSPORT_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("verify", 1, TypeError),
    ("verify", None, TypeError),
    ("cert", 5, TypeError),
    ("trust_env", "no", TypeError),
    ("http1", None, TypeError),
    ("http2", 1, TypeError),
    ("limits", {"max_connections": 5}, TypeError),
]

LIMITS_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("max_connections", 0, ValueError),
    ("max_connections", "10", TypeError),
    ("max_keepalive_connections", -1, ValueError),
    ("keepalive_expiry", -5, ValueError),
    ("keepalive_expiry", math.nan, ValueError),
]


def _ids(cases: list[tuple[str, Any, type[Exception]]]) -> list[str]:
    return [f"{name}={value!r}" for name, value, _ in cases]


@pytest.mark.parametrize("cls", POOLS + TRANSPORTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("name", "value", "error"), SHARED_BAD, ids=_ids(SHARED_BAD))
def test_shared_keyword_is_checked(
    cls: Any, name: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"^{name} must be"):
        cls(**{name: value})


@pytest.mark.parametrize("cls", POOLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("name", "value", "error"), POOL_BAD, ids=_ids(POOL_BAD))
def test_pool_keyword_is_checked(
    cls: Any, name: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"^{name} must be"):
        cls(**{name: value})


@pytest.mark.parametrize("cls", TRANSPORTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("name", "value", "error"), TRANSPORT_BAD, ids=_ids(TRANSPORT_BAD)
)
def test_transport_keyword_is_checked(
    cls: Any, name: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"^{name} must be"):
        cls(**{name: value})


@pytest.mark.parametrize("cls", TRANSPORTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("name", "value", "error"), LIMITS_BAD, ids=_ids(LIMITS_BAD))
def test_limits_fields_are_checked_under_their_name(
    cls: Any, name: str, value: Any, error: type[Exception]
) -> None:
    limits = httpx.Limits(**{name: value})
    with pytest.raises(error, match=rf"^limits\.{name} must be"):
        cls(limits=limits)


@pytest.mark.parametrize("cls", POOLS, ids=lambda c: c.__name__)
def test_per_origin_cap_above_the_pool_limit_is_refused(cls: Any) -> None:
    with pytest.raises(ValueError, match="must not exceed max_connections"):
        cls(max_connections=5, max_connections_per_origin=6)
    cls(max_connections=5, max_connections_per_origin=5)
    cls(max_connections=None, max_connections_per_origin=500)


@pytest.mark.parametrize("cls", TRANSPORTS, ids=lambda c: c.__name__)
def test_per_origin_cap_above_the_limits_is_refused(cls: Any) -> None:
    with pytest.raises(ValueError, match="must not exceed max_connections"):
        cls(limits=httpx.Limits(max_connections=5), max_connections_per_origin=6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retries": 3, "max_origins": 1, "tls_session_cache": 0},
        {"tls_session_cache": False, "tls_session_ttl": 0.5, "wire": "httpcore"},
        {"keepalive_margin": 0, "max_keepalive_timeout": math.inf},
        {"socket_options": [(6, 1, 1)], "uds": None, "local_address": "127.0.0.1"},
        {"limits": httpx.Limits(max_connections=None, keepalive_expiry=None)},
        {"verify": False, "cert": None, "trust_env": False},
    ],
)
def test_valid_values_are_accepted(kwargs: dict[str, Any]) -> None:
    hintpool.HTTPTransport(**kwargs).close()


def test_socket_options_iterator_serves_every_connection() -> None:
    options = iter([(6, 1, 1)])  # TCP_NODELAY, as a one-shot iterator
    pool = hintpool.ConnectionPool(socket_options=options)
    # Kept as a tuple: a second connection gets the options too.
    assert pool._connector._socket_options == ((6, 1, 1),)
    pool.close()


def test_mock_backends_pass_the_backend_check() -> None:
    hintpool.ConnectionPool(network_backend=httpcore.MockBackend([])).close()


# -- parse_keep_alive and huge max --------------------------------------------


@pytest.mark.parametrize("value", [None, 5, 1.5, ["timeout=5"]])
def test_parse_keep_alive_rejects_other_types_with_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        parse_keep_alive(value)


def test_parse_keep_alive_takes_memoryview() -> None:
    assert parse_keep_alive(memoryview(b"timeout=5")) == KeepAlive(5.0, None)


def test_huge_max_is_capped_like_timeouts() -> None:
    hint = parse_keep_alive("timeout=5, max=99999999999999999999999999")
    assert hint is not None and hint.max == 99999999999999999999999999
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.response_headers(hint, will_close=False)
    assert lifetime.requests_left == MAX_REQUESTS_CAP
    # A real count stays as the server said it.
    lifetime.response_done(0.0, 5.0)
    lifetime.start_request()
    lifetime.response_headers(KeepAlive(5.0, 99), will_close=False)
    assert lifetime.requests_left == 99
