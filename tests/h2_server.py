"""A scripted HTTP/2 server on the ``h2`` package, for the GOAWAY cases.

One thread accepts; one thread per connection runs h2's server side over a
blocking socket (TLS with a trustme certificate offering h2 by ALPN, or
plain for prior knowledge). Every socket is closed by ``stop()``.

Behaviour, set on the instance before the requests:

* ``max_streams``: the SETTINGS_MAX_CONCURRENT_STREAMS announced.
* ``hold``: responses wait until this many requests are open on the
  connection (or ``hold_timeout`` passed): proves that they shared it.
* ``goaway_after``: on each connection (the first ``goaway_connections``
  ones if set), once this many requests arrived,
  send GOAWAY with the last of them as ``last_stream_id`` (``goaway_last``
  overrides it; ``goaway_code`` is the error code), answer the streams up
  to it, then close. Later requests on it are left unanswered.
* ``silent_close_at``: when the request of this number (counting from 1,
  all connections) arrives, its connection is closed without an answer
  or a GOAWAY: Hypercorn's idle close crossing a request.
* ``ping_idle()``: every connection sends a PING now (``pings_acked``
  counts the acks); ``settings_idle()`` sends a SETTINGS frame.
* ``resets_received`` counts the streams the client reset (those are not
  answered).
* ``answer_early``: a request is answered 413 as its headers arrive, and
  its stream reset with ``NO_ERROR`` (the rest of its body is unwanted).
* ``body_size``: answers are padded with dots to this many bytes.
* ``refuse``: this many first requests (all connections) are reset with
  REFUSED_STREAM; ``reset_code`` resets every request with that code.

``connections`` counts accepted connections; ``requests`` lists
``(connection number, stream id, method, path, body)`` in arrival order.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import types

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

#: Seconds a connection stays open after its GOAWAY'd streams are answered.
LINGER = 2.0


class H2Server:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.max_streams = 100
        self.hold = 1
        self.hold_timeout = 2.0
        self.goaway_after: int | None = None
        self.goaway_last: int | None = None
        self.goaway_code = h2.errors.ErrorCodes.NO_ERROR
        self.goaway_connections: int | None = None  # None: all of them
        self.refuse = 0
        self.body_size = 0
        self.answer_early = False
        self.silent_close_at: int | None = None
        self.resets_received = 0
        self.pings_acked = 0
        self.settings_acked = 0
        #: Frames to send on every connection at its next turn (then cleared).
        self.idle_frames: list[str] = []
        self.reset_code: int | None = None
        #: Answer in HTTP/1.1 although ALPN chose h2.
        self.speak_http1 = False
        #: Set by ``goaway_idle()``: every connection says GOAWAY and closes.
        self.ending = False
        self.connections = 0
        self.requests: list[tuple[int, int, str, str, bytes]] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._stopping = False

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> H2Server:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> H2Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def close_idle(self) -> None:
        """Close every connection now, without a GOAWAY (as Hypercorn's idle
        timeout does)."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def goaway_idle(self) -> None:
        """End every connection with GOAWAY ``NO_ERROR``, then close it (as
        nginx's and Node's idle timeouts do)."""
        self.ending = True

    def ping_idle(self) -> None:
        """Send a PING on every connection (as servers probing liveness do)."""
        self.idle_frames = ["ping"]

    def settings_idle(self) -> None:
        """Send a SETTINGS frame on every connection."""
        self.idle_frames = ["settings"]

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._sockets.append(sock)
            thread = threading.Thread(
                target=self._serve, args=(sock, number), daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, raw: socket.socket, number: int) -> None:
        sock: socket.socket = raw
        try:
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(raw, server_side=True)
                with self._lock:
                    self._sockets.append(sock)
            _Connection(self, sock, number).run()
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()
            raw.close()


class _Connection:
    def __init__(self, server: H2Server, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number
        config = h2.config.H2Configuration(client_side=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.bodies: dict[int, bytearray] = {}
        self.heads: dict[int, tuple[str, str]] = {}
        self.ready: list[int] = []  # complete requests not answered yet
        self.arrived = 0
        self.highest = 0  # the last_stream_id of a GOAWAY: all processed
        self.last: int | None = None  # GOAWAY sent: streams above are ignored
        self.first_ready = 0.0
        self.done_at = 0.0
        self.closing = False
        self.frames_sent: set[int] = set()

    def run(self) -> None:
        if self.server.speak_http1:
            self.sock.recv(65536)
            self.sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            self.sock.settimeout(LINGER)  # closing first would reset the answer
            while self.sock.recv(65536):
                pass
            return
        h2c = self.h2
        h2c.initiate_connection()
        h2c.update_settings(
            {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams}
        )
        self.flush()
        self.sock.settimeout(0.05)
        while True:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                data = None
            if data == b"":
                return
            if data:
                for event in h2c.receive_data(data):
                    self.on_event(event)
            if self.closing:
                self.sock.shutdown(socket.SHUT_RDWR)
                return
            self.send_idle_frames()
            self.answer_ready()
            self.flush()
            if self.server.ending:
                frame = GoAwayFrame(0, last_stream_id=self.highest)
                self.sock.sendall(frame.serialize())
                self.sock.shutdown(socket.SHUT_RDWR)
                return
            if self.last is not None and not self.ready and not self.bodies:
                # Closed after a linger, as nginx does: a request already on
                # its way meets an ignored stream, not a reset.
                if not self.done_at:
                    self.done_at = time.monotonic()
                elif time.monotonic() - self.done_at > LINGER:
                    self.sock.shutdown(socket.SHUT_RDWR)
                    return

    def send_idle_frames(self) -> None:
        frames = self.server.idle_frames
        if not frames or id(frames) in self.frames_sent:
            return
        self.frames_sent.add(id(frames))
        for frame in frames:
            if frame == "ping":
                self.h2.ping(b"idle-png")
            else:
                self.h2.update_settings(
                    {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 50}
                )

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.PingAckReceived):
            with self.server._lock:
                self.server.pings_acked += 1
        elif isinstance(event, h2.events.SettingsAcknowledged):
            with self.server._lock:
                self.server.settings_acked += 1
        elif isinstance(event, h2.events.StreamReset):
            # The client gave up on the stream: never answered.
            with self.server._lock:
                self.server.resets_received += 1
            if event.stream_id in self.ready:
                self.ready.remove(event.stream_id)
            self.bodies.pop(event.stream_id, None)
        elif isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers or [])
            sid = event.stream_id
            self.heads[sid] = (headers[b":method"].decode(), headers[b":path"].decode())
            self.bodies[sid] = bytearray()
            if self.server.answer_early and not event.stream_ended:
                self.h2.send_headers(sid, [(":status", "413")], end_stream=True)
                self.h2.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            self.bodies[event.stream_id] += event.data
            self.h2.acknowledge_received_data(
                event.flow_controlled_length or 0, event.stream_id
            )
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            self.request_complete(event.stream_id)

    def request_complete(self, sid: int) -> None:
        server = self.server
        if self.last is not None and sid > self.last:
            del self.bodies[sid]  # after our GOAWAY: not processed
            return
        method, path = self.heads[sid]
        with server._lock:
            server.requests.append(
                (self.number, sid, method, path, bytes(self.bodies[sid]))
            )
            if len(server.requests) == server.silent_close_at:
                self.closing = True
                return
            refuse = server.refuse > 0
            if refuse:
                server.refuse -= 1
        self.arrived += 1
        self.highest = max(self.highest, sid)
        if refuse or server.reset_code is not None:
            code = h2.errors.ErrorCodes.REFUSED_STREAM if refuse else server.reset_code
            del self.bodies[sid]
            self.h2.reset_stream(sid, error_code=code)
            return
        if not self.ready:
            self.first_ready = time.monotonic()
        self.ready.append(sid)
        goaway_here = (
            server.goaway_connections is None
            or self.number <= server.goaway_connections
        )
        if goaway_here and self.arrived == server.goaway_after:
            last = self.highest if server.goaway_last is None else server.goaway_last
            self.last = last
            # Written as a raw frame: h2 refuses to answer streams after its
            # own GOAWAY, and a graceful server answers those up to ``last``.
            frame = GoAwayFrame(0, last_stream_id=last, error_code=server.goaway_code)
            self.flush()
            self.sock.sendall(frame.serialize())
            if server.goaway_code != h2.errors.ErrorCodes.NO_ERROR:
                self.ready.clear()
                self.bodies.clear()

    def answer_ready(self) -> None:
        if not self.ready:
            return
        held = len(self.ready) < self.server.hold and self.last is None
        if held and time.monotonic() - self.first_ready < self.server.hold_timeout:
            return
        for sid in self.ready:
            method, path = self.heads[sid]
            body = f"{method} {path} {len(self.bodies.pop(sid))}".encode()
            body = body.ljust(self.server.body_size, b".")
            self.h2.send_headers(
                sid,
                [
                    (":status", "200"),
                    ("content-length", str(len(body))),
                    ("x-stream", str(sid)),
                ],
            )
            size = self.h2.max_outbound_frame_size
            for start in range(0, len(body), size):
                self.h2.send_data(sid, body[start : start + size])
            self.h2.end_stream(sid)
        self.ready.clear()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)
