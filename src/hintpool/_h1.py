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
HEAD, the whole chunk goes to llhttp in one call; and when that chunk is a
head seen before (byte for byte) followed by exactly its Content-Length body,
what llhttp made of it then is taken again without llhttp
(``_h1_response.KNOWN_HEADS``; request heads are remembered likewise, in
``_h1_request``). Once the head is complete,
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

from collections.abc import Sequence
from typing import NoReturn, Union

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from ._exceptions import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._h1_request import CHUNKED, LENGTH, SENT, request
from ._h1_response import (
    BODY,
    DEAD,
    DONE,
    HEAD,
    IDLE,
    KNOWN_HEADS,
    ResponseCallbacks,
    ResponseHead,
)

__all__ = ["H1Codec", "ResponseHead"]

Bytes = Union[bytes, bytearray, memoryview]

_STATUS_LINE_STARTS = (b"HTTP/1.1 ", b"HTTP/1.0 ")
_CRLF2 = b"\r\n\r\n"
#: Responses in a row whose heads were not known, after which a connection
#: stops remembering them (see feed()).
_UNKNOWN_HEADS_MAX = 8


class H1Codec(ResponseCallbacks):
    """HTTP/1.1 client protocol state for one connection; see the module doc."""

    __slots__ = (
        "_eof",
        "_error",
        "_framing",
        "_head_size",
        "_max_head_size",
        "_received",
        "_remaining",
        "_request_close",
        "_sent",
        "_tail",
        "_unknown_heads",
        "leftover",
    )

    def __init__(self, *, max_head_size: int = 65536) -> None:
        self._max_head_size = max_head_size
        self._unknown_heads = 0  # heads in a row not found in KNOWN_HEADS
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []
        self.complete = False
        #: Trailer fields of a chunked response (original case, as received).
        self.trailers: list[tuple[bytes, bytes]] = []
        #: After a 101 head: bytes of the new protocol that came with it.
        self.leftover = b""
        self._phase = IDLE
        self._error: ProtocolError | None = None
        self._framing = SENT
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
        if self._phase != IDLE:
            self._raise_unusable(LocalProtocolError("A request is already in flight."))
        head, framing, length, close = request(method, target, headers)
        self._framing = framing
        self._remaining = length
        self._request_close = close
        self._head_method = method == b"HEAD"
        self._sent = True
        self._received = False
        self._reset_response()
        self._phase = HEAD
        return head

    def body_chunk(self, data: bytes) -> bytes:
        """Framed bytes to write for ``data``, a piece of the request body."""
        framing = self._framing
        if framing == LENGTH:
            remaining = self._remaining - len(data)
            if remaining <= 0:
                if remaining < 0:
                    self._fail(
                        LocalProtocolError("Too much data for declared Content-Length")
                    )
                self._framing = SENT
            self._remaining = remaining
            return data
        if framing == CHUNKED:
            if not data:
                return b""  # an empty chunk would end the body
            return b"%x\r\n%s\r\n" % (len(data), data)
        if self._phase == DEAD:
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
        if self._phase == DEAD:
            self._raise_unusable(LocalProtocolError("No request in flight."))
        if framing == CHUNKED:
            self._framing = SENT
            return b"0\r\n\r\n"
        if framing == LENGTH:
            self._fail(
                LocalProtocolError(
                    f"Request body ended {self._remaining} bytes short of "
                    "its Content-Length"
                )
            )
        self._framing = SENT
        return b""

    # --- receiving ----------------------------------------------------------

    @property
    def nothing_received(self) -> bool:
        """A request was sent and no byte of its response has arrived."""
        return self._sent and not self._received

    def feed(self, data: Bytes) -> None:
        """Parse received bytes; see the module doc."""
        phase = self._phase
        if phase == BODY:
            try:
                self._parser.feed_data(data)
            except (HttpParserError, HttpParserUpgrade) as exc:
                self._parse_failed(exc)
        elif phase == HEAD:
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
                    known = KNOWN_HEADS.get(data[:end])
                    if known is not None and len(data) - end == known[5]:
                        self._unknown_heads = 0
                        self._take_known(known, data, end)
                        return
                    try:
                        self._parser.feed_data(data)
                    except (HttpParserError, HttpParserUpgrade) as exc:
                        self._parse_failed(exc)
                    # A server whose heads never repeat (an id in each) would
                    # pay for remembering every one: stop after a few misses.
                    if self.complete and self._unknown_heads < _UNKNOWN_HEADS_MAX:
                        self._unknown_heads += 1
                        self._remember(data, end)
                    return
            self._feed_head(data)
        elif phase == DEAD:
            self._raise_unusable(RemoteProtocolError("The connection is unusable."))
        elif data:
            self._fail_remote(
                "Received data after a complete response"
                if phase == DONE
                else "Received data when no request was sent"
            )

    def feed_eof(self) -> None:
        """The peer closed the connection; see the module doc."""
        phase = self._phase
        self._eof = True
        if phase == BODY:
            if self._eof_body:
                self._phase = DONE
                self.complete = True
                return
            self._fail_remote(
                "Server disconnected before the response body was complete."
            )
        elif phase == HEAD:
            self._fail_remote(
                "Server disconnected before the response head was complete."
                if self._received
                else "Server disconnected without sending a response."
            )
        elif phase == DEAD:
            self._raise_unusable(RemoteProtocolError("The connection is unusable."))

    def reusable(self) -> bool:
        """After ``complete``: may the connection carry another request?"""
        return (
            self._phase == DONE
            and self._keep
            and self._framing == SENT
            and not self._eof
            and not self._request_close
        )

    def next_cycle(self) -> None:
        """After a reusable complete response: ready for the next request."""
        if not self.recycle():
            self._raise_unusable(
                LocalProtocolError("The connection cannot carry another request.")
            )

    def recycle(self) -> bool:
        """``next_cycle()`` if ``reusable()``, in one call; whether it was."""
        if not (
            self._phase == DONE
            and self._keep
            and self._framing == SENT
            and not self._eof
            and not self._request_close
        ):
            return False
        self._phase = IDLE
        self._sent = False
        self.head = None
        self.body = []
        self.complete = False
        if self._parser_dirty:
            self._parser = self._new_parser()
            self._parser_dirty = False
        return True

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
        self._phase = DEAD
        self._framing = SENT  # so that body_chunk() raises too
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
        if self._upgraded and self._phase == DONE:
            return  # llhttp pauses after a 101 head: expected.
        # Not exc.__context__: implicit chaining replaces it with whatever
        # exception the caller of feed() happens to be handling.
        error = self._callback_error
        if isinstance(error, RemoteProtocolError):
            self._fail(error)
        # Any other error in a callback is a bug of ours: do not mask it.
        self._fail(RemoteProtocolError(f"Malformed response: {exc}"), error)

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
            if phase == HEAD:
                if self._informational:
                    self._informational = False
                    self._head_size = 0
                    self._parser = self._new_parser()
            elif phase == BODY:
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
