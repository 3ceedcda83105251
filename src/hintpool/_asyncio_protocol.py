"""The asyncio ``Protocol`` under :class:`AsyncFastConnection`: bytes and TLS.

Theory of operation
-------------------
The event loop reads into a buffer the protocol lends it (an asyncio
``BufferedProtocol``) and calls ``buffer_updated``; the protocol feeds the
bytes (decrypted first, for TLS) to the connection's sans-I/O
:class:`hintpool._h1.H1Codec` and wakes the one task waiting, if any,
through one future. Nothing takes a lock or opens a cancel scope: one
request at a time per connection is the pool's guarantee.

* One receive buffer per thread serves every connection
  (:mod:`hintpool._recv_buffer`): the codec and the TLS object copy what
  they keep before ``buffer_updated`` returns, and a loop runs in one
  thread. A plain ``Protocol`` would cost more: for
  ``data_received`` asyncio allocates a 256 KiB ``bytes`` per read and
  shrinks it to what arrived, which with glibc maps, remaps and unmaps
  memory on every read (three syscalls and a page fault, several µs).

* Waits, timeouts and flow control: :mod:`hintpool._asyncio_exchange`.
* A FIN, a reset, or bytes nobody asked for on an idle connection set
  ``_peer_closed`` from the loop's callbacks: checking a connection out
  costs no syscall.
* TLS runs here over two ``ssl.MemoryBIO`` s, because asyncio's own SSL
  transport cannot be offered a saved session. A peer closing without
  ``close_notify`` (a "ragged EOF") is end of stream after the handshake.
  Closing sends our ``close_notify`` once and does not wait for the peer's.

"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Union, cast

from ._asyncio_exchange import ExchangeState
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    ReadError,
    RemoteProtocolError,
    WriteError,
)
from ._recv_buffer import receive_buffer
from ._tls_stream import wrap_bio

__all__ = ["H1Protocol"]

Bytes = Union[bytes, bytearray, memoryview]

#: Plaintext taken from the TLS object per call (a TLS record is <= 16 KiB).
READ_SIZE = 65536
#: Undelivered body bytes above which the transport stops reading.
READ_HIGH_WATER = 256 * 1024


class H1Protocol(ExchangeState, asyncio.BufferedProtocol):
    """Receiving, TLS, waiting and closing for one HTTP/1.1 connection."""

    ssl_object: ssl.SSLObject | None
    #: The transport's socket (asyncio's ``TransportSocket`` wrapper).
    sock: Any

    def __init__(self) -> None:
        super().__init__()
        self.ssl_object = None
        self.sock = None
        # TLS, once started: the SSL object runs until the handshake is done,
        # then _tls_ready routes bytes through it.
        self._ssl: ssl.SSLObject | None = None
        self._incoming = self._outgoing = ssl.MemoryBIO()
        self._tls_ready = False
        self._handshake: asyncio.Future[None] | None = None
        self._recv_buffer = receive_buffer()

    # -- TLS -------------------------------------------------------------

    async def _start_tls(
        self,
        ctx: ssl.SSLContext,
        server_hostname: str | None,
        session: ssl.SSLSession | None,
        timeout: float | None,
    ) -> None:
        if self._peer_closed:  # while a trace callback ran, say
            raise ConnectError("Server closed the connection before TLS started")
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        try:
            sslobj = wrap_bio(
                ctx, self._incoming, self._outgoing, server_hostname, session
            )
        except ValueError as exc:  # e.g. a server_hostname OpenSSL refuses
            raise ConnectError(str(exc)) from exc
        self._ssl = self.ssl_object = sslobj
        loop = self._loop
        handshake = self._handshake = loop.create_future()
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, self._handshake_timed_out, handshake)
        self._handshake_step()  # sends the ClientHello
        try:
            await handshake
        finally:
            self._handshake = None
            if timer is not None:
                timer.cancel()

    def _handshake_timed_out(self, handshake: asyncio.Future[None]) -> None:
        if not handshake.done():
            handshake.set_exception(ConnectTimeout("TLS handshake timed out"))

    def _handshake_step(self) -> None:
        assert self._ssl is not None
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except ssl.SSLError as exc:  # certificate failures included
            self._flush_tls()  # our alert, if any
            error = ConnectError(str(exc) or repr(exc))
            # The pool tells TLS failures (never retried) by their cause.
            error.__cause__ = exc
            self._handshake_failed(error)
            return
        self._flush_tls()
        self._tls_ready = True
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_result(None)

    def _handshake_failed(self, exc: BaseException) -> None:
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(exc)

    # -- asyncio.BufferedProtocol ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods but not the base class.
        self._transport = cast(asyncio.Transport, transport)
        self.sock = transport.get_extra_info("socket")

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._recv_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # data_received() inlined: a call less per read.
        if self._ssl is None:
            self._received(self._recv_buffer[:nbytes])
        else:
            self._tls_received(self._recv_buffer[:nbytes])

    def data_received(self, data: Bytes) -> None:
        """What ``buffer_updated`` received (a plain Protocol's method, kept
        for callers that hand over bytes themselves)."""
        if self._ssl is None:
            self._received(data)
        else:
            self._tls_received(data)

    def eof_received(self) -> None:
        if self._ssl is not None and not self._tls_ready:
            # Let OpenSSL name the failure (an EOF in violation of protocol).
            self._incoming.write_eof()
            self._handshake_step()
            return
        # After the handshake a missing close_notify is just end of stream.
        self._on_eof()
        # Returning None lets the transport close itself.

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if exc is None:
            message = "Server closed the connection during the TLS handshake"
        else:
            message = str(exc) or repr(exc)
        error = ConnectError(message)
        error.__cause__ = exc
        self._handshake_failed(error)
        if exc is None or self._closed:
            self._on_eof()
        else:
            self._peer_closed = True
            self._fail(ReadError(message))
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- receiving -------------------------------------------------------

    def _received(self, data: Bytes) -> None:
        """Plaintext from the peer."""
        if not self._active:
            # Nobody asked: a late "408", junk, or a close on its way. This
            # connection must not carry another request.
            self._peer_closed = True
            return
        self._got_bytes = True
        if self._timer is not None:
            self._last_data = self._loop.time()
        codec = self._codec
        try:
            codec.feed(data)
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        self._unconsumed += len(data)
        if self._unconsumed > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        waiter = self._waiter
        if (
            waiter is not None
            and codec.head is not None
            and (self._want_head or codec.body or codec.complete)
            and not waiter.done()
        ):
            waiter.set_result(None)

    def _tls_received(self, data: Bytes) -> None:
        self._incoming.write(data)
        if not self._tls_ready:
            self._handshake_step()
            if not self._tls_ready:
                return
        sslobj = self._ssl
        assert sslobj is not None
        while not self._closed:
            try:
                plaintext = sslobj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._on_eof()  # close_notify, or a ragged EOF
                break
            except ssl.SSLError as exc:
                self._peer_closed = True
                self._fail(ReadError(str(exc) or repr(exc)))
                self._close()
                return
            if not plaintext:
                self._on_eof()
                break
            self._received(plaintext)
        if self._outgoing.pending:
            self._flush_tls()  # e.g. an answer to a key update

    def _write(self, data: bytes) -> None:
        if self._peer_closed or self._closed:
            return  # the read that follows reports why
        transport = self._transport
        assert transport is not None
        if self._ssl is None:
            transport.write(data)
            return
        view = memoryview(data)
        try:
            while view:
                view = view[self._ssl.write(view) :]
        except ssl.SSLError as exc:
            # The read that follows raises it; nothing more is written.
            self._fail(WriteError(str(exc) or repr(exc)))
            self._close()
            return
        self._flush_tls()

    def _flush_tls(self) -> None:
        data = self._outgoing.read()
        if data and not self._lost:
            assert self._transport is not None
            self._transport.write(data)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._idle = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and self._error is None:
            self._error = ReadError("Connection closed")
        self._wake()
        transport = self._transport
        if transport is None:
            return
        if self._tls_ready and not self._lost:
            self._send_close_notify()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        if transport.get_write_buffer_size():
            transport.abort()  # never hang on a peer that does not read
        else:
            transport.close()

    def _send_close_notify(self) -> None:
        assert self._ssl is not None
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # ours is written; the peer's is not awaited
        except (ssl.SSLError, ValueError):
            return  # the TLS session is already broken or shut down
        self._flush_tls()
