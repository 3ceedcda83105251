"""The sans-I/O HTTP/1.1 client codec (``hintpool._h1``)."""

from __future__ import annotations

import pytest

from hintpool._exceptions import LocalProtocolError, RemoteProtocolError
from hintpool._h1 import H1Codec

GET = (b"GET", b"/", [(b"Host", b"example.com")])


def feed_all(codec: H1Codec, data: bytes, bytewise: bool) -> None:
    if bytewise:
        for i in range(len(data)):
            codec.feed(data[i : i + 1])
    else:
        codec.feed(data)


@pytest.fixture(params=[False, True], ids=["at-once", "bytewise"])
def bytewise(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_content_length_keep_alive(bytewise: bool) -> None:
    codec = H1Codec()
    codec.start_request(*GET)
    assert codec.nothing_received
    feed_all(codec, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", bytewise)
    assert not codec.nothing_received
    assert codec.head is not None
    assert codec.head.status == 200
    assert codec.head.reason == b"OK"
    assert codec.head.http_version == b"HTTP/1.1"
    assert codec.head.headers == [(b"Content-Length", b"5")]
    assert b"".join(codec.body) == b"hello"
    assert codec.complete
    assert codec.reusable()
    codec.next_cycle()
    assert codec.head is None and codec.body == [] and not codec.complete


def test_head_request_has_no_body(bytewise: bool) -> None:
    codec = H1Codec()
    codec.start_request(b"HEAD", b"/", [])
    feed_all(codec, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", bytewise)
    assert codec.complete and codec.reusable() and codec.body == []


def test_chunked_request_framing() -> None:
    codec = H1Codec()
    head = codec.start_request(b"POST", b"/x", [(b"Transfer-Encoding", b"chunked")])
    assert head == b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert codec.body_chunk(b"abc") == b"3\r\nabc\r\n"
    assert codec.end_request() == b"0\r\n\r\n"


def test_crlf_injection_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        H1Codec().start_request(b"GET", b"/", [(b"X", b"a\r\nEvil: 1")])


def test_garbage_is_remote_protocol_error() -> None:
    codec = H1Codec()
    codec.start_request(*GET)
    with pytest.raises(RemoteProtocolError):
        codec.feed(b"garbage\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        codec.feed(b"HTTP/1.1 200 OK\r\n\r\n")
