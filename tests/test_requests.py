"""Requests and responses built without httpcore's constructors
(``hintpool._requests``): the same objects, built faster."""

from __future__ import annotations

import httpcore
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hintpool._hints import response_keep_alive
from hintpool._requests import (
    ByteStream,
    _host_header,
    _parse_url,
    _simple_url,
    build_request,
    checked_response,
    hint_headers,
)


def parts(url: httpcore.URL) -> tuple[bytes, bytes, int | None, bytes]:
    return (url.scheme, url.host, url.port, url.target)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://example.com/",
        "https://EXAMPLE.com:8443/a/b?c=d&e=f",
        "http://127.0.3.45:40123/",
        "http://h?q",
        "http://h/?",
        "http://h/a?b?c",
        "http://h:080/x",
        "http://h:80/x",
        "https://h:443/",
        "https://h:80/",
        "http://h\u00e9/",
        "http://h:0/",
        "http://h/p@q/%41",
        "http://h/a;b/c",  # not simple: a ';'
        "http://h/a;b",
        "http://h/#frag",
        "http://u@h/",
        "http://[::1]:80/",
        "HTTP://h/",
        "http://h:/",
        "http://h:99999/",
        "http://h /",
        "ftp://h/",
    ],
)
def test_simple_urls_parse_as_httpcore_does(url: str) -> None:
    simple = _simple_url(url)
    try:
        expected = httpcore.URL(url)
    except Exception:
        assert simple is None  # left to httpcore.URL, which says what is wrong
        return
    if simple is not None:
        assert parts(simple[0]) == parts(expected)
        assert simple[1] == _host_header(expected)
    assert parts(_parse_url(url)[0]) == parts(expected)


_URL_CHARS = st.sampled_from(list("aZ09.-_~!$&'()*+,=:@/?%;#[] \tHTPShtps8\u00e9"))


@settings(max_examples=500)
@given(
    st.sampled_from(["http://", "https://", "HTTP://", "http:/", ""]),
    st.text(_URL_CHARS, max_size=30),
)
def test_any_url_parses_as_httpcore_does(prefix: str, rest: str) -> None:
    url = prefix + rest
    simple = _simple_url(url)
    if simple is None:
        return
    expected = httpcore.URL(url)
    assert parts(simple[0]) == parts(expected)
    assert simple[1] == _host_header(expected)


def test_requests_carry_a_byte_stream_with_its_content() -> None:
    request = build_request("POST", "http://h/", None, b"abc", None)
    stream = request.stream
    assert type(stream) is ByteStream and stream.content == b"abc"
    assert isinstance(stream, type(httpcore.Request("GET", "http://h/").stream))
    assert list(stream) == [b"abc"] and repr(stream) == "<ByteStream [3 bytes]>"


def test_checked_responses_are_httpcore_responses() -> None:
    headers = [(b"Keep-Alive", b"timeout=5"), (b"Content-Length", b"0")]
    stream = ByteStream(b"")
    response = checked_response(200, headers, stream, {"x": 1}, headers[:1])
    expected = httpcore.Response(200, headers=headers, content=stream)
    assert vars(response).keys() - {"_hint_headers"} == vars(expected).keys()
    assert (response.status, response.headers, response.stream) == (
        200,
        headers,
        stream,
    )
    assert response.extensions == {"x": 1} and hint_headers(response) == headers[:1]
    # Any other response: every header is looked at.
    assert hint_headers(expected) == headers
    assert response_keep_alive(hint_headers(response)) == response_keep_alive(headers)
