"""The sans-I/O half of hintpool's HTTP/2 connection: its bookkeeping.

``hintpool._async.http2.AsyncH2Connection`` (and the generated sync one)
add the I/O; everything here runs under the connection's state lock or
touches only what the pool reads. See that module for how it works.
"""

from __future__ import annotations

import copy
from contextlib import suppress
from typing import Any

import h2.events
import h2.exceptions
import httpcore

from ._h2frames import (
    CANCEL,
    LOCAL_MAX_STREAMS,
    NO_ERROR,
    H2State,
    Stream,
    refused_stream,
    request_headers,
)

__all__ = ["ConnectionError_", "H2ConnectionBase"]

_RESET = h2.events.StreamReset
#: Failures that mean "the server closed the connection under us".
_STALE = (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError)
_STREAM_EVENTS = (
    h2.events.ResponseReceived,
    h2.events.DataReceived,
    h2.events.StreamEnded,
    _RESET,
    h2.events.TrailersReceived,
)


class ConnectionError_(Exception):
    """Queued to the streams an error GOAWAY ends."""


class H2ConnectionBase:
    """What the async and the sync connection share: the bookkeeping."""

    def __init__(
        self, origin: httpcore.Origin, stream: Any, state_lock: Any, slots: Any
    ) -> None:
        self._origin = origin
        self._network_stream = stream
        self._h2 = H2State()
        #: Around every call into h2's state (see the module's docstring).
        self._state = state_lock
        # A lowered limit is owed: the next streams to end keep their slot.
        self._slots = slots
        self._slots_open = 1
        self._slots_owed = 0
        self._streams: dict[int, Stream] = {}
        self._error: Exception | None = None
        #: A write was cancelled midway: no new stream (the others go on).
        self._broken = False
        self._closed = False
        self._ids_used_up = False
        self._requests = 0
        self.goaway: h2.events.ConnectionTerminated | None = None
        #: The stream limit to assume until the server's SETTINGS arrive
        #: (set by the pool: what the origin announced last); None: 100.
        self.assumed_streams: int | None = None
        self._settings_seen = False
        #: Streams (then requests, by id) the server closed on, without
        #: GOAWAY, before any frame of their response.
        self._unanswered: set[int] = set()
        #: Set by the pool once the close such a stream met is counted.
        self.close_counted = False
        #: Set by the pool's stale check: the idle socket holds frames, but
        #: the server has not closed (a PING, a SETTINGS): see serve_idle().
        self.frames_waiting = False

    @property
    def max_streams(self) -> int:
        """Streams at once: the server's limit within ours (100); at least 1
        (a server announcing 0 refuses streams itself)."""
        if self._settings_seen or self.assumed_streams is None:
            remote = self._h2.remote_settings.max_concurrent_streams
        else:
            remote = self.assumed_streams
        return max(1, min(remote, LOCAL_MAX_STREAMS))

    @property
    def announced_streams(self) -> int | None:
        """``max_streams`` once the server's SETTINGS arrived, else None."""
        return self.max_streams if self._settings_seen else None

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return origin == self._origin

    def is_available(self) -> bool:
        return not (
            self._closed
            or self._error is not None
            or self._broken
            or self.goaway is not None
            or self._ids_used_up
        )

    def has_expired(self) -> bool:
        return False  # idle expiry is the pool's (hintpool._policy)

    def is_idle(self) -> bool:
        return not self._streams and not self._closed

    def is_closed(self) -> bool:
        return self._closed

    def info(self) -> str:
        state = "CLOSED" if self._closed else "ACTIVE" if self._streams else "IDLE"
        origin = str(self._origin)
        return f"{origin!r}, HTTP/2, {state}, Request Count: {self._requests}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.info()}]>"

    def unanswered(self, request: httpcore.Request) -> bool:
        """Whether ``request`` failed because the server closed without
        GOAWAY before any frame of its response (asked once)."""
        key = id(request)
        with self._state:
            if key in self._unanswered:
                self._unanswered.discard(key)
                return True
        return False

    def _open(self, request: httpcore.Request) -> tuple[Stream, bool]:
        """Open the stream and queue its HEADERS. Taking the id and queueing
        the HEADERS in one locked step sends ids in order (the server ends
        the connection otherwise)."""
        headers, has_body = request_headers(request)
        with self._state:
            if not self.is_available():
                raise httpcore.ConnectionNotAvailable()
            h2_state = self._h2
            try:
                stream_id = h2_state.get_next_available_stream_id()
            except h2.exceptions.NoAvailableStreamIDError:
                self._ids_used_up = True
                raise httpcore.ConnectionNotAvailable() from None
            h2_state.send_headers(stream_id, headers, end_stream=not has_body)
            h2_state.outbound += 1
            stream = self._streams[stream_id] = Stream(stream_id)
            self._requests += 1
            h2_state.increment_flow_control_window(2**24, stream_id=stream_id)
        return stream, has_body

    def _feed(self, data: bytes) -> bool:
        """Hand what was read to h2 and its events to the streams; whether
        h2 has frames to send in answer."""
        if not data:
            raise httpcore.RemoteProtocolError("Server disconnected")
        self.frames_waiting = False  # read: nothing left for serve_idle()
        with self._state:
            events = self._h2.receive_data(data)
            self._dispatch(events)
            return self._h2.pending()

    def _dispatch(self, events: list[Any]) -> None:
        streams = self._streams
        for event in events:
            if isinstance(event, _STREAM_EVENTS):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.events.append(event)
                    stream.answered = True
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self._settings_changed()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._goaway(event)

    def _settings_changed(self) -> None:
        self._settings_seen = True
        limit = self.max_streams
        while self._slots_open < limit:
            self._slots_open += 1
            if self._slots_owed:
                self._slots_owed -= 1
            else:
                self._slots.release()
        while self._slots_open > limit:
            self._slots_open -= 1
            self._slots_owed += 1

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.goaway = event
        last = event.last_stream_id or 0
        for stream_id, stream in self._streams.items():
            if stream_id > last:
                stream.events.append(refused_stream(stream_id))
            elif event.error_code != NO_ERROR:
                stream.events.append(ConnectionError_(event))

    def _fail(self, exc: Exception) -> None:
        """The network (or the server's HTTP/2) failed: so does every stream
        on it; recorded once."""
        with self._state:
            if self._error is not None:
                return
            if isinstance(exc, h2.exceptions.ProtocolError):
                # The server broke HTTP/2, or never spoke it (HTTP/1.1 after
                # ALPN chose h2).
                self._error = httpcore.RemoteProtocolError(
                    f"invalid HTTP/2 from the server: {exc}"
                )
                return
            self._error = exc
            if self.goaway is None and isinstance(exc, _STALE):
                for stream in self._streams.values():
                    if not stream.answered:
                        self._unanswered.add(id(stream))

    def _failure(self) -> Exception:
        """The recorded failure, a fresh copy for each stream it ends: one
        exception object raised by many tasks or threads would gather all
        their tracebacks (and be written to by all of them at once)."""
        error = self._error
        assert error is not None
        fresh = copy.copy(error)
        fresh.__cause__ = error.__cause__
        return fresh

    def _mapped(self, stream: Stream | None, exc: BaseException) -> BaseException:
        if not isinstance(exc, Exception):
            return exc  # cancellation
        if isinstance(exc, ConnectionError_):
            return httpcore.RemoteProtocolError(exc.args[0])
        if isinstance(exc, h2.exceptions.TooManyStreamsError):
            return httpcore.ConnectionNotAvailable()  # a lowered stream limit
        if isinstance(exc, h2.exceptions.ProtocolError):
            return httpcore.RemoteProtocolError(f"invalid HTTP/2: {exc}")
        goaway = self.goaway
        if (
            goaway is not None
            and isinstance(exc, (httpcore.RemoteProtocolError, httpcore.NetworkError))
            and (stream is None or stream.id > (goaway.last_stream_id or 0))
        ):
            return httpcore.ConnectionNotAvailable()
        return exc

    def _release(self, stream: Stream | None, request: httpcore.Request) -> bool:
        """The stream ended: its slot back, reset if the server may still
        be sending it, its unread DATA acknowledged (True: write what h2
        queued)."""
        reset = False
        with self._state:
            if stream is not None:
                if self._streams.pop(stream.id, None) is None:
                    return False  # released already
                if id(stream) in self._unanswered:
                    self._unanswered.discard(id(stream))
                    self._unanswered.add(id(request))
                usable = self._error is None and not self._closed
                reset = not stream.ended and usable
                if reset:
                    # A stream h2 closed already needs no reset.
                    with suppress(h2.exceptions.ProtocolError):
                        self._h2.reset_stream(stream.id, CANCEL)
                if usable and self._unread(stream):
                    reset = True  # a WINDOW_UPDATE to write
                self._h2.forget(stream.id)
            if self._slots_owed:
                self._slots_owed -= 1
            else:
                self._slots.release()
        return reset

    def _unread(self, stream: Stream) -> bool:
        """Give back the connection's window for the DATA read for ``stream``
        but never consumed: else each response closed unread would shrink it
        for good (True: h2 queued a WINDOW_UPDATE)."""
        unread = sum(
            event.flow_controlled_length or 0
            for event in stream.events
            if isinstance(event, h2.events.DataReceived)
        )
        stream.events.clear()
        if not unread:
            return False
        self._h2.acknowledge_received_data(unread, stream.id)
        return self._h2.pending()

    def _acknowledged(self, event: Any, stream_id: int) -> bool:
        """Give the flow-control window back; h2 queues a WINDOW_UPDATE only
        once enough was read (True: write it), so most bodies cost none."""
        with self._state:
            self._h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
            return self._h2.pending()
