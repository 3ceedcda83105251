"""The objects an :class:`~hintpool._asyncio_connection.AsyncFastConnection`
hands out with a response: its body stream, and the ``network_stream``
extension.

The body stream takes chunks straight from the connection's codec and waits
only when none are left; a body that has all arrived can be taken whole
(``take_complete``) and closed without awaiting (``close_now``), which is
what the pool's ``request()`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpcore

if TYPE_CHECKING:
    from ._asyncio_connection import AsyncFastConnection

__all__ = ["NetworkStream", "ResponseStream"]


class NetworkStream:
    """The ``network_stream`` response extension: answers ``get_extra_info``.

    What it returns is captured at open, so it stays meaningful after the
    connection was closed.
    """

    __slots__ = ("_client_addr", "_conn", "_server_addr", "_sock")

    def __init__(
        self, conn: AsyncFastConnection, transport: asyncio.BaseTransport
    ) -> None:
        self._conn = conn
        self._sock = transport.get_extra_info("socket")
        self._client_addr = transport.get_extra_info("sockname")
        self._server_addr = transport.get_extra_info("peername")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._conn.ssl_object
        if info == "socket":
            return self._sock
        if info == "client_addr":
            return self._client_addr
        if info == "server_addr":
            return self._server_addr
        if info == "is_readable":
            conn = self._conn
            return conn._peer_closed or conn._closed
        return None

    def __repr__(self) -> str:
        return f"<hintpool network stream {self._client_addr}->{self._server_addr}>"


class ResponseStream:
    """A response body: yields chunks; ``aclose`` releases the connection."""

    __slots__ = ("_closed", "_conn", "_cycle", "_request", "_trace")

    def __init__(
        self, conn: AsyncFastConnection, request: httpcore.Request, trace: Any
    ) -> None:
        self._conn = conn
        self._cycle = conn._cycle
        self._request = request
        self._trace = trace
        self._closed = False

    def take_complete(self) -> bytes | None:
        """The whole body when every byte of it has arrived (the connection
        then leaves the response as iterating to the end does), else None:
        iterate. Spares the pool's ``request()`` two async iterators."""
        conn = self._conn
        codec = conn._codec
        if (
            not codec.complete
            or conn._error is not None
            or self._trace is not None
            or self._cycle != conn._cycle
            or not conn._active
        ):
            return None
        body = codec.body
        content = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        # What _taken() does but resume reading: _response_done() does that
        # for a connection it keeps, and closes the others.
        conn._unconsumed = 0
        conn._response_done(self._cycle)
        return content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if self._cycle != conn._cycle or not conn._active:
            return  # read to its end (or closed) already: nothing more
        codec = conn._codec
        trace = self._trace
        if trace is not None:
            info = {"request": self._request}
            await trace("http11.receive_response_body.started", info)
        try:
            while True:
                body = codec.body  # a new list each response: fetch it anew
                if body:
                    chunks = body.copy()
                    body.clear()
                    conn._taken()
                    for chunk in chunks:
                        yield chunk
                elif codec.complete and conn._error is None:
                    break
                else:
                    await conn._wait(False)
        except BaseException as exc:
            # As httpcore: the failure is traced, then the response closed.
            if trace is not None:
                await trace("http11.receive_response_body.failed", {"exception": exc})
            await self.aclose()
            raise
        conn._response_done(self._cycle)
        if trace is not None:
            await trace("http11.receive_response_body.complete", {"return_value": None})

    def close_now(self) -> bool:
        """``aclose()``, when it has nothing to await (no trace callback, no
        socket for the loop to release): True if closed, else await
        ``aclose()``. Spares the pool's ``request()`` a coroutine."""
        if self._closed:
            return True
        if self._trace is not None:
            return False
        conn = self._conn
        if self._cycle == conn._cycle and conn._active:  # else done already
            conn._response_done(self._cycle)  # aclose() does it again: a no-op
        if conn._closed and not conn._lost and conn._transport is not None:
            return False
        self._closed = True
        return True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        trace = self._trace
        if trace is not None:
            await trace("http11.response_closed.started", {})
        conn = self._conn
        conn._response_done(self._cycle)
        if conn._closed and not conn._lost and conn._transport is not None:
            await asyncio.sleep(0)  # release the socket now: see aclose()
        if trace is not None:
            await trace("http11.response_closed.complete", {"return_value": None})
