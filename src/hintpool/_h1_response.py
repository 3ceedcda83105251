"""The response side of :class:`hintpool._h1.H1Codec`: the response head,
and the callbacks llhttp calls while it parses.

The callbacks are the hot path (``on_header`` runs once per header): they
only collect. Framing and reuse are decided once per response, in
``on_headers_complete``; see the module doc of :mod:`hintpool._h1`.
"""

from __future__ import annotations

from typing import Any

from ._exceptions import RemoteProtocolError
from ._h1_request import header_tokens

# Receiving phases.
IDLE, HEAD, BODY, DONE, DEAD = range(5)

# Response heads seen before -> what llhttp made of them (status, reason,
# version, headers, hint headers, Content-Length): a server sends the same
# head again and again (its Date changes once a second), and a look-up
# spares llhttp's ten Python callbacks. Only for a reusable response framed
# by Content-Length alone that came whole in one chunk (see _remember):
# then the same bytes can only parse the same way. Never for a head with
# Set-Cookie: the cache is shared by every pool and emptied only when the
# last one is closed (see _shared_caches), and a session must not outlive the
# client that received it (such a head misses; see _h1._UNKNOWN_HEADS_MAX).
Known = tuple[
    int,
    bytes,
    bytes,
    tuple[tuple[bytes, bytes], ...],
    tuple[tuple[bytes, bytes], ...],
    int,
]
KNOWN_HEADS: dict[bytes, Known] = {}
KNOWN_HEADS_SIZE = 64
_KNOWN_HEAD_MAX = 2048


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


class ResponseCallbacks:
    """llhttp's callbacks for :class:`hintpool._h1.H1Codec` (its base class,
    which holds the parsing state they set)."""

    __slots__ = (
        "_callback_error",
        "_eof_body",
        "_head_method",
        "_headers",
        "_hint_headers",
        "_informational",
        "_keep",
        "_parser",
        "_parser_dirty",
        "_phase",
        "_reason",
        "_upgraded",
        "_version",
        "body",
        "complete",
        "head",
        "trailers",
    )

    _parser: Any
    _phase: int
    _version: int
    _reason: bytes
    _headers: list[tuple[bytes, bytes]]
    _hint_headers: list[tuple[bytes, bytes]]
    _head_method: bool
    _informational: bool
    _upgraded: bool
    _parser_dirty: bool
    _keep: bool
    _eof_body: bool
    _callback_error: BaseException | None
    head: ResponseHead | None
    body: list[bytes]
    complete: bool
    trailers: list[tuple[bytes, bytes]]

    def _reject(self, message: str) -> RemoteProtocolError:
        """The error a callback raises; remembered for _parse_failed()."""
        error = self._callback_error = RemoteProtocolError(message)
        return error

    # --- known heads (see KNOWN_HEADS) -------------------------------------

    def _remember(self, data: bytes, end: int) -> None:
        """Keep what llhttp made of a whole response in one chunk, framed by
        Content-Length alone and setting no cookie, for the next response
        with the same head."""
        head = self.head
        if (
            head is None
            or not self._keep
            or end > _KNOWN_HEAD_MAX
            or head.status == 204
            or head.status == 304
            or self.trailers
        ):
            return
        length = -1
        for name, value in head.headers:
            size = len(name)
            if size == 14 and name.lower() == b"content-length":
                length = int(value)  # digits only: llhttp checked it
            elif (size == 17 and name.lower() == b"transfer-encoding") or (
                size == 10 and name.lower() == b"set-cookie"
            ):
                return
        if length != len(data) - end:
            return
        if len(KNOWN_HEADS) >= KNOWN_HEADS_SIZE:
            KNOWN_HEADS.clear()
        KNOWN_HEADS[data[:end]] = (
            head.status,
            head.reason,
            head.http_version,
            tuple(head.headers),
            tuple(head.hint_headers),
            length,
        )

    def _take_known(self, known: Known, data: bytes, end: int) -> None:
        """The state llhttp would leave after parsing ``data``: a head seen
        before (see _remember) and its whole body."""
        status, reason, http_version, headers, hint_headers, length = known
        self.head = ResponseHead(
            status, reason, http_version, list(headers), list(hint_headers)
        )
        if length:
            self.body.append(data[end:])
        self.trailers = self._headers  # empty, new for this response
        self._reason = reason
        self._keep = True
        self._phase = DONE
        self.complete = True

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
        if self._phase == BODY:
            self._phase = DONE
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
            self._phase = DONE
            self.complete = True
            return
        self._phase = BODY
        self._keep = keep or self._classify(headers, http_version, False)

    def _classify(
        self, headers: list[tuple[bytes, bytes]], http_version: bytes, no_body: bool
    ) -> bool:
        """Reuse and EOF framing when llhttp said "do not keep alive"."""
        close = keep_alive = chunked = length = coding = False
        for name, value in headers:
            size = len(name)
            if size == 10 and name.lower() == b"connection":
                tokens = header_tokens(value)
                close = close or b"close" in tokens
                keep_alive = keep_alive or b"keep-alive" in tokens
            elif size == 14 and name.lower() == b"content-length":
                length = True
            elif size == 17 and name.lower() == b"transfer-encoding":
                coding = True
                chunked = header_tokens(value)[-1] == b"chunked"
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
