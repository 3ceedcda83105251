"""The body stream a :class:`~hintpool._socket_connection.FastConnection`
hands out with a response: it yields the chunks the codec collected and
reads more only when none are left; a body that has all arrived can be
taken whole (``take_complete``), which is what the pool's ``request()``
does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpcore

from ._socket_open import Trace, traced

if TYPE_CHECKING:
    from ._socket_connection import FastConnection

__all__ = ["ResponseStream"]


class ResponseStream:
    """The response body: iterate for the chunks, then close()."""

    __slots__ = ("_closed", "_connection", "_done", "_request", "_timeout", "_trace")

    def __init__(
        self,
        connection: FastConnection,
        request: httpcore.Request,
        timeout: float | None,
        trace: Trace | None,
    ) -> None:
        self._connection = connection
        self._request = request
        self._timeout = timeout
        self._trace = trace
        self._done = False
        self._closed = False

    def take_complete(self) -> bytes | None:
        """The whole body when every byte of it has arrived (the connection
        then leaves the response as iterating to the end does), else None:
        iterate. Spares the pool's ``request()`` two iterators."""
        codec = self._connection._codec
        if self._done or self._trace is not None or not codec.complete:
            return None
        body = codec.body
        content = body[0] if len(body) == 1 else b"".join(body)
        self._done = True
        self._connection._response_done()
        return content

    def __iter__(self) -> Iterator[bytes]:
        if self._done:
            return
        trace = self._trace
        if trace is not None:
            info = {"request": self._request}
            trace("http11.receive_response_body.started", info)
        connection = self._connection
        codec = connection._codec
        timeout = self._timeout
        try:
            while True:
                body = codec.body
                if body:
                    if len(body) == 1:
                        yield body.pop()
                    else:
                        chunk = b"".join(body)
                        body.clear()
                        yield chunk
                elif codec.complete:
                    break
                else:
                    connection._receive(timeout)
        except BaseException as exc:
            if trace is not None:
                trace("http11.receive_response_body.failed", {"exception": exc})
            if not isinstance(exc, GeneratorExit):
                connection._abort()  # an I/O or protocol error: no close_notify
            self.close()
            raise
        if trace is not None:
            trace("http11.receive_response_body.complete", {"return_value": None})
        self._done = True
        connection._response_done()

    def close_now(self) -> bool:
        """``close()``: the sync twin has nothing to await."""
        self.close()
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        trace = self._trace
        if trace is None:
            self._release()
        else:
            traced(trace, "http11.response_closed", {}, self._release)

    def _release(self) -> None:
        if self._done:
            return
        self._done = True
        connection = self._connection
        if connection.is_active() and connection._codec.complete:
            connection._response_done()
        else:
            connection.close()
