"""When may a failed request be sent again? One rule, written down once.

A request that fails on a *reused* connection before any byte of the
response arrived most likely met a connection the server had just closed
(the keep-alive race). hintpool sends it once more on a new connection when
all of these hold:

* the method is idempotent (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT,
  DELETE) or the request carries an ``Idempotency-Key`` header;
* its body can be sent again: no body, or bytes held in memory (never a
  stream that was consumed);
* the failure is "server disconnected", a reset or a broken pipe -- not a
  timeout, which may mean the server is still working on it;
* nothing of the response was received.

A failure on a fresh connection is never retried here: that is what
``retries=`` (connect failures only, httpx semantics) is for. Java's
HttpURLConnection re-sends even a POST on a stale connection; we never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import h11
import httpcore
import httpx

from ._requests import HTTPCORE_BYTE_STREAM

__all__ = ["IDEMPOTENT_METHODS", "may_retry", "nothing_received"]

IDEMPOTENT_METHODS = frozenset(
    {b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"}
)

# Errors that mean "the server closed the connection under us".
_STALE_ERRORS = (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError)


def _has_idempotency_key(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, _ in headers:
        if len(name) == 15 and name.lower() == b"idempotency-key":
            return True
    return False


# httpx and httpcore each wrap in-memory bodies (b"" included) in a class of
# their own; everything else is a caller's iterator, which may be consumed.
_REPLAYABLE = (httpx.ByteStream, HTTPCORE_BYTE_STREAM)


def replayable_body(stream: Any) -> bool:
    """Bytes in memory (or nothing) can be sent again; streams cannot."""
    return isinstance(stream, _REPLAYABLE)


def nothing_received(connection: Any, request: Any = None) -> bool:
    """True when the connection shows no byte of a response (on HTTP/2: no
    frame of ``request``'s response, the connection closed without GOAWAY).

    hintpool's own connections answer from their codec. For httpcore's, h11
    keeps a partial response head in its buffer until it is complete, so
    an empty buffer while the server is still to send its response means
    nothing arrived. Connections that cannot tell are assumed to have
    received something (no retry).
    """
    per_stream = getattr(connection, "unanswered", None)
    if per_stream is not None:
        return bool(per_stream(request))
    own_answer = getattr(connection, "nothing_received", None)
    if own_answer is not None:
        return bool(own_answer())
    h11_state = getattr(connection, "_h11_state", None)
    if h11_state is None:
        return False
    try:
        data, _ = h11_state.trailing_data
        return not data and h11_state.their_state is h11.SEND_RESPONSE
    except Exception:  # pragma: no cover - an h11 we do not know
        return False


def may_retry(request: httpcore.Request, exc: BaseException, connection: Any) -> bool:
    if not isinstance(exc, _STALE_ERRORS):
        return False
    if request.method not in IDEMPOTENT_METHODS and not _has_idempotency_key(
        request.headers
    ):
        return False
    return replayable_body(request.stream) and nothing_received(connection, request)
