"""The sans-I/O HTTP/1.1 client codec (``hintpool._h1``).

Every response test runs twice: the response fed in one piece and one byte
at a time. ``tests/h1_corpus.py`` holds the responses also run through h11;
``tests/test_h1_requests.py`` covers the sending side.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hintpool._exceptions import LocalProtocolError, RemoteProtocolError
from hintpool._h1 import H1Codec, ResponseHead

from .h1_corpus import CORPUS, Entry, h11_normalised, run_codec, run_h11

HOST = [(b"Host", b"example.com")]
OK = b"HTTP/1.1 200 OK\r\n"


@pytest.fixture(params=[False, True], ids=["at-once", "bytewise"])
def bytewise(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def feed(codec: H1Codec, data: bytes, bytewise: bool) -> None:
    if bytewise:
        for i in range(len(data)):
            codec.feed(data[i : i + 1])
    else:
        codec.feed(data)


def exchange(
    data: bytes, bytewise: bool, method: bytes = b"GET", codec: H1Codec | None = None
) -> H1Codec:
    codec = codec or H1Codec()
    codec.start_request(method, b"/", HOST)
    codec.end_request()
    feed(codec, data, bytewise)
    return codec


def head_of(codec: H1Codec) -> ResponseHead:
    assert codec.head is not None
    return codec.head


# --- framing of responses -------------------------------------------------


def test_content_length(bytewise: bool) -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    assert codec.nothing_received
    feed(codec, OK + b"Content-Length: 5\r\nX-A: b\r\n\r\nhello", bytewise)
    head = head_of(codec)
    assert (head.status, head.reason, head.http_version) == (200, b"OK", b"HTTP/1.1")
    assert head.headers == [(b"Content-Length", b"5"), (b"X-A", b"b")]
    assert b"".join(codec.body) == b"hello"
    assert codec.complete and codec.reusable() and not codec.nothing_received
    codec.next_cycle()
    assert (codec.head, codec.body, codec.complete) == (None, [], False)
    assert not codec.nothing_received


def test_head_waits_for_the_body(bytewise: bool) -> None:
    codec = exchange(OK + b"Content-Length: 5\r\n\r\nhel", bytewise)
    assert codec.head is not None and not codec.complete
    codec.feed(b"lo")
    assert codec.complete and b"".join(codec.body) == b"hello"


@pytest.mark.parametrize("status", [100, 102, 103, 150, 199])
def test_informational_heads_are_skipped(bytewise: bool, status: int) -> None:
    informational = b"HTTP/1.1 %d Wait\r\nLink: <a>\r\n\r\n" % status
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    feed(codec, informational, bytewise)
    assert codec.head is None and not codec.complete and not codec.nothing_received
    feed(codec, OK + b"Content-Length: 2\r\n\r\nok", bytewise)
    assert head_of(codec).status == 200 and head_of(codec).reason == b"OK"
    assert head_of(codec).headers == [(b"Content-Length", b"2")]
    assert b"".join(codec.body) == b"ok"
    assert codec.complete and codec.reusable()


def test_switching_protocols_is_final(bytewise: bool) -> None:
    response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    codec = exchange(response + b"Connection: Upgrade\r\n\r\n", bytewise)
    assert head_of(codec).status == 101 and codec.complete and not codec.reusable()
    codec = exchange(response + b"Connection: Upgrade\r\n\r\n\x81\x00", False)
    assert codec.leftover == b"\x81\x00" and codec.body == []
    codec = exchange(b"HTTP/1.1 101 Switching\r\n\r\n", bytewise)
    assert codec.complete and not codec.reusable()


@pytest.mark.parametrize(
    ("method", "response"),
    [
        (b"HEAD", OK + b"Content-Length: 5\r\n\r\n"),
        (b"HEAD", OK + b"Transfer-Encoding: chunked\r\n\r\n"),
        (b"HEAD", OK + b"\r\n"),
        (b"GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ],
)
def test_no_body_whatever_the_headers_say(
    bytewise: bool, method: bytes, response: bytes
) -> None:
    codec = exchange(response, bytewise, method)
    assert codec.complete and codec.body == [] and codec.reusable()
    codec.next_cycle()
    exchange(OK + b"Content-Length: 1\r\n\r\nx", bytewise, codec=codec)
    assert codec.complete and codec.body and codec.reusable()


@pytest.mark.parametrize("method", [b"HEAD", b"GET"])
def test_bytes_after_a_bodyless_response(method: bytes) -> None:
    codec = H1Codec()
    codec.start_request(method, b"/", HOST)
    status = b"200 OK" if method == b"HEAD" else b"204 No Content"
    response = b"HTTP/1.1 " + status + b"\r\nContent-Length: 3\r\n\r\n"
    with pytest.raises(RemoteProtocolError, match="after a complete response"):
        codec.feed(response + b"abc")
    # The response itself was complete before the stray bytes: a connection
    # may deliver it, and must not reuse the connection.
    assert codec.complete and head_of(codec).status in (200, 204)
    assert not codec.reusable()


def test_chunked_with_trailers(bytewise: bool) -> None:
    codec = exchange(
        OK + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1 \r\n!\r\n0\r\nX-Sum: 6 \r\nX-B: c\r\n\r\n",
        bytewise,
    )
    assert b"".join(codec.body) == b"hello!"
    assert head_of(codec).headers == [(b"Transfer-Encoding", b"chunked")]
    assert codec.trailers == [(b"X-Sum", b"6"), (b"X-B", b"c")]
    assert codec.complete and codec.reusable()


@pytest.mark.parametrize(
    "response",
    [
        OK + b"\r\nuntil the end",
        OK + b"Connection: close\r\n\r\nuntil the end",
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nuntil the end",
    ],
)
def test_eof_delimited_body(bytewise: bool, response: bytes) -> None:
    codec = exchange(response, bytewise)
    assert not codec.complete and not codec.reusable()
    codec.feed_eof()
    assert codec.complete and not codec.reusable()
    assert b"".join(codec.body) == b"until the end"


@pytest.mark.parametrize(
    ("response", "reusable"),
    [
        (OK + b"Connection: close\r\nContent-Length: 1\r\n\r\nx", False),
        (OK + b"connection: Keep-Alive, CLOSE\r\nContent-Length: 1\r\n\r\nx", False),
        (OK + b"Connection: keep-alive\r\nContent-Length: 1\r\n\r\nx", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", False),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
            True,
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx",
            True,
        ),
        (b"HTTP/1.0 204 OK\r\nConnection: keep-alive\r\n\r\n", True),
        (b"HTTP/1.0 204 OK\r\n\r\n", False),
    ],
)
def test_reuse(bytewise: bool, response: bytes, reusable: bool) -> None:
    codec = exchange(response, bytewise)
    assert codec.complete and codec.reusable() is reusable
    assert head_of(codec).http_version == response[:8]
    if reusable:
        codec.next_cycle()
    else:
        with pytest.raises(LocalProtocolError):
            codec.next_cycle()


def test_head_request_reuse_follows_connection_headers(bytewise: bool) -> None:
    for response, reusable in [
        (OK + b"Connection: close\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", True),
    ]:
        assert exchange(response, bytewise, b"HEAD").reusable() is reusable


def test_keep_alive_over_many_cycles(bytewise: bool) -> None:
    codec = H1Codec()
    responses = [
        (b"GET", OK + b"Content-Length: 3\r\n\r\nabc", b"abc"),
        (b"HEAD", OK + b"Content-Length: 3\r\n\r\n", b""),
        (b"GET", OK + b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", b"x"),
        (
            b"GET",
            b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 0\r\n\r\n",
            b"",
        ),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\n\r\n", b""),
    ] * 3
    for method, response, body in responses:
        exchange(response, bytewise, method, codec)
        assert codec.complete and b"".join(codec.body) == body and codec.reusable()
        codec.next_cycle()


def test_body_taken_by_the_connection() -> None:
    codec = exchange(OK + b"Content-Length: 4\r\n\r\nab", False)
    taken = codec.body.pop()
    codec.feed(b"cd")
    assert taken + b"".join(codec.body) == b"abcd"


def test_response_before_the_request_body_is_complete() -> None:
    codec = H1Codec()
    codec.start_request(b"POST", b"/", [(b"Content-Length", b"10")])
    codec.body_chunk(b"12345")
    codec.feed(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
    assert codec.complete and not codec.reusable()


# --- nothing_received ----------------------------------------------------------


def test_nothing_received() -> None:
    codec = H1Codec()
    assert not codec.nothing_received
    codec.start_request(b"GET", b"/", HOST)
    assert codec.nothing_received
    codec.feed(b"")
    assert codec.nothing_received
    codec.feed(b"H")
    assert not codec.nothing_received


@pytest.mark.parametrize(
    ("received", "message"),
    [
        (b"", "Server disconnected without sending a response."),
        (b"HTTP/1.1 200 O", "head was complete"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "head was complete"),
        (OK + b"Content-Length: 5\r\n\r\nab", "body was complete"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", "body was complete"),
    ],
)
def test_server_disconnects(received: bytes, message: str) -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    codec.feed(received)
    with pytest.raises(RemoteProtocolError, match=message):
        codec.feed_eof()
    assert codec.nothing_received is (received == b"")


def test_eof_while_idle_or_complete() -> None:
    codec = H1Codec()
    codec.feed_eof()  # an idle connection closed by the server is no error
    codec = exchange(OK + b"Content-Length: 0\r\n\r\n", False)
    codec.feed_eof()
    assert codec.complete and not codec.reusable()


# --- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        OK + b"X: a\x00b\r\n\r\n",
        OK + b"X : a\r\n\r\n",
        OK + b"X: a\r\n folded\r\n\r\n",
        OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        OK + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        OK + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 20 + b"\r\n",
        OK + b"Transfer-Encoding: gzip\r\n\r\nabc",
        OK + b"Transfer-Encoding: chunked, gzip\r\n\r\nabc",
        OK + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        OK + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\na",
        OK + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        OK + b"Content-Length: -1\r\n\r\n",
        OK + b"Content-Length: 99999999999999999999999\r\n\r\n",
        OK + b"Content-Length: 1\r\n\r\nab",
        OK + b"Content-Length: 1\r\nConnection: close\r\n\r\nab",
        OK + b"Content-Length: 0\r\n\r\n" + OK + b"Content-Length: 0\r\n\r\n",
    ],
)
def test_malformed_responses(bytewise: bool, response: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        exchange(response, bytewise)


def test_oversized_head(bytewise: bool) -> None:
    headers = b"".join(b"X-%05d: %s\r\n" % (i, b"v" * 50) for i in range(1200))
    assert len(OK + headers) > 65536
    with pytest.raises(RemoteProtocolError, match="larger than 65536"):
        exchange(OK + headers + b"Content-Length: 0\r\n\r\n", bytewise)


def test_oversized_header_line(bytewise: bool) -> None:
    line = b"X-Big: " + b"a" * 70000 + b"\r\n"
    with pytest.raises(RemoteProtocolError, match="larger than"):
        exchange(OK + line + b"Content-Length: 0\r\n\r\n", bytewise)


def test_head_size_limit_is_exact() -> None:
    head = OK + b"Content-Length: 0\r\n\r\n"
    exchange(head, False, codec=H1Codec(max_head_size=len(head)))
    with pytest.raises(RemoteProtocolError):
        exchange(head, False, codec=H1Codec(max_head_size=len(head) - 1))
    with pytest.raises(RemoteProtocolError):
        exchange(head, True, codec=H1Codec(max_head_size=len(head) - 1))


def test_head_size_counts_each_head_alone() -> None:
    informational = b"HTTP/1.1 103 Early Hints\r\n" + b"Link: <x>\r\n" * 4 + b"\r\n"
    final = OK + b"Content-Length: 0\r\n\r\n"
    size = max(len(informational), len(final))
    codec = exchange(
        informational * 3 + final, False, codec=H1Codec(max_head_size=size)
    )
    assert codec.complete


def test_bytes_while_idle() -> None:
    codec = exchange(OK + b"Content-Length: 0\r\n\r\n", False)
    with pytest.raises(RemoteProtocolError, match="after a complete response"):
        codec.feed(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    codec = exchange(OK + b"Content-Length: 0\r\n\r\n", False)
    codec.next_cycle()
    with pytest.raises(RemoteProtocolError, match="no request was sent"):
        codec.feed(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert not codec.reusable()


def test_response_when_no_request_was_sent() -> None:
    codec = H1Codec()
    with pytest.raises(RemoteProtocolError, match="no request was sent"):
        codec.feed(OK + b"Content-Length: 0\r\n\r\n")


def test_dead_after_an_error() -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    with pytest.raises(RemoteProtocolError):
        codec.feed(b"HTTP/1.1 abc\r\n\r\n")
    assert not codec.reusable() and not codec.complete
    for call in [
        lambda: codec.feed(OK),
        lambda: codec.feed(b""),
        codec.feed_eof,
        lambda: codec.start_request(b"GET", b"/", HOST),
        lambda: codec.body_chunk(b"x"),
        codec.end_request,
        codec.next_cycle,
    ]:
        with pytest.raises(RemoteProtocolError, match="unusable"):
            call()


# --- the same as h11 ---------------------------------------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: repr(e.response[:40])[2:-1])
def test_same_as_h11(entry: Entry) -> None:
    ours = run_codec(entry)
    theirs = run_h11(entry)
    if entry.h11_reuse_differs:
        assert ours.reusable and not theirs.reusable
        ours = ours._replace(reusable=False)
    assert h11_normalised(ours) == theirs
    data = entry.response
    step = 1 if len(data) < 3000 else 997
    assert run_codec(
        entry, [data[i : i + step] for i in range(0, len(data), step)]
    ) == (run_codec(entry))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.lists(st.integers(0, 10**6), max_size=12))
def test_split_points_do_not_matter(entry: Entry, cuts: list[int]) -> None:
    data = entry.response
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    chunks = [data[a:b] for a, b in zip(points, points[1:])]
    assert run_codec(entry, chunks) == run_codec(entry)


def _feed_quietly(codec: H1Codec, chunks: list[bytes], eof: bool) -> None:
    try:
        for chunk in chunks:
            codec.feed(chunk)
        if eof:
            codec.feed_eof()
    except RemoteProtocolError:
        pass


@settings(max_examples=400)
@given(
    st.sampled_from([b"GET", b"HEAD"]),
    st.lists(st.binary(max_size=64), max_size=8),
    st.booleans(),
)
def test_random_bytes_raise_only_remote_protocol_error(
    method: bytes, chunks: list[bytes], eof: bool
) -> None:
    codec = H1Codec()
    codec.start_request(method, b"/", HOST)
    _feed_quietly(codec, [OK[: len(chunks) * 2], *chunks], eof)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_responses_raise_only_remote_protocol_error(
    entry: Entry, data: st.DataObject
) -> None:
    response = bytearray(entry.response[:2000])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(response)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "insert":
            response[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del response[at : at + data.draw(st.integers(1, 8))]
        elif at < len(response):
            response[at] = data.draw(st.integers(0, 255))
    codec = H1Codec()
    codec.start_request(entry.method, b"/", HOST)
    _feed_quietly(codec, [bytes(response)], data.draw(st.booleans()))
    if codec.complete:
        assert codec.head is not None


_names = st.from_regex(rb"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,15}", fullmatch=True)
_values = st.from_regex(
    rb"[ \t]?(?:[!-~\x80-\xff](?:[ \t!-~\x80-\xff]{0,20}[!-~])?)?[ \t]?", fullmatch=True
)
_FRAMING_NAMES = {b"content-length", b"transfer-encoding", b"connection", b"trailer"}


@st.composite
def valid_exchanges(draw: st.DrawFn) -> Entry:
    """A valid response (with its request method) in any framing."""
    method = draw(st.sampled_from([b"GET", b"HEAD"]))
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    status = draw(st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 599]))
    reason = draw(
        st.from_regex(rb"(?:[A-Za-z](?:[A-Za-z ]{0,15}[A-Za-z])?)?", fullmatch=True)
    )
    headers = [
        (name, value)
        for name, value in draw(st.lists(st.tuples(_names, _values), max_size=6))
        if name.lower() not in _FRAMING_NAMES
    ]
    connection = draw(
        st.sampled_from([None, b"close", b"keep-alive", b"Keep-Alive, Close"])
    )
    if connection is not None:
        headers.append((b"Connection", connection))
    framing = draw(st.sampled_from(["length", "chunked", "eof"]))
    body = draw(st.binary(max_size=100))
    has_body = method != b"HEAD" and status not in (204, 304)
    if framing == "length":
        headers.append((b"Content-Length", b"%d" % len(body)))
        payload = body
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
        trailers = draw(st.lists(st.tuples(_names, _values), max_size=2))
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n"
        payload += b"".join(n + b":" + v + b"\r\n" for n, v in trailers) + b"\r\n"
    else:
        payload = body
    informational = b"".join(
        b"HTTP/1.1 %d Info\r\n\r\n" % code
        for code in draw(st.lists(st.sampled_from([100, 103]), max_size=2))
    )
    head = b"HTTP/%s %d %s\r\n" % (version, status, reason)
    head += b"".join(name + b":" + value + b"\r\n" for name, value in headers) + b"\r\n"
    return Entry(method, informational + head + (payload if has_body else b""))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(valid_exchanges(), st.lists(st.integers(0, 10**6), max_size=6))
def test_generated_responses_same_as_h11(entry: Entry, cuts: list[int]) -> None:
    theirs = run_h11(entry)
    ours = run_codec(entry)
    if ours.http_version == b"HTTP/1.0" and ours.reusable:
        assert not theirs.reusable  # h11 never keeps HTTP/1.0 alive
        ours = ours._replace(reusable=False)
    assert h11_normalised(ours) == theirs
    data = entry.response
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    chunks = [data[a:b] for a, b in zip(points, points[1:])]
    assert run_codec(entry, chunks) == run_codec(entry)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        OK + b"Content-Length: 0\r\n\r\n" + OK,
        b"HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
    ],
)
def test_errors_while_the_caller_handles_an_exception(response: bytes) -> None:
    # Implicit chaining sets __context__ of llhttp's error to the caller's
    # exception: the codec must not take that for the cause.
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    try:
        raise KeyError("the caller's own")
    except KeyError:
        with pytest.raises(RemoteProtocolError):
            codec.feed(response)


def test_memoryview_and_bytearray_input() -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    buffer = bytearray(OK + b"Content-Length: 6\r\n\r\nabc")
    codec.feed(memoryview(buffer)[:20])
    codec.feed(memoryview(buffer)[20:])
    buffer[:] = b"def"  # a reused receive buffer: nothing may alias it
    codec.feed(memoryview(buffer))
    assert b"".join(codec.body) == b"abcdef"
    assert head_of(codec).headers == [(b"Content-Length", b"6")]


def test_bug_in_a_callback_is_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: H1Codec) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(H1Codec, "_headers_complete", broken)
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    with pytest.raises(ZeroDivisionError):
        # A head never seen before: a known one would skip the callbacks.
        codec.feed(OK + b"X-Unseen: callback bug\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match="unusable"):
        codec.feed(b"x")


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: repr(e.response[:40])[2:-1])
def test_a_known_head_parses_as_llhttp_did(entry: Entry) -> None:
    # The second feed of a whole response may come from the known heads.
    assert run_codec(entry) == run_codec(entry)


def test_a_known_head_with_other_bytes_goes_to_llhttp() -> None:
    response = OK + b"X-Known: 1\r\nContent-Length: 2\r\n\r\n"
    for _ in range(2):  # the second one is known
        codec = H1Codec()
        codec.start_request(b"GET", b"/", HOST)
        codec.feed(response + b"ok")
        assert codec.complete and codec.reusable() and codec.body == [b"ok"]
        headers = head_of(codec).headers
        headers.append((b"X-Mine", b"changed"))  # the caller's own list
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    with pytest.raises(RemoteProtocolError, match="after a complete response"):
        codec.feed(response + b"okX")
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    codec.feed(response + b"o")
    assert not codec.complete
    codec.feed(b"k")
    assert codec.complete and codec.body == [b"o", b"k"]
    assert head_of(codec).headers == [(b"X-Known", b"1"), (b"Content-Length", b"2")]


# --- the headers set aside for the keep-alive hint ---------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: repr(e.response[:40])[2:-1])
def test_hint_headers_are_the_ten_character_names(entry: Entry) -> None:
    for chunks in ([entry.response], [entry.response[i : i + 1] for i in range(99)]):
        codec = H1Codec()
        codec.start_request(entry.method, b"/", HOST)
        codec.end_request()
        for chunk in chunks:
            codec.feed(chunk)
        if codec.head is None:
            continue  # the head is longer than the bytes fed one at a time
        head = codec.head
        assert head.hint_headers == [h for h in head.headers if len(h[0]) == 10]


def test_hint_headers_leave_out_informational_heads_and_trailers(
    bytewise: bool,
) -> None:
    codec = H1Codec()
    codec.start_request(b"GET", b"/", HOST)
    feed(codec, b"HTTP/1.1 103 Early\r\nKeep-Alive: max=1\r\n\r\n", bytewise)
    feed(
        codec,
        OK + b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
        b"Keep-Alive: timeout=5 \r\n\r\n1\r\nx\r\n0\r\nKeep-Alive: max=2\r\n\r\n",
        bytewise,
    )
    assert codec.complete and codec.trailers == [(b"Keep-Alive", b"max=2")]
    assert head_of(codec).hint_headers == [
        (b"Connection", b"keep-alive"),
        (b"Keep-Alive", b"timeout=5"),
    ]
    codec.next_cycle()
    exchange(OK + b"Content-Length: 0\r\n\r\n", bytewise, codec=codec)
    assert head_of(codec).hint_headers == []


def test_a_head_built_without_hint_headers_finds_them() -> None:
    headers = [(b"Keep-Alive", b"max=3"), (b"X-Ten-Char", b"1"), (b"Date", b"x")]
    head = ResponseHead(200, b"OK", b"HTTP/1.1", headers)
    assert head.hint_headers == headers[:2]


def test_a_connection_stops_remembering_heads_that_never_repeat() -> None:
    from hintpool._h1_response import KNOWN_HEADS

    codec = H1Codec()

    def fetch(head: bytes) -> None:
        codec.start_request(b"GET", b"/", HOST)
        codec.feed(head + b"ok")
        assert codec.complete and codec.body == [b"ok"]
        codec.next_cycle()

    unique = [OK + b"X-Id: %d\r\nContent-Length: 2\r\n\r\n" % i for i in range(10)]
    KNOWN_HEADS.clear()
    for head in unique[:8]:
        fetch(head)
    assert len(KNOWN_HEADS) == 8
    fetch(unique[8])  # the ninth unknown head in a row: not kept
    assert len(KNOWN_HEADS) == 8
    fetch(unique[0])  # known: counting starts again
    fetch(unique[9])
    assert len(KNOWN_HEADS) == 9
