"""Sending with the HTTP/1.1 client codec: request heads and body framing."""

from __future__ import annotations

import pytest

from hintpool._exceptions import LocalProtocolError, RemoteProtocolError
from hintpool._h1 import H1Codec

HOST = [(b"Host", b"example.com")]
OK = b"HTTP/1.1 200 OK\r\n"


def test_request_head_bytes() -> None:
    codec = H1Codec()
    assert codec.start_request(b"GET", b"/a?b=c", []) == b"GET /a?b=c HTTP/1.1\r\n\r\n"
    codec.feed(OK + b"Content-Length: 0\r\n\r\n")
    codec.next_cycle()
    head = codec.start_request(b"PUT", b"/", [(b"Host", b"h"), (b"X-Y", b"a: b")])
    assert head == b"PUT / HTTP/1.1\r\nHost: h\r\nX-Y: a: b\r\n\r\n"


def test_content_length_body() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"content-length", b"5")])
    assert codec.body_chunk(b"") == b""
    assert codec.body_chunk(b"abc") == b"abc"
    assert codec.body_chunk(b"de") == b"de"
    assert codec.end_request() == b""
    codec.feed(OK + b"Content-Length: 0\r\n\r\n")
    assert codec.reusable()


def test_too_much_body() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"Content-Length", b"2")])
    with pytest.raises(LocalProtocolError, match="Too much data"):
        codec.body_chunk(b"abc")
    with pytest.raises(LocalProtocolError):
        codec.end_request()


def test_too_little_body() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"Content-Length", b"4")])
    codec.body_chunk(b"abc")
    with pytest.raises(LocalProtocolError, match="1 bytes short"):
        codec.end_request()


def test_no_body_framing() -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    assert codec.body_chunk(b"") == b""
    with pytest.raises(LocalProtocolError):
        codec.body_chunk(b"x")


def test_chunked_body() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"Transfer-Encoding", b"Chunked")])
    assert codec.body_chunk(b"") == b""  # an empty chunk would end the body
    assert codec.body_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    codec.feed(OK + b"Content-Length: 0\r\n\r\n")
    assert codec.complete and not codec.reusable()  # request still being sent
    assert codec.end_request() == b"0\r\n\r\n"
    assert codec.reusable()


def test_request_connection_close_prevents_reuse() -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", [(b"Connection", b"Close")])
    codec.feed(OK + b"Content-Length: 0\r\n\r\n")
    assert codec.complete and not codec.reusable()


def test_second_request_in_flight() -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    with pytest.raises(LocalProtocolError, match="in flight"):
        codec.start_request(b"GET", b"/", HOST)
    codec.feed(OK + b"Content-Length: 0\r\n\r\n")
    with pytest.raises(LocalProtocolError, match="in flight"):
        codec.start_request(b"GET", b"/", HOST)  # next_cycle() first
    codec.next_cycle()
    codec.start_request(b"GET", b"/", HOST)


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"GET", b"/", [(b"X", b"a\r\nEvil: 1")]),
        (b"GET", b"/", [(b"X", b"a\nb")]),
        (b"GET", b"/", [(b"X", b"a\rb")]),
        (b"GET", b"/", [(b"X", b"a\x00b")]),
        (b"GET", b"/", [(b"X", b"a\x01b")]),
        (b"GET", b"/", [(b"X", b"a\x7fb")]),
        (b"GET", b"/\x1b", []),
        (b"GET", b"/", [(b"X\r\nEvil", b"1")]),
        (b"GET", b"/", [(b"X: y", b"1")]),
        (b"GET", b"/", [(b"", b"1")]),
        (b"GET", b"/", [(b"X Y", b"1")]),
        (b"GET", b"/\r\nEvil: 1", []),
        (b"GET", b"/ HTTP/1.0", []),
        (b"GET", b"/\x00", []),
        (b"GET", b"", []),
        (b"G ET", b"/", []),
        (b"GET\r\n", b"/", []),
        (
            b"POST",
            b"/",
            [(b"Content-Length", b"1"), (b"Transfer-Encoding", b"chunked")],
        ),
        (
            b"POST",
            b"/",
            [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"1")],
        ),
        (b"POST", b"/", [(b"Transfer-Encoding", b"gzip")]),
        (b"POST", b"/", [(b"Transfer-Encoding", b"chunked")] * 2),
        (b"POST", b"/", [(b"Content-Length", b"-1")]),
        (b"POST", b"/", [(b"Content-Length", b"1"), (b"Content-Length", b"2")]),
    ],
)
def test_invalid_requests(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    codec = H1Codec()
    with pytest.raises(LocalProtocolError):
        codec.start_request(method, target, headers)
    # Nothing was produced, so nothing changed: the codec is still usable.
    assert not codec.nothing_received
    codec.start_request(b"GET", b"/", HOST)


def test_equal_content_lengths_are_one() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"Content-Length", b"1")] * 2)
    assert codec.body_chunk(b"x") == b"x"


def test_dead_while_sending_the_body() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"Content-Length", b"10")])
    codec.body_chunk(b"abc")
    with pytest.raises(RemoteProtocolError):
        codec.feed(b"HTTP/1.1 2X\r\n")
    with pytest.raises(RemoteProtocolError, match="unusable"):
        codec.body_chunk(b"def")


def test_header_values_may_hold_tabs_and_obs_text() -> None:
    head = H1Codec().start_request(b"GET", b"/", [(b"X", b"a\tb caf\xc3\xa9")])
    assert head == b"GET / HTTP/1.1\r\nX: a\tb caf\xc3\xa9\r\n\r\n"


def test_dead_after_a_local_error() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"Content-Length", b"1")])
    with pytest.raises(LocalProtocolError):
        codec.body_chunk(b"ab")
    with pytest.raises(LocalProtocolError, match="unusable"):
        codec.feed(OK)


def test_a_repeated_request_gives_the_same_head_and_framing() -> None:
    # Heads are remembered by (method, target, headers): the second of each
    # pair comes from there and must frame the body as the first did.
    for headers in ([(b"Host", b"h"), (b"Content-Length", b"3")], HOST):
        for _ in range(2):
            codec = H1Codec()
            head = codec.start_request(b"POST", b"/same", headers)
            assert head.startswith(b"POST /same HTTP/1.1\r\n")
            if headers is HOST:
                assert codec.end_request() == b""
            else:
                assert codec.body_chunk(b"abc") == b"abc"
                with pytest.raises(LocalProtocolError, match="Too much data"):
                    codec.body_chunk(b"d")


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"GET", memoryview(b"/seen"), HOST),
        (b"GET", b"/seen", [(b"Host", b"x\r\ny")]),
    ],
)
def test_a_remembered_head_does_not_admit_an_invalid_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    H1Codec().start_request(b"GET", b"/seen", HOST)
    with pytest.raises((LocalProtocolError, AttributeError)):
        H1Codec().start_request(method, target, headers)


def test_unhashable_headers_still_send() -> None:
    headers = [[b"Host", b"h"], (b"X", bytearray(b"v"))]
    head = H1Codec().start_request(b"GET", b"/", headers)  # type: ignore[arg-type]
    assert head == b"GET / HTTP/1.1\r\nHost: h\r\nX: v\r\n\r\n"
