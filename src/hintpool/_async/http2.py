"""hintpool's HTTP/2 connection, driven directly on the ``h2`` package.

Theory of operation
-------------------
One connection carries many streams; what is shared is h2's state object
(``hintpool._h2frames.H2State``) and the network stream. Three locks:

* ``_state`` around every call into h2's state: a no-op on an event loop
  (h2's calls do not await), a real lock for the sync pool's threads.
* ``_write``: one writer at a time. A writer takes *everything* h2 queued,
  so a request's HEADERS and body (and the connection preface on the first
  one) go out in one write, and requests queued while another wrote ride
  along with the next write.
* ``_read``: the reader on demand. A stream needing an event reads the
  network only when nothing is queued for it, under this lock; what it
  reads is handed to each stream's queue (:class:`~hintpool._h2frames.Stream`),
  PINGs and SETTINGS are acknowledged, WINDOW_UPDATEs released.

On asyncio the locks are ``asyncio.Lock``, which does not yield when free:
a request on a quiet connection takes no lock round trip. Trace events
(httpcore's ``http2.*``) cost nothing unless a ``trace`` extension or the
``httpcore.http2`` debug logger asks for them.

End of life:

* GOAWAY: no new stream; a graceful one (``NO_ERROR``) lets the streams up
  to its ``last_stream_id`` read on, the others fail at once with
  ``ConnectionNotAvailable`` (not processed: the pool sends them again).
* The network failing (a close, a reset, a timeout) fails every stream
  with the same error. A stream that had no frame of its response when the
  server closed without GOAWAY is recorded: :meth:`unanswered` lets the
  pool's stale-retry rule send an idempotent request again.
* A stream given up (cancelled, or its response closed early) is reset
  with ``CANCEL``; the connection stays usable.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

import h2.events
import h2.exceptions
import httpcore
from httpcore._trace import Trace

from .._h2base import ConnectionError_, H2ConnectionBase
from .._h2frames import Stream, reset_error, response_head
from .._synchronization import (
    AsyncBookkeepingLock,
    AsyncH2Lock,
    AsyncLockWithin,
    AsyncSharedStream,
    AsyncShieldCancellation,
    AsyncSlots,
)

__all__ = ["AsyncH2Connection"]

logger = logging.getLogger("httpcore.http2")

READ_NUM_BYTES = 64 * 1024
#: Seconds to wait for the rest of what an idle connection's server sent
#: before closing (its socket polled readable: the bytes are there).
_IDLE_READ_TIMEOUT = 0.1
_DATA = h2.events.DataReceived
_RESPONSE = h2.events.ResponseReceived
_ENDED = h2.events.StreamEnded
_RESET = h2.events.StreamReset


class AsyncH2Connection(H2ConnectionBase):
    def __init__(self, origin: httpcore.Origin, stream: Any) -> None:
        # Until the server's SETTINGS arrive: one stream (httpcore's rule).
        stream = AsyncSharedStream(stream)
        super().__init__(origin, stream, AsyncBookkeepingLock(), AsyncSlots(1))
        self._read = AsyncH2Lock()
        self._write = AsyncH2Lock()

    # -- a request -------------------------------------------------------------

    async def handle_async_request(
        self, request: httpcore.Request
    ) -> httpcore.Response:
        if not self.can_handle_request(request.url.origin):
            raise RuntimeError(
                f"Attempted to send request to {request.url.origin} on connection "
                f"to {self._origin}"
            )
        if not self.is_available():
            raise httpcore.ConnectionNotAvailable()
        extensions = request.extensions
        if "trace" in extensions or logger.isEnabledFor(logging.DEBUG):
            return await self._traced_request(request)
        timeouts = extensions.get("timeout", {})
        await self._slots.acquire()
        stream = None
        try:
            stream, has_body = self._open(request)
            if has_body:
                await self._send_body(request, stream, timeouts)
            await self._flush(timeouts)
            event = await self._next_event(stream, timeouts)
            return self._response(request, stream, event)
        except BaseException as exc:
            with AsyncShieldCancellation():
                await self._stream_closed(stream, request, exc)
            raise self._mapped(stream, exc) from None

    async def _traced_request(self, request: httpcore.Request) -> httpcore.Response:
        """The same steps, each in httpcore's trace event."""
        timeouts = request.extensions.get("timeout", {})
        await self._slots.acquire()
        stream = None
        kwargs: dict[str, Any] = {"request": request}
        try:
            if not self._requests:
                async with Trace("send_connection_init", logger, request, kwargs):
                    pass
            async with Trace("send_request_headers", logger, request, kwargs):
                stream, has_body = self._open(request)
                kwargs["stream_id"] = stream.id
                if not has_body:
                    await self._flush(timeouts)
            async with Trace("send_request_body", logger, request, kwargs):
                if has_body:
                    await self._send_body(request, stream, timeouts)
                    await self._flush(timeouts)
            async with Trace(
                "receive_response_headers", logger, request, kwargs
            ) as trace:
                event = await self._next_event(stream, timeouts)
                response = self._response(request, stream, event)
                trace.return_value = (response.status, response.headers)
            return response
        except BaseException as exc:
            with AsyncShieldCancellation():
                async with Trace("response_closed", logger, request, kwargs):
                    await self._stream_closed(stream, request, exc)
            raise self._mapped(stream, exc) from None

    async def _send_body(
        self, request: httpcore.Request, stream: Stream, timeouts: Any
    ) -> None:
        """Queue the body as DATA frames as the flow-control window allows;
        written with the HEADERS when it fits in the window."""
        body = request.stream.__aiter__()  # type: ignore[union-attr]
        try:
            complete = await self._send_chunks(body, stream, timeouts)
        except BaseException:
            # Given up midway: the body's generator is closed now, not left
            # to the garbage collector (trio warns of it then).
            await self._close_body(body)
            raise
        if complete:
            with self._state:
                self._h2.end_stream(stream.id)
        else:
            await self._close_body(body)

    async def _send_chunks(self, body: Any, stream: Stream, timeouts: Any) -> bool:
        """Whether the body went whole: a server that answered early may
        reset the stream (RFC 9113 §8.1), the rest of the body unwanted."""
        stream_id = stream.id
        async for data in body:
            while data:
                if stream.events and _reset_in(stream):
                    return False
                with self._state:
                    flow = min(
                        self._h2.local_flow_control_window(stream_id),
                        self._h2.max_outbound_frame_size,
                    )
                    if flow:
                        chunk, data = data[:flow], data[flow:]
                        self._h2.send_data(stream_id, chunk)
                        continue
                await self._flush(timeouts)
                await self._wait_for_flow(stream_id, timeouts)
        return True

    async def _close_body(self, body: Any) -> None:
        close = getattr(body, "aclose", None)
        if close is not None:
            with AsyncShieldCancellation(), suppress(Exception):
                await close()

    async def _wait_for_flow(self, stream_id: int, timeouts: Any) -> None:
        await AsyncLockWithin(self._read, timeouts.get("read"))
        try:
            # Windows open only as frames are read, under this lock: another
            # stream's read may have opened it while this one wrote.
            with self._state:
                if self._h2.local_flow_control_window(stream_id):
                    return
            await self._read_some(timeouts)
        finally:
            self._read.release()

    def _response(
        self, request: httpcore.Request, stream: Stream, event: Any
    ) -> httpcore.Response:
        if not isinstance(event, _RESPONSE):
            raise httpcore.RemoteProtocolError(f"unexpected {event!r}")
        status, headers = response_head(event)
        return httpcore.Response(
            status=status,
            headers=headers,
            content=AsyncH2ResponseStream(self, request, stream),
            extensions={
                "http_version": b"HTTP/2",
                "network_stream": self._network_stream,
                "stream_id": stream.id,
            },
        )

    # -- reading ---------------------------------------------------------------

    async def _next_event(self, stream: Stream, timeouts: Any) -> Any:
        events = stream.events
        while not events:
            await AsyncLockWithin(self._read, timeouts.get("read"))
            try:
                if not events:
                    await self._read_some(timeouts)
            finally:
                self._read.release()
        event = events.popleft()
        if isinstance(event, _RESET):
            raise reset_error(event)
        if isinstance(event, ConnectionError_):
            raise event
        return event

    async def _acknowledge(self, event: Any, stream_id: int, timeouts: Any) -> None:
        if self._acknowledged(event, stream_id):
            await self._flush(timeouts)

    async def _read_some(self, timeouts: Any) -> None:
        """Read once from the network, under ``_read``; hand out the events."""
        if self._error is not None:
            raise self._failure()
        try:
            data = await self._network_stream.read(READ_NUM_BYTES, timeouts.get("read"))
        except httpcore.TimeoutException:
            # This stream's timeout, maybe not the others': a read timed out
            # (or cancelled) consumed nothing, the connection goes on.
            raise
        except Exception as exc:
            self._fail(exc)
            raise self._failure() from None
        try:
            pending = self._feed(data)
        except Exception as exc:
            self._fail(exc)
            raise self._failure() from None
        if pending:  # a PING or SETTINGS ack, a WINDOW_UPDATE
            await self._flush(timeouts)

    # -- writing ---------------------------------------------------------------

    async def _flush(self, timeouts: Any) -> None:
        """Write all h2 queued, if a writer before did not already."""
        async with self._write:
            with self._state:
                data = self._h2.take()
            if not data:
                return
            if self._error is not None:
                raise self._failure()
            try:
                await self._network_stream.write(data, timeouts.get("write"))
            except Exception as exc:
                self._fail(exc)
                raise
            except BaseException:
                # Cancelled: maybe half a frame went out. The streams already
                # on it go on (or fail with the server's answer to it).
                self._broken = True
                raise

    # -- the end of a stream ---------------------------------------------------

    async def _stream_closed(
        self,
        stream: Stream | None,
        request: httpcore.Request,
        exc: BaseException | None = None,
    ) -> None:
        """Release the stream's slot; reset the stream if the server may
        still be sending it (cancelled, or its body left unread)."""
        if self._release(stream, request):
            with suppress(Exception):  # the reset is best effort
                await self._flush(request.extensions.get("timeout", {}))

    # -- the idle connection ---------------------------------------------------

    async def read_goaway(self) -> bool:
        """The server hung up on this idle connection: did it say GOAWAY
        first (nginx and Node do, Hypercorn does not)? Reads what is
        waiting, once; the connection is closed next."""
        if self.goaway is None and self._error is None:
            try:
                async with self._read:
                    await self._read_some(
                        {"read": _IDLE_READ_TIMEOUT, "write": _IDLE_READ_TIMEOUT}
                    )
            except Exception:  # reset, timeout, bad frames: no GOAWAY read
                pass
        return self.goaway is not None

    async def serve_idle(self) -> bool:
        """Frames arrived on this idle connection (``frames_waiting``, set by
        the pool's stale check): read them, acknowledge a PING or SETTINGS,
        note a GOAWAY. True when the connection turned out to be ending (a
        GOAWAY, a close, bad frames): the pool closes it then."""
        self.frames_waiting = False
        if not self.is_available():
            return True
        timeouts = {"read": _IDLE_READ_TIMEOUT, "write": _IDLE_READ_TIMEOUT}
        async with self._read:
            if self._streams:  # taken meanwhile: its reads serve the frames
                return False
            try:
                data = await self._network_stream.read(
                    READ_NUM_BYTES, _IDLE_READ_TIMEOUT
                )
                pending = self._feed(data)
            except httpcore.TimeoutException:
                return False  # not a whole TLS record yet: the next look
            except Exception as exc:
                self._fail(exc)
                return True
        if pending:
            with suppress(Exception):  # a failed write is recorded: ended
                await self._flush(timeouts)
        return not self.is_available()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._network_stream.aclose()

    async def __aenter__(self) -> AsyncH2Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _reset_in(stream: Stream) -> bool:
    return any(isinstance(event, _RESET) for event in stream.events)


class AsyncH2ResponseStream:
    """A response body: the stream's DATA frames, acknowledged as read."""

    def __init__(
        self, connection: AsyncH2Connection, request: httpcore.Request, stream: Stream
    ) -> None:
        self._connection = connection
        self._request = request
        self._stream = stream
        self._closed = False

    async def __aiter__(self) -> Any:
        connection = self._connection
        request = self._request
        stream = self._stream
        timeouts = request.extensions.get("timeout", {})
        tracing = "trace" in request.extensions or logger.isEnabledFor(logging.DEBUG)
        kwargs = {"request": request, "stream_id": stream.id}
        try:
            while True:
                if tracing:
                    async with Trace("receive_response_body", logger, request, kwargs):
                        event = await connection._next_event(stream, timeouts)
                else:
                    event = await connection._next_event(stream, timeouts)
                if isinstance(event, _DATA):
                    await connection._acknowledge(event, stream.id, timeouts)
                    yield event.data
                elif isinstance(event, _ENDED):
                    stream.ended = True
                    break
        except BaseException as exc:
            with AsyncShieldCancellation():
                await self.aclose()
            raise connection._mapped(stream, exc) from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        request = self._request
        if "trace" in request.extensions or logger.isEnabledFor(logging.DEBUG):
            kwargs = {"stream_id": self._stream.id}
            async with Trace("response_closed", logger, request, kwargs):
                await self._connection._stream_closed(self._stream, request)
        else:
            await self._connection._stream_closed(self._stream, request)
