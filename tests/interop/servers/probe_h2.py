"""Raw HTTP/2 probes of a running server (the ``h2`` package over a blocking
TLS socket): what it negotiates, what its SETTINGS say, and how it ends a
connection -- at the idle timeout and on a graceful shutdown, with or
without a GOAWAY. Shared by the suite and ``scripts/server_table.py``;
every wait bounded.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

__all__ = [
    "Ending",
    "H2Probe",
    "measure_h2_idle_close",
    "measure_h2_request_limit",
    "measure_h2_shutdown",
]

IO_TIMEOUT = 5.0
SETTLE = 0.2
SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
_TIMESPEC = struct.Struct("@ll")


@dataclass
class Ending:
    """How the server ended a connection, as seen by the probe."""

    #: Seconds from the last response's end to the GOAWAY (None: none came).
    goaway_after: float | None = None
    last_stream_id: int | None = None
    error_code: str | None = None
    #: Seconds from the last response's end to EOF/reset (None: still open).
    closed_after: float | None = None
    #: Streams the server answered, reset or never answered after the
    #: ending began (for shutdowns with requests in flight).
    answered: list[int] = field(default_factory=list)
    reset: dict[int, str] = field(default_factory=dict)

    def describe_goaway(self) -> str:
        if self.goaway_after is None:
            return "no GOAWAY"
        return f"GOAWAY {self.error_code}, last-stream-id {self.last_stream_id}"


class H2Probe:
    """One HTTP/2 connection driven by hand."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext) -> None:
        tls.set_alpn_protocols(["h2", "http/1.1"])
        self.sock = StampedTLS(host, port, tls)
        self.alpn = self.sock.tls.selected_alpn_protocol()
        self.host = host
        self.conn = _GoawayTolerant(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self._flush()
        self.ending = Ending()
        self.done: set[int] = set()
        #: ``time.time()`` clock: when the last response's end arrived.
        self.last_end = time.time()
        self.closed = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Probe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def max_concurrent_streams(self) -> int | None:
        settings = self.conn.remote_settings
        code = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
        found: int | None = settings.get(code)
        return found

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, path: str) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", self.host),
            (":path", path),
        ]
        self.conn.send_headers(stream_id, headers, end_stream=True)
        self._flush()
        return stream_id

    def get(self, path: str) -> None:
        stream_id = self.send(path)
        self.pump(lambda: stream_id in self.done, IO_TIMEOUT)
        if stream_id not in self.done:
            raise ConnectionError(f"no response on stream {stream_id}")

    def pump(self, until: Callable[[], bool], bound: float) -> None:
        """Read and handle frames until ``until()`` or the connection ends
        or ``bound`` seconds pass."""
        deadline = time.monotonic() + bound
        while not until() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                data, stamp = self.sock.recv(left)
            except (TimeoutError, socket.timeout):
                return
            if not data:
                self.closed = True
                self.ending.closed_after = time.time() - self.last_end
                return
            self._handle(self.conn.receive_data(data), stamp)
            self._flush()

    def _handle(self, events: list[h2.events.Event], stamp: float) -> None:
        for event in events:
            if isinstance(event, h2.events.StreamEnded):
                self.done.add(event.stream_id)
                self.ending.answered.append(event.stream_id)
                self.last_end = stamp
            elif isinstance(event, h2.events.StreamReset):
                self.done.add(event.stream_id)
                self.ending.reset[event.stream_id] = _code(event.error_code)
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.ending.goaway_after = stamp - self.last_end
                self.ending.last_stream_id = event.last_stream_id
                self.ending.error_code = _code(event.error_code)

    def wait_for_end(self, bound: float) -> Ending:
        """Wait (at most ``bound`` s) for the server to close; what it sent."""
        self.ending.answered.clear()
        self.pump(lambda: False, bound)
        return self.ending


class StampedTLS:
    """TLS over a memory BIO on a plain socket, so each read carries the
    kernel's arrival time of its bytes (SO_TIMESTAMPNS, as in probe.py):
    an idle close is timed from when the response's end arrived, not from
    when this thread, maybe descheduled on a loaded machine, read it. (An
    ``ssl.SSLSocket`` cannot read ancillary data.) The close itself is seen
    from user space: late, never early."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext) -> None:
        self.raw = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        self.stamped = False
        if SO_TIMESTAMPNS is not None:
            try:
                self.raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.stamped = True
            except OSError:
                pass
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = tls.wrap_bio(self.incoming, self.outgoing, server_hostname=host)
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._receive(max(0.01, deadline - time.monotonic()))[0]:
                    raise ConnectionError("closed during the TLS handshake") from None
        self._flush()

    def close(self) -> None:
        self.raw.close()

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw.sendall(data)

    def _receive(self, bound: float) -> tuple[bytes, float]:
        """Raw bytes and their arrival time (b"" at EOF or a reset)."""
        self.raw.settimeout(bound)
        try:
            if not self.stamped:
                data = self.raw.recv(65536)
                return data, time.time()
            data, ancillary, _, _ = self.raw.recvmsg(65536, socket.CMSG_SPACE(16))
        except (ConnectionResetError, BrokenPipeError):
            return b"", time.time()
        stamp = time.time()
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                stamp = seconds + nanoseconds / 1e9
        if data:
            self.incoming.write(data)
        return data, stamp

    def recv(self, bound: float) -> tuple[bytes, float]:
        """Decrypted bytes and when they arrived (b"": the peer closed);
        ``socket.timeout`` after ``bound`` seconds without any."""
        deadline = time.monotonic() + bound
        while True:
            try:
                return self.tls.read(65536), self._last_stamp
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b"", time.time()
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no data")
            raw, self._last_stamp = self._receive(left)
            if not raw:
                return b"", time.time()
            self._flush()

    _last_stamp = 0.0


class _GoawayTolerant(h2.connection.H2Connection):
    """h2 closes its connection state machine on GOAWAY and then rejects
    the frames of streams at or below last-stream-id, which the server still
    answers (RFC 9113 section 6.8): keep the state so they are read."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return result


def _code(code: object) -> str:
    return getattr(code, "name", str(code))


def measure_h2_idle_close(
    host: str, port: int, tls: ssl.SSLContext, bound: float
) -> tuple[str | None, int | None, Ending]:
    """One request, then idle: the ALPN choice, the server's
    MAX_CONCURRENT_STREAMS and how it ended the idle connection."""
    with H2Probe(host, port, tls) as probe:
        if probe.alpn != "h2":
            return probe.alpn, None, Ending()
        probe.get("/probe/h2-idle")
        return probe.alpn, probe.max_concurrent_streams, probe.wait_for_end(bound)


def measure_h2_shutdown(
    host: str,
    port: int,
    tls: ssl.SSLContext,
    shut_down: Callable[[], None],
    bound: float,
    in_flight: int = 0,
) -> Ending:
    """One answered request, ``in_flight`` more sent, then ``shut_down()``:
    what the server sends on the connection until it closes."""
    with H2Probe(host, port, tls) as probe:
        probe.get("/probe/h2-shutdown")
        for index in range(in_flight):
            probe.send(f"/probe/h2-shutdown/{index}")
        shut_down()
        return probe.wait_for_end(bound)


def measure_h2_request_limit(
    host: str, port: int, tls: ssl.SSLContext, requests: int, wait: float = 1.0
) -> tuple[int, Ending]:
    """GETs one after another on one connection (each waited for at most
    ``wait`` s) until a GOAWAY, a close or ``requests`` of them: how many
    were sent, and the ending (``answered`` lists every answered stream)."""
    with H2Probe(host, port, tls) as probe:
        sent = 0
        while sent < requests:
            stream_id = probe.send(f"/probe/h2-limit/{sent}")
            sent += 1
            probe.pump(lambda sid=stream_id: sid in probe.done, wait)
            # A GOAWAY right after a response may come in a later segment.
            probe.pump(lambda: probe.ending.goaway_after is not None, SETTLE)
            if probe.ending.goaway_after is not None or stream_id not in probe.done:
                break
        if not probe.closed:
            probe.pump(lambda: False, wait)
        return sent, probe.ending
