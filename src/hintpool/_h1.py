"""A sans-I/O HTTP/1.1 client codec on httptools (llhttp).

Theory of operation: one :class:`H1Codec` per connection, reused for every
request on it. It never touches a socket or an event loop: the connection
writes the bytes that :meth:`H1Codec.start_request`, :meth:`~H1Codec.body_chunk`
and :meth:`~H1Codec.end_request` return, and hands every received chunk to
:meth:`~H1Codec.feed` (and the peer's close to :meth:`~H1Codec.feed_eof`). The
results are plain attributes: ``head`` once the final response head is in,
``body`` (chunks to take), ``complete`` at the end of the message.

Receiving runs in two phases. While the head is incomplete the codec looks
for its end (``CRLF CRLF``, searched across chunk boundaries) itself, for two
reasons llhttp cannot serve: it caps the head size (llhttp has no limit), and
it stops feeding llhttp at the end of a head that has no body in *our* eyes
(a response to HEAD, 101, any 1xx) but may have one in llhttp's, which cannot
be told about the request method. In the common case, one chunk that starts
with an ``HTTP/1.x`` status line that is not 1xx, for a request that is not
HEAD, the whole chunk goes to llhttp in one call. Once the head is complete,
body bytes go straight to llhttp, which handles Content-Length, chunked
(with trailers, kept in ``trailers``) and EOF-delimited bodies, and 204/304.
Framing and reuse are decided once, in ``on_headers_complete``: llhttp's
``should_keep_alive()`` answers the common case; only when it says no are the
headers scanned (Connection tokens, framing) to tell ``Connection: close``
from an EOF-delimited body.

Every malformed input raises :class:`RemoteProtocolError`, including bytes
beyond a complete response: when those arrive in the same ``feed()`` as the
end of the response, ``head``/``body``/``complete`` are set before the error
is raised (a connection may still deliver that response, and must not reuse
the connection). After any error from ``feed``, ``feed_eof``, ``body_chunk``
or ``end_request`` the codec is dead: every later call raises. Errors from
``start_request`` (invalid head, request in flight) change nothing, since no
byte was produced. ``feed`` also takes a ``bytearray`` or ``memoryview``
(body chunks are always copies, so a reused receive buffer is safe).

Compared with h11 (``tests/test_h1.py`` runs a corpus and generated responses
through both): the same heads, bodies, trailers, end of message and reuse,
except that an HTTP/1.0 response with ``Connection: keep-alive`` is reusable
here (h11 never reuses HTTP/1.0), header values are not rewritten (h11
lowercases ``Transfer-Encoding``), and llhttp is stricter: bare LF line
ends, obs-fold continuation lines, duplicate ``Content-Length`` and versions
other than HTTP/1.0 and 1.1 are errors. A 101 response is a final head here
(h11 raises unless the request asked for an upgrade); any bytes that came
with it are left in ``leftover``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NoReturn, Union

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from ._exceptions import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["H1Codec", "ResponseHead"]

Bytes = Union[bytes, bytearray, memoryview]

# Receiving phases.
_IDLE, _HEAD, _BODY, _DONE, _DEAD = range(5)
# Request body framing.
_LENGTH, _CHUNKED, _SENT = range(3)
# Kinds of request header names that framing and reuse depend on.
_OTHER, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION = range(4)

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_KINDS = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}
# Valid header names seen so far -> kind: callers send the same few names on
# every request, so validation and classification cost one dict lookup.
_NAMES: dict[bytes, int] = {}
_METHODS: set[bytes] = set()
_CACHE_LIMIT = 1024
_STATUS_LINE_STARTS = (b"HTTP/1.1 ", b"HTTP/1.0 ")
_CRLF2 = b"\r\n\r\n"
# Not allowed in a request head, but for the CR LF ending each line (HTAB is).
_CONTROLS = bytes([*range(9), *range(10, 32), 127])
_COLON_JOIN = b": ".join


class ResponseHead:
    """The final response head: status, reason, version and raw headers."""

    __slots__ = ("headers", "hint_headers", "http_version", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: bytes,
        http_version: bytes,
        headers: list[tuple[bytes, bytes]],
        hint_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.http_version = http_version
        #: Original case and order, as received (trailing whitespace of
        #: values removed, as h11 does). Never copied by the codec.
        self.headers = headers
        #: The headers whose names are ten characters long, in order: all
        #: that ``hintpool._hints.response_keep_alive`` looks at
        #: (``Connection``, ``Keep-Alive``), collected as they are parsed so
        #: that the pool does not scan every header again.
        self.hint_headers = (
            [(n, v) for n, v in headers if len(n) == 10]
            if hint_headers is None
            else hint_headers
        )

    def __repr__(self) -> str:
        return (
            f"<ResponseHead {self.http_version.decode()} {self.status} "
            f"{self.reason!r} headers={len(self.headers)}>"
        )


def _name_kind(name: bytes) -> int:
    kind = _NAMES.get(name)
    if kind is None:
        if not isinstance(name, bytes) or _TOKEN(name) is None:
            raise LocalProtocolError(f"Illegal header name {name!r}")
        kind = _KINDS.get(name.lower(), _OTHER)
        if len(_NAMES) < _CACHE_LIMIT:
            _NAMES[name] = kind
    return kind


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip(b" \t") for token in value.lower().split(b",")]


def _request_framing(
    headers: Sequence[tuple[bytes, bytes]],
) -> tuple[int, int, bool]:
    """(framing, Content-Length, Connection: close) of a request; validates names."""
    framing = _SENT  # no body: nothing to send, end_request() is optional
    length = 0
    close = False
    names = _NAMES
    for name, value in headers:
        kind = names.get(name)
        if kind is None:
            kind = _name_kind(name)
        if not kind:
            continue
        if kind == _CONNECTION:
            close = close or (value != b"keep-alive" and b"close" in _tokens(value))
        elif kind == _CONTENT_LENGTH:
            value = value.strip(b" \t")
            if not value.isdigit() or framing == _CHUNKED:
                raise LocalProtocolError(
                    f"Illegal or conflicting Content-Length {value!r}"
                )
            if framing == _LENGTH and int(value) != length:
                raise LocalProtocolError("Conflicting Content-Length headers")
            framing, length = _LENGTH, int(value)
        elif value.strip(b" \t").lower() != b"chunked":
            raise LocalProtocolError("Only Transfer-Encoding: chunked is supported")
        elif framing != _SENT:
            raise LocalProtocolError("Conflicting Content-Length/Transfer-Encoding")
        else:
            framing = _CHUNKED
    if framing == _LENGTH and not length:
        framing = _SENT
    return framing, length, close


def _request_head(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> bytes:
    """The request line and head; names are validated by _request_framing()."""
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


class H1Codec:
    """HTTP/1.1 client protocol state for one connection; see the module doc."""

    __slots__ = (
        "_callback_error",
        "_eof",
        "_eof_body",
        "_error",
        "_framing",
        "_head_method",
        "_head_size",
        "_headers",
        "_hint_headers",
        "_informational",
        "_keep",
        "_max_head_size",
        "_parser",
        "_parser_dirty",
        "_phase",
        "_reason",
        "_received",
        "_remaining",
        "_request_close",
        "_sent",
        "_tail",
        "_upgraded",
        "_version",
        "body",
        "complete",
        "head",
        "leftover",
        "trailers",
    )

    def __init__(self, *, max_head_size: int = 65536) -> None:
        self._max_head_size = max_head_size
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []
        self.complete = False
        #: Trailer fields of a chunked response (original case, as received).
        self.trailers: list[tuple[bytes, bytes]] = []
        #: After a 101 head: bytes of the new protocol that came with it.
        self.leftover = b""
        self._phase = _IDLE
        self._error: ProtocolError | None = None
        self._framing = _SENT
        self._remaining = 0
        self._request_close = False
        self._sent = False
        self._received = False
        self._head_method = False
        self._eof = False
        self._parser_dirty = False
        self._reset_response()
        self._parser = self._new_parser()

    def __repr__(self) -> str:
        phase = ("idle", "head", "body", "done", "dead")[self._phase]
        return f"<H1Codec {phase} complete={self.complete}>"

    # --- sending ----------------------------------------------------------

    def start_request(
        self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> bytes:
        """Bytes of the request line and head; see the module doc."""
        if self._phase != _IDLE:
            self._raise_unusable(LocalProtocolError("A request is already in flight."))
        framing, length, close = _request_framing(headers)
        head = _request_head(method, target, headers)
        self._framing = framing
        self._remaining = length
        self._request_close = close
        self._head_method = method == b"HEAD"
        self._sent = True
        self._received = False
        self._reset_response()
        self._phase = _HEAD
        return head

    def body_chunk(self, data: bytes) -> bytes:
        """Framed bytes to write for ``data``, a piece of the request body."""
        framing = self._framing
        if framing == _LENGTH:
            remaining = self._remaining - len(data)
            if remaining <= 0:
                if remaining < 0:
                    self._fail(
                        LocalProtocolError("Too much data for declared Content-Length")
                    )
                self._framing = _SENT
            self._remaining = remaining
            return data
        if framing == _CHUNKED:
            if not data:
                return b""  # an empty chunk would end the body
            return b"%x\r\n%s\r\n" % (len(data), data)
        if self._phase == _DEAD:
            self._raise_unusable(LocalProtocolError("No request in flight."))
        if not data:
            return b""
        self._fail(
            LocalProtocolError(
                "Too much data for declared Content-Length (or no body framing)"
                if self._sent
                else "Request body data with no request in flight"
            )
        )

    def end_request(self) -> bytes:
        """The end of the request body: the last chunk, or nothing."""
        framing = self._framing
        if self._phase == _DEAD:
            self._raise_unusable(LocalProtocolError("No request in flight."))
        if framing == _CHUNKED:
            self._framing = _SENT
            return b"0\r\n\r\n"
        if framing == _LENGTH:
            self._fail(
                LocalProtocolError(
                    f"Request body ended {self._remaining} bytes short of "
                    "its Content-Length"
                )
            )
        self._framing = _SENT
        return b""

    # --- receiving ----------------------------------------------------------

    @property
    def nothing_received(self) -> bool:
        """A request was sent and no byte of its response has arrived."""
        return self._sent and not self._received

    def feed(self, data: Bytes) -> None:
        """Parse received bytes; see the module doc."""
        phase = self._phase
        if phase == _BODY:
            try:
                self._parser.feed_data(data)
            except (HttpParserError, HttpParserUpgrade) as exc:
                self._parse_failed(exc)
        elif phase == _HEAD:
            if not data:
                return
            self._received = True
            if type(data) is not bytes:
                data = bytes(data)
            if (
                not self._head_size
                and not self._head_method
                and data.startswith(_STATUS_LINE_STARTS)
                and data[9:10] != b"1"
            ):
                end = data.find(_CRLF2) + 4
                if 4 <= end <= self._max_head_size:
                    # The common case: a whole head in one chunk, with a body
                    # that llhttp frames right. One call parses head and body.
                    self._version = data[7]
                    try:
                        self._parser.feed_data(data)
                    except (HttpParserError, HttpParserUpgrade) as exc:
                        self._parse_failed(exc)
                    return
            self._feed_head(data)
        elif phase == _DEAD:
            self._raise_unusable(RemoteProtocolError("The connection is unusable."))
        elif data:
            self._fail_remote(
                "Received data after a complete response"
                if phase == _DONE
                else "Received data when no request was sent"
            )

    def feed_eof(self) -> None:
        """The peer closed the connection; see the module doc."""
        phase = self._phase
        self._eof = True
        if phase == _BODY:
            if self._eof_body:
                self._phase = _DONE
                self.complete = True
                return
            self._fail_remote(
                "Server disconnected before the response body was complete."
            )
        elif phase == _HEAD:
            self._fail_remote(
                "Server disconnected before the response head was complete."
                if self._received
                else "Server disconnected without sending a response."
            )
        elif phase == _DEAD:
            self._raise_unusable(RemoteProtocolError("The connection is unusable."))

    def reusable(self) -> bool:
        """After ``complete``: may the connection carry another request?"""
        return (
            self._phase == _DONE
            and self._keep
            and self._framing == _SENT
            and not self._eof
            and not self._request_close
        )

    def next_cycle(self) -> None:
        """After a reusable complete response: ready for the next request."""
        if not self.reusable():
            self._raise_unusable(
                LocalProtocolError("The connection cannot carry another request.")
            )
        self._phase = _IDLE
        self._sent = False
        self.head = None
        self.body = []
        self.complete = False
        if self._parser_dirty:
            self._parser = self._new_parser()
            self._parser_dirty = False

    # --- internals ----------------------------------------------------------

    def _new_parser(self) -> HttpResponseParser:
        parser = HttpResponseParser(self)
        # h11 accepts whitespace after the chunk size too.
        parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)
        return parser

    def _reset_response(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._hint_headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_size = 0
        self._tail = b""
        self._version = 0
        self._informational = False
        self._upgraded = False
        self._keep = False
        self._eof_body = False
        self._callback_error: BaseException | None = None

    def _fail(
        self, error: ProtocolError, raising: BaseException | None = None
    ) -> NoReturn:
        self._phase = _DEAD
        self._framing = _SENT  # so that body_chunk() raises too
        self._error = error
        raise error if raising is None else raising

    def _raise_unusable(self, error: ProtocolError) -> NoReturn:
        if self._error is not None:
            error = type(self._error)(
                f"The codec is unusable after an earlier error: {self._error}"
            )
        raise error

    def _parse(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self._parse_failed(exc)

    def _parse_failed(self, exc: Exception) -> None:
        if self._upgraded and self._phase == _DONE:
            return  # llhttp pauses after a 101 head: expected.
        # Not exc.__context__: implicit chaining replaces it with whatever
        # exception the caller of feed() happens to be handling.
        error = self._callback_error
        if isinstance(error, RemoteProtocolError):
            self._fail(error)
        # Any other error in a callback is a bug of ours: do not mask it.
        self._fail(RemoteProtocolError(f"Malformed response: {exc}"), error)

    def _reject(self, message: str) -> RemoteProtocolError:
        """The error a callback raises; remembered for _parse_failed()."""
        error = self._callback_error = RemoteProtocolError(message)
        return error

    def _fail_remote(self, message: str) -> NoReturn:
        self._fail(RemoteProtocolError(message))

    def _find_head_end(self, data: bytes) -> int:
        tail = self._tail
        if tail:
            at = (tail + data[:3]).find(_CRLF2)
            if at >= 0:
                return at + 4 - len(tail)
        at = data.find(_CRLF2)
        return at + 4 if at >= 0 else -1

    def _feed_head(self, data: bytes) -> None:
        while data:
            end = self._find_head_end(data)
            if end < 0:
                self._head_size += len(data)
                self._check_head_size()
                self._tail = data[-3:] if len(data) >= 3 else (self._tail + data)[-3:]
                self._parse(data)
                return
            self._head_size += end
            self._check_head_size()
            self._tail = b""
            self._parse(data[:end] if end < len(data) else data)
            data = data[end:]
            phase = self._phase
            if phase == _HEAD:
                if self._informational:
                    self._informational = False
                    self._head_size = 0
                    self._parser = self._new_parser()
            elif phase == _BODY:
                if data:
                    self._parse(data)
                return
            elif data:
                if self._upgraded:
                    self.leftover = data
                    return
                self._fail_remote("Received data after a complete response")

    def _check_head_size(self) -> None:
        if self._head_size > self._max_head_size:
            self._fail_remote(f"Response head larger than {self._max_head_size} bytes")

    # --- llhttp callbacks (hot path: keep them minimal) ---------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise self._reject("Received data after a complete response")

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp strips leading whitespace only; h11 strips both ends.
        header = (name, value.rstrip(b" \t"))
        self._headers.append(header)
        if len(name) == 10:  # see ResponseHead.hint_headers
            self._hint_headers.append(header)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self._phase == _BODY:
            self._phase = _DONE
            self.complete = True

    def on_headers_complete(self) -> None:
        try:
            self._headers_complete()
        except BaseException as exc:
            if self._callback_error is None:
                self._callback_error = exc
            raise

    def _headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status < 200 and status != 101:
            if status < 100:
                raise self._reject(f"Illegal status code {status}")
            self._headers = []
            self._hint_headers = []
            self._reason = b""
            self._informational = True
            return
        # The fast path in feed() saw the version ("HTTP/1.x", x as a byte).
        version = self._version
        if not version:
            text = parser.get_http_version()
            version = 49 if text == "1.1" else 48 if text == "1.0" else 0
            if not version:
                raise self._reject(f"Unsupported HTTP version {text}")
        http_version = b"HTTP/1.1" if version == 49 else b"HTTP/1.0"
        headers = self._headers
        self.head = ResponseHead(
            status, self._reason, http_version, headers, self._hint_headers
        )
        self._headers = self.trailers = []
        self._hint_headers = []  # trailers are no hints
        keep = parser.should_keep_alive()
        if self._head_method or status == 204 or status == 304 or status == 101:
            if status == 101:
                self._upgraded = True
                keep = False
            elif not keep:
                keep = self._classify(headers, http_version, True)
            self._parser_dirty = self._head_method or status == 101
            self._keep = keep
            self._phase = _DONE
            self.complete = True
            return
        self._phase = _BODY
        self._keep = keep or self._classify(headers, http_version, False)

    def _classify(
        self, headers: list[tuple[bytes, bytes]], http_version: bytes, no_body: bool
    ) -> bool:
        """Reuse and EOF framing when llhttp said "do not keep alive"."""
        close = keep_alive = chunked = length = coding = False
        for name, value in headers:
            size = len(name)
            if size == 10 and name.lower() == b"connection":
                tokens = _tokens(value)
                close = close or b"close" in tokens
                keep_alive = keep_alive or b"keep-alive" in tokens
            elif size == 14 and name.lower() == b"content-length":
                length = True
            elif size == 17 and name.lower() == b"transfer-encoding":
                coding = True
                chunked = _tokens(value)[-1] == b"chunked"
        if no_body:
            eof = False
        elif coding and not chunked:
            raise self._reject("Only Transfer-Encoding: chunked is supported")
        else:
            eof = not chunked and not length
        self._eof_body = eof
        if close or eof:
            return False
        return http_version == b"HTTP/1.1" or keep_alive
