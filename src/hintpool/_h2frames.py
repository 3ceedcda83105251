"""The sans-I/O half of hintpool's HTTP/2 connection (``_async/http2.py``).

What does not differ between the async and the sync connection: h2's state
object as the pool needs it, the request's header block, and the errors a
stream's end maps to. Nothing here does I/O or takes a lock.

* h2 closes its state machine on any GOAWAY, and a graceful one (``NO_ERROR``)
  still promises answers to the streams up to its ``last_stream_id``:
  :class:`H2State` keeps the machine open for them (the connection refuses
  new streams itself), and keeps the frames it queued, which h2 would drop
  (the END_STREAM of a stream the server is still to answer among them).
* A stream the server did not process -- above ``last_stream_id``, refused
  with ``REFUSED_STREAM``, over a lowered stream limit, never sent -- fails
  with httpcore's ``ConnectionNotAvailable``: RFC 9113 §6.8 and §8.7 say it
  is safe to send again, whatever its method, and the pool does.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import httpcore

__all__ = [
    "H2State",
    "Stream",
    "refused_stream",
    "request_headers",
    "reset_error",
    "response_head",
]

NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM
CANCEL = h2.errors.ErrorCodes.CANCEL
#: httpcore's own stream limit, announced to the server in our SETTINGS.
LOCAL_MAX_STREAMS = 100
#: Connection-specific fields (RFC 9113 §8.2.2), and those HTTP/2 spells
#: otherwise (``host`` is ``:authority``; no chunked encoding).
_DROPPED = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"upgrade",
        b"transfer-encoding",
    }
)
_CONFIG = h2.config.H2Configuration(
    client_side=True, validate_inbound_headers=False, normalize_outbound_headers=False
)


class _GoawayTolerantMachine(h2.connection.H2ConnectionStateMachine):
    def process_input(self, input_: Any) -> Any:
        if input_ is h2.connection.ConnectionInputs.RECV_GOAWAY:
            return []
        return super().process_input(input_)


class H2State(h2.connection.H2Connection):
    """h2's client state, with the preface and settings httpcore sends.

    h2 counts the open outbound streams for every new one by walking all the
    streams it knows (and forgets the closed ones as it goes): at 100
    concurrent requests that walk was the largest single cost per request.
    Here the connection counts them (``outbound``) and hands back each
    stream as it ends (:meth:`forget`).
    """

    def __init__(self) -> None:
        super().__init__(config=_CONFIG)
        self.outbound = 0
        self.state_machine = _GoawayTolerantMachine()
        self.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: LOCAL_MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        # Some servers balk at a setting the original RFC did not define.
        del self.local_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL]
        self.initiate_connection()
        self.increment_flow_control_window(2**24)

    @property
    def open_outbound_streams(self) -> int:
        return self.outbound

    def forget(self, stream_id: int) -> None:
        """A stream of ours ended: no longer counted; dropped once closed,
        as h2's own walk would drop it."""
        self.outbound -= 1
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by

    def clear_outbound_data_buffer(self) -> None:
        """Kept: after a graceful GOAWAY the streams below it go on."""

    def pending(self) -> bool:
        return bool(self._data_to_send)

    def take(self) -> bytes:
        data = bytes(self._data_to_send)
        del self._data_to_send[:]
        return data


class Stream:
    """One request's stream: the events read for it, in order."""

    __slots__ = ("answered", "ended", "events", "id")

    def __init__(self, stream_id: int) -> None:
        self.id = stream_id
        self.events: deque[Any] = deque()
        #: A frame of the response arrived (the stale-retry rule needs none).
        self.answered = False
        self.ended = False


def request_headers(request: httpcore.Request) -> tuple[list[Any], bool]:
    """The header block of ``request`` and whether a body follows it."""
    url = request.url
    authority = None
    has_body = False
    fields = []
    for name, value in request.headers:
        lower = name.lower()
        if lower in _DROPPED:
            if lower == b"host":
                authority = value
            elif lower == b"transfer-encoding":
                has_body = True
            continue
        if lower == b"content-length":
            has_body = True
        fields.append((lower, value))
    if authority is None:
        authority = url.host if url.port is None else b"%s:%d" % (url.host, url.port)
    return [
        (b":method", request.method),
        (b":authority", authority),
        (b":scheme", url.scheme),
        (b":path", url.target),
        *fields,
    ], has_body


def response_head(event: Any) -> tuple[int, list[tuple[bytes, bytes]]]:
    status = 200
    headers = []
    for name, value in event.headers:
        if name == b":status":
            status = int(value.decode("ascii", errors="ignore"))
        elif not name.startswith(b":"):
            headers.append((name, value))
    return status, headers


def reset_error(event: Any) -> Exception:
    """What a stream reset by the server raises."""
    if event.error_code == REFUSED:
        return httpcore.ConnectionNotAvailable()
    return httpcore.RemoteProtocolError(event)


def refused_stream(stream_id: int) -> h2.events.StreamReset:
    """A stream a graceful GOAWAY left unprocessed: as if refused."""
    try:
        event = h2.events.StreamReset(stream_id=stream_id)  # h2 >= 4.2
    except TypeError:  # pragma: no cover - older h2: no dataclass fields
        event = h2.events.StreamReset()  # type: ignore[call-arg]
        event.stream_id = stream_id
    event.error_code = REFUSED
    return event
