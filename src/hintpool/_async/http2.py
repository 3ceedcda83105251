"""httpcore's HTTP/2 connection, taught to end well on GOAWAY.

httpcore's ``AsyncHTTP2Connection`` (the ``h2`` package inside) carries the
streams; this subclass changes what happens when the server says GOAWAY:

* Graceful GOAWAY (``NO_ERROR``): the server still answers the streams up
  to its ``last_stream_id``. h2 closes its state machine on any GOAWAY and
  httpcore then fails every stream still reading, so the event is kept out
  of both: the connection stays readable for the streams the server
  promised to finish, no new stream is opened on it, and the streams above
  ``last_stream_id`` are refused at once.
* A stream the server did not process -- above ``last_stream_id``, never
  sent, or reset with ``REFUSED_STREAM`` -- fails with httpcore's
  ``ConnectionNotAvailable``: RFC 9113 §6.8 and §8.7 say it is safe to send
  again, whatever its method, and the pool does.

``goaway`` is the last GOAWAY received (None before one). Frames h2
rejects fail the streams with ``RemoteProtocolError`` (httpcore would let
h2's own exception escape from a response body).
"""

from __future__ import annotations

from typing import Any

import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import httpcore

from .._synchronization import AsyncH2Lock, AsyncH2Semaphore, AsyncStreamOrder

__all__ = ["AsyncH2Connection"]

_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM
#: Seconds to wait for the rest of what an idle connection's server sent
#: before closing (its socket polled readable: the bytes are there).
_IDLE_READ_TIMEOUT = 0.1
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"upgrade"})


class _GoawayTolerantMachine(h2.connection.H2ConnectionStateMachine):
    """h2's connection state machine, still open after a GOAWAY: frames for
    the streams the server finishes keep coming (the connection object
    refuses new streams itself)."""

    def process_input(self, input_: Any) -> Any:
        if input_ is h2.connection.ConnectionInputs.RECV_GOAWAY:
            return []
        return super().process_input(input_)


class AsyncH2Connection(httpcore.AsyncHTTP2Connection):
    def __init__(self, origin: httpcore.Origin, stream: Any) -> None:
        # Idle expiry is the pool's (hintpool._policy), not httpcore's.
        super().__init__(origin=origin, stream=stream, keepalive_expiry=None)
        self._h2_state.state_machine = _GoawayTolerantMachine()
        self._init_lock = AsyncH2Lock()
        self._state_lock = AsyncH2Lock()
        self._read_lock = AsyncH2Lock()
        self._write_lock = AsyncH2Lock()
        self._order = AsyncStreamOrder()
        self._keep_stream_ids_in_order()
        self._take_outgoing_data_in_place()
        self.goaway: h2.events.ConnectionTerminated | None = None
        #: The stream limit to assume until the server's SETTINGS arrive
        #: (set by the pool: what the origin announced last); None: 100.
        self.assumed_streams: int | None = None
        self._settings_seen = False
        #: id(request) -> its stream, while the request is being sent.
        self._stream_of: dict[int, int] = {}

    def _keep_stream_ids_in_order(self) -> None:
        """h2 hands out the next stream id without reserving it: two
        requests starting at once could get the same one, or send theirs
        out of order (the server then ends the connection). Hold
        ``_order`` from one to the other."""
        state = self._h2_state
        next_id = state.get_next_available_stream_id
        send_headers = state.send_headers
        order = self._order

        def allocate() -> int:
            order.acquire()
            try:
                return next_id()
            except BaseException:
                order.release()
                raise

        def send(*args: Any, **kwargs: Any) -> None:
            try:
                send_headers(*args, **kwargs)
            finally:
                order.release()

        setattr(state, "get_next_available_stream_id", allocate)  # noqa: B010
        setattr(state, "send_headers", send)  # noqa: B010

    def _take_outgoing_data_in_place(self) -> None:
        """Keep every frame h2 queued until it is written.

        h2's ``data_to_send`` copies its buffer, then replaces it with an
        empty one; threads sharing the connection queue frames outside
        httpcore's write lock, and one queued in between (the HEADERS of the
        next stream) was lost. h2 also empties the buffer when a GOAWAY
        arrives, though after a graceful one the streams read on. Either
        way the server then met DATA on a stream it never saw and ended
        the connection for every stream on it. Frames are appended in
        place, so taking out just the bytes copied keeps the others.
        """
        state = self._h2_state

        def data_to_send(amount: int | None = None) -> bytes:
            buffer = state._data_to_send
            data = bytes(buffer if amount is None else buffer[:amount])
            del buffer[: len(data)]
            return data

        setattr(state, "data_to_send", data_to_send)  # noqa: B010
        setattr(state, "clear_outbound_data_buffer", lambda: None)  # noqa: B010

    # httpcore creates its stream semaphore on the first request; the
    # property swaps in one that does not yield when free (see AsyncH2Lock).
    @property
    def _max_streams_semaphore(self) -> Any:
        return self._streams

    @_max_streams_semaphore.setter
    def _max_streams_semaphore(self, semaphore: Any) -> None:
        self._streams = AsyncH2Semaphore(
            self._h2_state.local_settings.max_concurrent_streams
        )

    @property
    def max_streams(self) -> int:
        """Streams at once: the server's limit within httpcore's own (100);
        at least 1 (a server announcing 0 refuses streams itself)."""
        local = self._h2_state.local_settings.max_concurrent_streams
        if self._settings_seen or self.assumed_streams is None:
            remote = self._h2_state.remote_settings.max_concurrent_streams
        else:
            remote = self.assumed_streams
        return max(1, min(remote, local))

    @property
    def announced_streams(self) -> int | None:
        """``max_streams`` once the server's SETTINGS arrived, else None."""
        return self.max_streams if self._settings_seen else None

    async def _receive_remote_settings_change(
        self, event: h2.events.RemoteSettingsChanged
    ) -> None:
        self._settings_seen = True
        await super()._receive_remote_settings_change(event)

    def is_available(self) -> bool:
        return self.goaway is None and super().is_available()

    async def handle_async_request(
        self, request: httpcore.Request
    ) -> httpcore.Response:
        try:
            return await super().handle_async_request(request)
        except (
            httpcore.RemoteProtocolError,
            httpcore.LocalProtocolError,
            httpcore.NetworkError,
        ) as exc:
            if self._unprocessed(request, exc):
                raise httpcore.ConnectionNotAvailable() from exc
            raise
        finally:
            self._order.release()  # if an error came between id and HEADERS
            self._stream_of.pop(id(request), None)

    def _unprocessed(self, request: httpcore.Request, exc: Exception) -> bool:
        event = exc.args[0] if exc.args else None
        if isinstance(event, h2.events.StreamReset):
            return event.error_code == _REFUSED
        if isinstance(event, h2.exceptions.TooManyStreamsError):
            return True  # the server lowered its stream limit (even to 0)
        goaway = self.goaway
        if goaway is None:
            return False
        # httpcore's own check misses last_stream_id 0 (nothing processed)
        # and a request whose headers never went out.
        stream_id = self._stream_of.get(id(request))
        return stream_id is None or stream_id > (goaway.last_stream_id or 0)

    async def _send_request_headers(
        self, request: httpcore.Request, stream_id: int
    ) -> None:
        if self.goaway is not None:
            raise httpcore.ConnectionNotAvailable()
        self._stream_of[id(request)] = stream_id
        headers = request.headers
        if any(name.lower() in _HOP_BY_HOP for name, _ in headers):
            # The pool asks HTTP/1.1 servers for their Keep-Alive hint;
            # HTTP/2 forbids connection-specific fields (RFC 9113 §8.2.2).
            request.headers = [h for h in headers if h[0].lower() not in _HOP_BY_HOP]
        await super()._send_request_headers(request=request, stream_id=stream_id)

    async def _read_incoming_data(
        self, request: httpcore.Request
    ) -> list[h2.events.Event]:
        try:
            events = await super()._read_incoming_data(request)
        except h2.exceptions.ProtocolError as exc:
            # The server broke HTTP/2 (or never spoke it: an HTTP/1.1 answer
            # after ALPN chose h2). Every stream on it fails the same way.
            error = httpcore.RemoteProtocolError(
                f"invalid HTTP/2 from the server: {exc}"
            )
            self._read_exception = error
            self._connection_error = True
            raise error from exc
        kept = []
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
                if event.error_code == _NO_ERROR:
                    self._refuse_above(event.last_stream_id or 0)
                    continue
            kept.append(event)
        return kept

    async def read_goaway(self) -> bool:
        """The server hung up on this idle connection: did it say GOAWAY
        first (nginx and Node do, Hypercorn does not)? Reads what is
        waiting, once; the connection is closed next."""
        if self.goaway is None:
            try:
                data = await self._network_stream.read(
                    self.READ_NUM_BYTES, _IDLE_READ_TIMEOUT
                )
                for event in self._h2_state.receive_data(data):
                    if isinstance(event, h2.events.ConnectionTerminated):
                        self.goaway = event
            except Exception:  # reset, timeout, bad frames: no GOAWAY read
                return False
        return self.goaway is not None

    def _refuse_above(self, last: int) -> None:
        """After a graceful GOAWAY the streams up to ``last`` read on; the
        reader of any other raises at once."""
        for stream_id, pending in self._events.items():
            if stream_id > last:
                pending.append(_refused_stream(stream_id))


def _refused_stream(stream_id: int) -> h2.events.StreamReset:
    try:
        event = h2.events.StreamReset(stream_id=stream_id)  # h2 >= 4.2
    except TypeError:  # pragma: no cover - older h2: no dataclass fields
        event = h2.events.StreamReset()  # type: ignore[call-arg]
        event.stream_id = stream_id
    event.error_code = _REFUSED
    return event
