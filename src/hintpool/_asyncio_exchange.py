"""The exchange state under :class:`hintpool._asyncio_protocol.H1Protocol`:
the one task waiting for the codec, read and write timeouts, flow control.

Theory of operation
-------------------
The loop's callbacks (in ``H1Protocol``) feed the codec and call ``_wake``
or ``_fail``; the task running the exchange waits in ``_wait`` on one
future per wait.

* The read timeout is one timer per connection, armed by the first wait
  that has a timeout and left running across waits (arming and cancelling
  one per request cost ~6 us). When it fires it checks the silence since
  the last bytes or the start of the current wait, and re-arms for the
  remainder; so, like httpcore's, it bounds the silence between reads, not
  the response. With nobody waiting it simply stops.
* Flow control: more than ``READ_HIGH_WATER`` undelivered bytes pause the
  transport's reading (in ``H1Protocol._received``); the consumer taking
  them (``_taken``) resumes it. Writing waits (``_wait_drained``) only while
  the transport is above its high-water mark.

Errors reach the waiting task as ``_error``: set once per exchange by
whichever callback saw the problem first, raised by ``_wait``.
"""

from __future__ import annotations

import asyncio

from ._exceptions import ReadError, ReadTimeout, RemoteProtocolError, WriteTimeout
from ._h1 import H1Codec

__all__ = ["ExchangeState"]


class ExchangeState:
    """Lifecycle, waits and timers of one connection; no bytes, no TLS."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._codec = H1Codec()
        self._transport: asyncio.Transport | None = None
        # Lifecycle. _peer_closed: FIN, reset or unasked-for bytes seen.
        self._idle = True
        self._active = False
        self._closed = False
        self._lost = False
        self._eof = False
        self._peer_closed = False
        self._cycle = 0
        # The exchange in flight.
        self._error: BaseException | None = None
        self._got_bytes = False
        self._waiter: asyncio.Future[None] | None = None
        self._want_head = False
        self._read_timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._last_data = 0.0
        self._unconsumed = 0
        self._reading_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    def _on_eof(self) -> None:
        if self._eof:
            return
        self._eof = self._peer_closed = True
        if self._active:
            self._feed_eof()

    def _feed_eof(self) -> None:
        codec = self._codec
        try:
            codec.feed_eof()
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        """Deliver ``exc`` to the exchange in flight, unless it is whole."""
        if not self._active or self._error is not None:
            return
        if self._codec.complete:
            # Every byte of the response is here: give it to the caller,
            # just never reuse the connection.
            self._peer_closed = True
        else:
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, want_head: bool) -> None:
        """Until the codec has the head (or body or end), or raise."""
        waiter = self._new_waiter(want_head)
        if waiter is None:
            return
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _new_waiter(self, want_head: bool) -> asyncio.Future[None] | None:
        """``_wait`` up to its ``await``: the future to await (then clear
        ``_waiter`` and raise ``_error`` if set), None if the codec is
        complete already, or raise. Lets the exchange wait for the head
        without a coroutine of its own."""
        if self._error is None and (self._peer_closed or self._closed):
            self._dead_end()
        if self._error is not None:
            raise self._error
        if self._codec.complete:
            return None  # the peer's close ended the body
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        self._want_head = want_head
        timeout = self._read_timeout
        if timeout is not None:
            now = self._last_data = loop.time()
            # One timer outlives the waits: it is only re-armed when it would
            # fire too late for this one (a shorter timeout than before).
            if self._timer is None or self._timer_at > now + timeout:
                self._arm_read_timer(now + timeout)
        return waiter

    def _dead_end(self) -> None:
        """No byte will come any more: end the response, or say why not."""
        codec = self._codec
        if self._closed:
            self._error = ReadError("Connection closed")
        elif not codec.complete:
            try:
                codec.feed_eof()  # e.g. it closed while idle: "disconnected"
            except RemoteProtocolError as exc:
                self._error = exc
                return
            if not codec.complete:  # pragma: no cover - the codec raises instead
                self._error = RemoteProtocolError("Server disconnected")

    def _arm_read_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._read_timer)

    def _read_timer(self) -> None:
        self._timer = None
        timeout = self._read_timeout
        if self._waiter is None or timeout is None:
            return  # nobody waits: the next wait arms a new timer
        deadline = self._last_data + timeout
        if deadline > self._loop.time():
            # Bytes arrived, or this wait began, after the timer was set:
            # the silence counts from there.
            self._arm_read_timer(deadline)
            return
        if self._error is None:
            self._error = ReadTimeout("Timed out reading from the server")
        self._wake()

    def _taken(self) -> None:
        """The consumer took every undelivered body chunk."""
        self._unconsumed = 0
        if self._reading_paused and not self._closed:
            self._reading_paused = False
            assert self._transport is not None
            self._transport.resume_reading()

    async def _wait_drained(self, timeout: float | None) -> None:
        loop = self._loop
        drain = self._drain = loop.create_future()
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _write_timed_out, drain)
        try:
            await drain
        finally:
            self._drain = None
            if timer is not None:
                timer.cancel()


def _write_timed_out(drain: asyncio.Future[None]) -> None:
    if not drain.done():
        drain.set_exception(WriteTimeout("Timed out writing to the server"))
