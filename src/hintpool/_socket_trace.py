"""httpcore's ``trace`` events around a
:class:`~hintpool._socket_connection.FastConnection`'s exchange (its opening
is traced in :mod:`hintpool._socket_open`). Only used when a trace callback
is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpcore

from ._exceptions import WriteError
from ._h1 import ResponseHead
from ._socket_open import Trace, traced

if TYPE_CHECKING:
    from ._socket_connection import FastConnection

__all__ = ["exchange_traced"]


def exchange_traced(
    conn: FastConnection,
    request: httpcore.Request,
    trace: Trace,
    write_timeout: float | None,
    read_timeout: float | None,
) -> ResponseHead:
    """``FastConnection._exchange`` with httpcore's HTTP11Connection trace events."""
    info = {"request": request}
    try:
        traced(
            trace,
            "http11.send_request_headers",
            info,
            _send_head,
            conn,
            request,
            write_timeout,
        )
        traced(
            trace,
            "http11.send_request_body",
            info,
            conn._send_body,
            request,
            [],
            0,
            write_timeout,
        )
    except WriteError:
        conn._no_reuse = True
    trace("http11.receive_response_headers.started", info)
    try:
        head = conn._receive_head(read_timeout)
    except BaseException as exc:
        trace("http11.receive_response_headers.failed", {"exception": exc})
        raise
    value = (head.http_version, head.status, head.reason, head.headers)
    trace("http11.receive_response_headers.complete", {"return_value": value})
    return head


def _send_head(
    conn: FastConnection, request: httpcore.Request, timeout: float | None
) -> None:
    codec = conn._codec
    head = codec.start_request(request.method, request.url.target, request.headers)
    conn._write(head, timeout)
