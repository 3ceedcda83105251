"""Responses run through h11 and through ``hintpool._h1.H1Codec`` alike.

Shared by ``tests/test_h1.py`` (the comparison, split points, hypothesis)
and ``scripts/fuzz_h1.py`` (seeds for mutation). Each entry is the request
method, the raw response bytes, and whether h11 judges reuse differently on
purpose: h11 never keeps an HTTP/1.0 connection alive, the codec does when
the server said ``Connection: keep-alive`` (RFC 9112 §9.3, and what llhttp,
urllib3 and aiohttp do).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import h11

from hintpool._h1 import H1Codec

REQUEST_HEADERS = [(b"Host", b"example.com")]


class Entry(NamedTuple):
    method: bytes
    response: bytes
    h11_reuse_differs: bool = False


class Result(NamedTuple):
    status: int
    reason: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]]
    complete: bool
    reusable: bool


_OK = b"HTTP/1.1 200 OK\r\n"
CORPUS: list[Entry] = [
    Entry(b"GET", _OK + b"Content-Length: 5\r\n\r\nhello"),
    Entry(b"GET", _OK + b"Content-Length: 0\r\n\r\n"),
    Entry(b"GET", _OK + b"content-LENGTH: 3\r\nX-Y: z\r\n\r\nabc"),
    Entry(b"POST", b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
    Entry(b"GET", b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 1\r\n\r\nx"),
    Entry(b"GET", b"HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n"),
    Entry(b"GET", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
    Entry(
        b"GET",
        _OK
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ),
    Entry(
        b"GET",
        _OK + b"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:  two words \r\n\r\n",
    ),
    Entry(b"GET", _OK + b"Transfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\n\r\n"),
    Entry(b"GET", _OK + b"Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n"),
    Entry(
        b"GET", _OK + b"Transfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"
    ),
    Entry(b"GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    Entry(b"GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
    Entry(
        b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: x\r\n\r\n"
    ),
    Entry(b"HEAD", _OK + b"Content-Length: 1234\r\n\r\n"),
    Entry(b"HEAD", _OK + b"Transfer-Encoding: chunked\r\n\r\n"),
    Entry(b"HEAD", _OK + b"X: y\r\n\r\n"),
    Entry(b"HEAD", b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n"),
    Entry(b"GET", _OK + b"\r\nno framing: until EOF"),
    Entry(b"GET", _OK + b"Connection: close\r\n\r\nuntil EOF"),
    Entry(b"GET", b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.0 body until EOF"),
    Entry(b"GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nab"),
    Entry(
        b"GET",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab",
        h11_reuse_differs=True,
    ),
    Entry(b"GET", _OK + b"Connection: close\r\nContent-Length: 2\r\n\r\nab"),
    Entry(b"GET", _OK + b"Connection: Close\r\nContent-Length: 2\r\n\r\nab"),
    Entry(b"GET", _OK + b"Connection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"),
    Entry(b"GET", _OK + b"Connection: keep-alive\r\nContent-Length: 0\r\n\r\n"),
    Entry(b"GET", _OK + b"Connection: Upgrade\r\nContent-Length: 0\r\n\r\n"),
    Entry(
        b"GET",
        _OK + b"Keep-Alive: timeout=5, max=100\r\nConnection: Keep-Alive\r\n"
        b"Content-Length: 2\r\n\r\nok",
    ),
    Entry(
        b"GET",
        b"HTTP/1.1 100 Continue\r\n\r\n" + _OK + b"Content-Length: 2\r\n\r\nok",
    ),
    Entry(
        b"GET",
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\n" + _OK + b"Content-Length: 2\r\n\r\nok",
    ),
    Entry(
        b"GET", b"HTTP/1.1 199 Odd\r\nX: 1\r\n\r\n" + _OK + b"Content-Length: 0\r\n\r\n"
    ),
    Entry(
        b"GET",
        _OK + b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX:  spaced  out \t\r\n"
        b"Empty:\r\nBlank:   \r\nTab:\tt\r\nUtf8: caf\xc3\xa9\r\n"
        b"Content-Length: 3\r\n\r\nabc",
    ),
    Entry(b"GET", _OK + b"Content-Length:  3 \r\n\r\nabc"),
    Entry(b"GET", b"HTTP/1.1 200 Caf\xc3\xa9 OK\r\nContent-Length: 0\r\n\r\n"),
    Entry(
        b"GET",
        _OK + b"".join(b"H%d: %d\r\n" % (i, i) for i in range(100)) + b"\r\n",
    ),
    Entry(b"GET", _OK + b"Content-Length: 70000\r\n\r\n" + b"z" * 70000),
]


def h11_normalised(result: Result) -> Result:
    """``result`` with the framing headers as h11 rewrites them."""
    headers = []
    for name, value in result.headers:
        if name.lower() == b"transfer-encoding":
            value = value.lower()
        headers.append((name, value))
    return result._replace(headers=headers)


def run_codec(entry: Entry, chunks: Iterable[bytes] | None = None) -> Result:
    """Feed ``entry`` (in ``chunks`` if given), then EOF if still incomplete."""
    codec = H1Codec()
    codec.start_request(entry.method, b"/", REQUEST_HEADERS)
    codec.end_request()
    for chunk in [entry.response] if chunks is None else chunks:
        codec.feed(chunk)
    if not codec.complete:
        codec.feed_eof()
    head = codec.head
    assert head is not None
    return Result(
        head.status,
        head.reason,
        head.http_version,
        head.headers,
        b"".join(codec.body),
        codec.trailers,
        codec.complete,
        codec.reusable(),
    )


def _drain(conn: h11.Connection) -> list[Any]:
    events = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return events
        events.append(event)
        if type(event) is h11.ConnectionClosed:
            return events


def run_h11(entry: Entry) -> Result:
    """The same exchange through ``h11.Connection(our_role=h11.CLIENT)``."""
    conn = h11.Connection(our_role=h11.CLIENT)
    conn.send(h11.Request(method=entry.method, target=b"/", headers=REQUEST_HEADERS))
    conn.send(h11.EndOfMessage())
    conn.receive_data(entry.response)
    events = _drain(conn)
    if not any(type(event) is h11.EndOfMessage for event in events):
        conn.receive_data(b"")
        events += _drain(conn)
    response = next(event for event in events if type(event) is h11.Response)
    ends = [event for event in events if type(event) is h11.EndOfMessage]
    return Result(
        response.status_code,
        bytes(response.reason),
        b"HTTP/" + bytes(response.http_version),
        [
            (bytes(name), bytes(value))
            for name, _, value in response.headers._full_items
        ],
        b"".join(bytes(event.data) for event in events if type(event) is h11.Data),
        [(bytes(n), bytes(v)) for n, _, v in ends[0].headers._full_items]
        if ends
        else [],
        bool(ends),
        conn.our_state is h11.DONE and conn.their_state is h11.DONE,
    )
