"""A scripted in-memory network for driving the real pools without sockets.

``FakeNetwork`` is an httpcore network backend (async, and sync through
``SyncFakeNetwork``) whose every connection talks to a model server: an h11
server-side parser that answers each request at once with the hints its
origin is configured to send, keeps its own clock-driven idea of when it
closes the connection, and records every request it receives. It can

* withhold a response until the test delivers it (a slow server),
* close a connection without the client noticing yet (the FIN in flight: the
  keep-alive race) and later let the close become visible,
* record violations of what the pool promises: a request on a connection
  the server said it would close (``Connection: close``, ``max=0``), a
  request past the announced idle ``timeout`` minus the pool's margin, a
  request written while the previous response was still being read (two
  users), a request for another host, a POST without ``Idempotency-Key``
  processed twice.

``pool._state.server_closed`` is pointed at :meth:`FakeNetwork.fin_visible`
by the tests, in place of the socket poll.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import anyio
import h11
import httpcore


@dataclass
class Behaviour:
    """How an origin's server answers (changing it affects later responses)."""

    #: Keep-Alive header value; "{left}" counts max down like Apache.
    hint: str | None = "timeout=5, max={left}"
    #: The server closes (FIN) after this many requests on a connection.
    max_requests: int | None = None
    #: Say "Connection: close" on the last response (False: a lying server).
    close_on_last: bool = True
    #: "Connection: close" on every response.
    close_every: bool = False
    #: Idle seconds after which the server closes, hint or not (None: never).
    idle_timeout: float | None = None
    #: Withhold responses until the test calls ``FakeStream.deliver()``.
    slow: bool = False
    #: Process each request on a reused connection, then close without
    #: answering (a crash after the work was done): only idempotent requests
    #: may then be sent again.
    lose_responses: bool = False


def _announced_timeout(hint: str | None) -> float | None:
    from hintpool import parse_keep_alive

    if hint is None:
        return None
    parsed = parse_keep_alive(hint.replace("{left}", "0"))
    return None if parsed is None else parsed.timeout


class FakeStream:
    """One connection, client side, with the model server behind it."""

    _ids = itertools.count(1)

    def __init__(self, net: FakeNetwork, host: str) -> None:
        self.net = net
        self.host = host
        self.id = next(self._ids)
        self.parser = h11.Connection(h11.SERVER)
        self.out: list[bytes] = []  # response bytes not read by the client yet
        self.withheld: list[bytes] = []  # a slow response, not sent yet
        self.requests = 0
        self.client_closed = False
        #: The server closed; the client sees EOF after the buffered bytes.
        self.fin = False
        #: The client may notice the close (the FIN arrived).
        self.fin_seen = False
        self.announced_end = False
        #: When the client read the last byte of the last response.
        self.idle_since: float | None = None
        self.announced_timeout: float | None = None
        self.silent_timeout: float | None = None
        self._release: Any = None  # anyio.Event, made in the event loop
        self.current_id = ""
        self.current_once = False

    def __repr__(self) -> str:
        return f"<FakeStream #{self.id} {self.host} requests={self.requests}>"

    # -- server side -------------------------------------------------------------

    def _server_timed_out(self, now: float) -> bool:
        if self.idle_since is None or self.busy:
            return False
        limit = self.announced_timeout
        if self.silent_timeout is not None:
            limit = (
                self.silent_timeout
                if limit is None
                else min(limit, self.silent_timeout)
            )
        return limit is not None and now >= self.idle_since + limit

    @property
    def busy(self) -> bool:
        return bool(self.out or self.withheld)

    def close_by_server(self, seen: bool) -> None:
        self.fin = True
        self.fin_seen = self.fin_seen or seen

    def _receive(self, data: bytes) -> None:
        if not data:  # an empty write is not an EOF
            return
        now = self.net.clock()
        if self._server_timed_out(now):
            self.fin = True
        self.parser.receive_data(data)
        while True:
            event = self.parser.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                self._request(event, now)
            elif isinstance(event, h11.EndOfMessage):
                if not self.fin:
                    self._respond(now)
                if self._cycle_ok():
                    self.parser.start_next_cycle()
                else:  # no answer or a closing one: parse what comes anyway
                    self.parser = h11.Connection(h11.SERVER)

    def _cycle_ok(self) -> bool:
        return self.parser.our_state is h11.DONE and self.parser.their_state is h11.DONE

    def _request(self, request: h11.Request, now: float) -> None:
        net = self.net
        net.written += 1
        self.requests += 1
        headers = dict(request.headers)
        self.current_id = headers.get(b"x-request-id", b"").decode()
        self.current_once = (
            request.method == b"POST" and b"idempotency-key" not in headers
        )
        host = headers.get(b"host", b"").decode()
        if host and host != self.host:
            net.violation(f"{self}: request for {host} on a connection to {self.host}")
        if self.busy:
            net.violation(f"{self}: request while a response is being read")
        if self.announced_end:
            net.violation(f"{self}: request after the server announced the end")
        if self.idle_since is not None and self.announced_timeout is not None:
            window = max(0.0, self.announced_timeout - net.margin)
            if now >= self.idle_since + window:
                net.violation(
                    f"{self}: request {now - self.idle_since:.2f}s after idle,"
                    f" announced timeout {self.announced_timeout}"
                )

    def _respond(self, now: float) -> None:
        net = self.net
        behaviour = net.behaviour(self.host)
        net.processed[self.current_id] += 1
        if self.current_once and net.processed[self.current_id] > 1:
            net.violation(f"POST {self.current_id} processed twice")
        if behaviour.lose_responses and self.requests > 1:
            self.close_by_server(seen=True)
            return
        last = (
            behaviour.max_requests is not None
            and self.requests >= behaviour.max_requests
        )
        headers = [(b"Content-Length", b"5")]
        if behaviour.hint is not None:
            left = 100 if behaviour.max_requests is None else behaviour.max_requests
            left = max(0, left - self.requests)
            value = behaviour.hint.replace("{left}", str(left))
            headers.append((b"Keep-Alive", value.encode()))
            if "max=0" in value.replace(" ", ""):
                self.announced_end = True
        close = behaviour.close_every or (last and behaviour.close_on_last)
        if close:
            headers.append((b"Connection", b"close"))
            self.announced_end = True
        self.announced_timeout = _announced_timeout(behaviour.hint)
        self.silent_timeout = behaviour.idle_timeout
        response = h11.Response(status_code=200, headers=headers)
        head = self.parser.send(response) or b""
        body = (self.parser.send(h11.Data(data=b"hello")) or b"") + (
            self.parser.send(h11.EndOfMessage()) or b""
        )
        chunks = [head, body]
        if close or last:
            # After these bytes, EOF; whether the pool's poll sees it before
            # the next checkout is up to the test (``fins_arrive``): the pool
            # must not need to see it, it was announced.
            self.fin = True
        if behaviour.slow:
            self.withheld = chunks
        else:
            self.out = chunks
        self.idle_since = None

    def deliver(self) -> None:
        """Send a withheld (slow) response."""
        self.out, self.withheld = self.withheld, []
        if self._release is not None:
            self._release.set()

    # -- client side (what httpcore calls) -------------------------------------

    def _read(self) -> bytes | None:
        if self.client_closed:
            raise httpcore.ReadError("read on a closed stream")
        if self.out:
            chunk = self.out.pop(0)
            if not self.out:
                self.idle_since = self.net.clock()
            return chunk
        if self.withheld:
            return None
        return b""  # nothing more will come: the server closed (or never answers)

    def _write(self, data: bytes) -> None:
        if self.client_closed:
            raise httpcore.WriteError("write on a closed stream")
        try:
            self._receive(data)
        except h11.RemoteProtocolError as exc:  # pragma: no cover - a test bug
            self.net.violation(f"{self}: bad request bytes: {exc!r}")

    def get_extra_info(self, info: str) -> Any:
        return None


class AsyncFakeStream(FakeStream, httpcore.AsyncNetworkStream):
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while True:
            chunk = self._read()
            if chunk is not None:
                return chunk
            self._release = anyio.Event()
            await self._release.wait()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._write(buffer)

    async def aclose(self) -> None:
        self.client_closed = True

    async def start_tls(self, *args: Any, **kwargs: Any) -> AsyncFakeStream:
        return self


class SyncFakeStream(FakeStream, httpcore.NetworkStream):
    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        chunk = self._read()
        if chunk is None:
            raise httpcore.ReadTimeout("a slow response on the sync fake network")
        return chunk

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._write(buffer)

    def close(self) -> None:
        self.client_closed = True

    def start_tls(self, *args: Any, **kwargs: Any) -> SyncFakeStream:
        return self


class FakeNetwork:
    """Connections and server model; see the module docstring."""

    stream_class: type[FakeStream] = FakeStream

    def __init__(self, clock: Callable[[], float], margin: float = 1.0) -> None:
        self.clock = clock
        self.margin = margin
        self.behaviours: dict[str, Behaviour] = {}
        self.streams: list[FakeStream] = []
        self.processed: Counter[str] = Counter()
        self.violations: list[str] = []
        self.written = 0
        self.connect_failures = 0

    def behaviour(self, host: str) -> Behaviour:
        return self.behaviours.setdefault(host, Behaviour())

    def violation(self, text: str) -> None:
        self.violations.append(text)

    def fin_visible(self, conn: Any) -> bool:
        """Stand-in for the socket poll at checkout."""
        stream = conn.connection._network_stream
        if stream._server_timed_out(self.clock()):
            stream.fin = True
            # A server close at its own idle timeout is seen by the client
            # only when the test says so (``fins_arrive``): the race.
        return bool(stream.fin and stream.fin_seen)

    def fins_arrive(self) -> None:
        now = self.clock()
        for stream in self.streams:
            if stream._server_timed_out(now):
                stream.fin = True
            if stream.fin:
                stream.fin_seen = True

    def open_streams(self) -> list[FakeStream]:
        return [s for s in self.streams if not s.client_closed]

    def _connect(self, host: str) -> FakeStream:
        stream = self.stream_class(self, host)
        self.streams.append(stream)
        return stream


class AsyncFakeNetwork(FakeNetwork, httpcore.AsyncNetworkBackend):
    stream_class = AsyncFakeStream

    async def connect_tcp(
        self, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        stream = self._connect(host)
        assert isinstance(stream, AsyncFakeStream)
        return stream

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - unused
        await anyio.sleep(seconds)


class SyncFakeNetwork(FakeNetwork, httpcore.NetworkBackend):
    stream_class = SyncFakeStream

    def connect_tcp(
        self, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.NetworkStream:
        stream = self._connect(host)
        assert isinstance(stream, SyncFakeStream)
        return stream
