"""The sans-I/O side of proxies: ``parse_proxy``, CONNECT and SOCKS5 bytes."""

from __future__ import annotations

import base64
import contextlib
import sys

import httpcore
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hintpool
from hintpool import _socks
from hintpool._proxy import (
    connect_head_end,
    connect_request,
    forward_request,
    parse_connect_response,
    parse_proxy,
)

SECRET = "p@ss:w%rd"


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("http://127.0.0.1:3128", "http://127.0.0.1:3128"),
        ("http://proxy.test", "http://proxy.test:80"),
        ("https://proxy.test", "https://proxy.test:443"),
        ("socks5://127.0.0.1", "socks5://127.0.0.1:1080"),
        ("socks5h://[::1]:9050", "socks5h://[::1]:9050"),
        (httpx.URL("HTTP://Proxy.Test:8080"), "http://proxy.test:8080"),
        (httpx.Proxy("http://127.0.0.1:1"), "http://127.0.0.1:1"),
    ],
)
def test_accepted_proxy_values(value: object, label: str) -> None:
    proxy = parse_proxy(value)
    assert proxy is not None
    assert proxy.label == label
    assert repr(proxy) == f"<ProxyConfig {label}>"


def test_none_is_no_proxy() -> None:
    assert parse_proxy(None) is None


def test_credentials_are_percent_decoded_and_kept_out_of_sight() -> None:
    url = httpx.URL("http://127.0.0.1:3128").copy_with(
        username="us er", password=SECRET
    )
    assert "%40" in str(url)
    proxy = parse_proxy(str(url))
    assert proxy is not None
    assert proxy.headers == [(b"Proxy-Authorization", basic("us er", SECRET))]
    for text in (proxy.label, repr(proxy)):
        assert "p@ss" not in text and "us er" not in text


def test_httpx_proxy_auth_and_headers() -> None:
    proxy = parse_proxy(
        httpx.Proxy("http://127.0.0.1:1", auth=("u", "p"), headers={"X-A": "1"})
    )
    assert proxy is not None
    assert proxy.headers == [
        (b"Proxy-Authorization", basic("u", "p")),
        (b"X-A", b"1"),
    ]


def test_socks_credentials_are_for_the_socks_handshake() -> None:
    proxy = parse_proxy("socks5://u:p%3A@127.0.0.1:1080")
    assert proxy is not None
    assert proxy.auth == (b"u", b"p:")
    assert proxy.headers == []


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("ftp://127.0.0.1", ValueError, "scheme"),
        ("127.0.0.1:3128", ValueError, "scheme"),
        ("socks4://127.0.0.1", ValueError, "scheme"),
        ("http://127.0.0.1:0", ValueError, "port"),
        ("http://127.0.0.1:65536", ValueError, "port"),
        ("http://u:hunter2@127.0.0.1:x", ValueError, "valid URL"),
        ("http://", ValueError, "host"),
        (3128, TypeError, "a URL"),
    ],
)
def test_bad_proxy_values(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        parse_proxy(value)
    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith("proxy must be")


def test_socks_without_socksio_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "socksio", None)
    with pytest.raises(ImportError, match=r"hintpool\[socks\]"):
        hintpool.ConnectionPool(proxy="socks5://127.0.0.1:1080")


# -- forwarding ---------------------------------------------------------------


def test_forward_request_is_absolute_form_on_the_proxy_origin() -> None:
    proxy = parse_proxy(httpx.Proxy("http://u:p@127.0.0.1:3128", headers={"X": "1"}))
    assert proxy is not None
    request = httpcore.Request(
        "GET",
        "http://example.test:8080/a?b=c",
        headers=[(b"Host", b"example.test:8080"), (b"x", b"mine")],
    )
    forwarded = forward_request(request, proxy)
    assert forwarded.url.origin == proxy.origin
    assert forwarded.url.target == b"http://example.test:8080/a?b=c"
    # The request's own header wins over the proxy's of the same name.
    assert forwarded.headers == [
        (b"Proxy-Authorization", basic("u", "p")),
        (b"Host", b"example.test:8080"),
        (b"x", b"mine"),
    ]


# -- CONNECT --------------------------------------------------------------------


def test_connect_request_bytes() -> None:
    proxy = parse_proxy("http://u:p@127.0.0.1:3128")
    assert proxy is not None
    origin = httpcore.Origin(b"https", b"example.test", 443)
    assert connect_request(origin, proxy) == (
        b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n"
        b"Proxy-Authorization: " + basic("u", "p") + b"\r\n\r\n"
    )
    v6 = httpcore.Origin(b"https", b"::1", 8443)
    assert connect_request(v6, proxy).startswith(b"CONNECT [::1]:8443 HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        b"HTTP/1.0 200 Connection established\r\nProxy-Agent: x\r\n\r\n",
        b"HTTP/1.1 204\r\n\r\n",
    ],
)
def test_2xx_answers_open_the_tunnel(head: bytes) -> None:
    assert parse_connect_response(head, "h:443", "http://p:1").status // 100 == 2


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "407 Proxy Auth"),
        (b"HTTP/1.0 403 Forbidden\r\n\r\n", "403 Forbidden"),
        (b"HTTP/1.1 301 Moved\r\n\r\n", "301 Moved"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP/1.x"),
        (b"HTTP/2 200\r\n\r\n", "not HTTP/1.x"),
        (b"\x00\x01\x02\r\n\r\n", "not HTTP/1.x"),
    ],
)
def test_other_answers_are_proxy_errors(head: bytes, message: str) -> None:
    with pytest.raises(hintpool.ProxyError, match=message):
        parse_connect_response(head, "h:443", "http://p:1")


@given(st.binary(max_size=200))
def test_any_bytes_give_an_answer_or_a_proxy_error(data: bytes) -> None:
    # Fed byte at a time as a reader would: never anything but ProxyError.
    buffer = b""
    for byte in data:
        buffer += bytes([byte])
        end = connect_head_end(buffer)
        if end >= 0:
            with contextlib.suppress(hintpool.ProxyError):
                parse_connect_response(buffer[:end], "h:443", "http://p:1")
            return


def test_an_endless_head_is_a_proxy_error() -> None:
    with pytest.raises(hintpool.ProxyError, match="no end of headers"):
        connect_head_end(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000)


# -- SOCKS5 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "size"),
    [
        (b"\x05\x00\x00\x01\x7f", 10),
        (b"\x05\x00\x00\x04\x00", 22),
        (b"\x05\x00\x00\x03\x09", 16),
    ],
)
def test_socks_reply_sizes(head: bytes, size: int) -> None:
    assert _socks.reply_size(head, "h:1", "socks5://p:1") == size


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"\x05\x02\x00\x01\x00", "not allowed by ruleset"),
        (b"\x05\x63\x00\x01\x00", "unknown reply code"),
        (b"\x05\x00\x00\x07\x00", "unknown address type 0x07"),
        (b"\x04\x5a\x00\x00\x00", "answered CONNECT"),
    ],
)
def test_socks_refusals(head: bytes, message: str) -> None:
    with pytest.raises(hintpool.ProxyError, match=message):
        _socks.reply_size(head, "h:1", "socks5://p:1")


def test_socks_auth_method_refused() -> None:
    with pytest.raises(hintpool.ProxyError, match="refused username/password"):
        _socks.check_auth_reply(b"\x05\xff", True, "socks5://p:1")
    with pytest.raises(hintpool.ProxyError, match="does not speak SOCKS5"):
        _socks.check_auth_reply(b"HT", False, "socks5://p:1")


def test_socks_resolve_keeps_addresses() -> None:
    assert _socks.resolve("127.0.0.1", 80) == "127.0.0.1"
    assert _socks.resolve("::1", 80) == "::1"
    assert _socks.resolve("localhost", 80) in ("127.0.0.1", "::1")
