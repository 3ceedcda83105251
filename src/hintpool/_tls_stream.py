"""TLS on a connected stream, offering a saved session at wrap time.

Theory of operation
-------------------
httpcore's network backends start TLS without a way to pass a session:
anyio's ``TLSStream``, trio's ``SSLStream`` and asyncio's ``start_tls`` take
none. So the pool opens TCP with httpcore's backend, then starts TLS here.

* Async (asyncio and trio alike): :class:`AsyncTLSStream` runs an
  ``SSLObject`` over two ``MemoryBIO``\\ s on top of the TCP stream's
  ``read``/``write``, so it only needs what every httpcore stream has.
  ``SSLWantReadError`` means "send what is pending, read more"; the
  outgoing BIO is unbounded, so ``SSLWantWriteError`` cannot happen.
* Sync: ``SSLContext.wrap_socket(..., session=...)`` on the raw socket and
  httpcore's ``SyncStream`` around it. A MemoryBIO stream would work there
  too, but the C ``SSLSocket`` reads and writes without Python in the loop,
  which matters for large bodies, and the blocking socket does timeouts.

Errors: a failed handshake is ``ConnectError`` carrying the SSL reason
(``ConnectTimeout`` when it ran out of time); afterwards ``ReadError`` /
``WriteError``. A peer that closes without ``close_notify`` (a "ragged
EOF"; many servers do) is end of stream after the handshake, as in
httpcore's own backends, so h11 reports "Server disconnected" for a missing
response and bodies delimited by the close still work. Closing sends our
``close_notify`` once and does not wait for the peer's.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import ssl
from typing import Any, Callable, TypeVar

import anyio
import httpcore

__all__ = [
    "AsyncTLSStream",
    "SyncTLSStream",
    "async_start_tls",
    "start_tls",
    "wrap_bio",
]

READ_SIZE = 65_536
#: Bound on sending our close_notify: closing never hangs on a stuck peer.
CLOSE_NOTIFY_TIMEOUT = 0.1

_T = TypeVar("_T")


def wrap_bio(
    ctx: ssl.SSLContext,
    incoming: ssl.MemoryBIO,
    outgoing: ssl.MemoryBIO,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
) -> ssl.SSLObject:
    try:
        return ctx.wrap_bio(
            incoming, outgoing, server_hostname=server_hostname, session=session
        )
    except ValueError:
        if session is None:
            raise
        # A session the context does not accept (another context's): the
        # cache's keying prevents it, but it must never cost more than a
        # full handshake.
        return ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)


class AsyncTLSStream(httpcore.AsyncNetworkStream):
    """TLS over any httpcore stream, through ``ssl.MemoryBIO``."""

    def __init__(
        self,
        transport: httpcore.AsyncNetworkStream,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self._transport = transport
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = wrap_bio(
            ssl_context, self._incoming, self._outgoing, server_hostname, session
        )
        self._handshake_done = False
        self._eof = False
        self._closed = False

    # -- handshake -----------------------------------------------------------

    async def do_handshake(self, timeout: float | None = None) -> None:
        """Run the handshake; ConnectError / ConnectTimeout on failure."""
        try:
            with anyio.fail_after(timeout):
                await self._retry(self._ssl.do_handshake, None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except ssl.SSLError as exc:
            raise httpcore.ConnectError(_reason(exc)) from exc
        except (httpcore.NetworkError, OSError) as exc:
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
        self._handshake_done = True

    # -- I/O ---------------------------------------------------------------

    async def _flush(self, timeout: float | None) -> None:
        data = self._outgoing.read()
        if data:
            await self._transport.write(data, timeout)

    async def _retry(self, operation: Callable[[], _T], timeout: float | None) -> _T:
        """Call ``operation`` until the SSLObject has what it needs."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                await self._flush(timeout)
                data = await self._transport.read(READ_SIZE, timeout)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            await self._flush(timeout)
            return result

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._eof:
            return b""
        try:
            read = functools.partial(self._ssl.read, max_bytes)
            return await self._retry(read, timeout)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # close_notify, or a ragged EOF: both end the stream.
            self._eof = True
            return b""
        except ssl.SSLError as exc:
            raise httpcore.ReadError(_reason(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        try:
            while view:
                write_chunk = functools.partial(self._ssl.write, view[:READ_SIZE])
                written = await self._retry(write_chunk, timeout)
                view = view[written:]
        except ssl.SSLError as exc:
            raise httpcore.WriteError(_reason(exc)) from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._handshake_done:
                await self._send_close_notify()
        finally:
            await self._transport.aclose()

    async def _send_close_notify(self) -> None:
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is written; the peer's is not awaited
        except (ssl.SSLError, ValueError):
            return  # the TLS session is already broken or shut down
        data = self._outgoing.read()
        if data:
            # Best effort: the peer may be gone already.
            with contextlib.suppress(
                httpcore.NetworkError, httpcore.TimeoutException, OSError
            ):
                await self._transport.write(data, CLOSE_NOTIFY_TIMEOUT)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """TLS in TLS (through an HTTPS proxy) comes for free here."""
        return await async_start_tls(self, ssl_context, server_hostname, None, timeout)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._ssl
        if info == "is_readable":
            return bool(self._ssl.pending()) or self._transport.get_extra_info(
                "is_readable"
            )
        return self._transport.get_extra_info(info)


def _reason(exc: ssl.SSLError) -> str:
    # str() of an SSLError is "[SSL: REASON] text (_ssl.c:NNN)": keep it all,
    # it is what httpx users see and search for.
    return str(exc) or repr(exc)


async def async_start_tls(
    stream: httpcore.AsyncNetworkStream,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
    timeout: float | None,
) -> AsyncTLSStream:
    """Start TLS on ``stream`` offering ``session``; closes it on failure."""
    try:
        tls = AsyncTLSStream(stream, ssl_context, server_hostname, session)
        await tls.do_handshake(timeout)
    except BaseException:
        await stream.aclose()
        raise
    return tls


class SyncTLSStream(httpcore.NetworkStream):
    """A blocking ``SSLSocket`` we wrapped ourselves, as an httpcore stream."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        # What httpcore's SyncStream hands out: the C-level SSL object, which
        # (unlike the SSLSocket) still answers ``session_reused`` once the
        # connection was closed. ``version()`` turns None if the shutdown met
        # the peer's EOF: read it while the response is open.
        self._ssl_object: Any = getattr(sock, "_sslobj", None) or sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._sock.settimeout(timeout)
            # suppress_ragged_eofs (the default) turns a ragged EOF into b"".
            return self._sock.recv(max_bytes)
        except socket.timeout as exc:
            raise httpcore.ReadTimeout(str(exc) or "timed out") from exc
        except ssl.SSLError as exc:
            raise httpcore.ReadError(_reason(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or repr(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        try:
            while view:
                self._sock.settimeout(timeout)
                view = view[self._sock.send(view) :]
        except socket.timeout as exc:
            raise httpcore.WriteTimeout(str(exc) or "timed out") from exc
        except ssl.SSLError as exc:
            raise httpcore.WriteError(_reason(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or repr(exc)) from exc

    def close(self) -> None:
        sock = self._sock
        try:
            # Non-blocking: unwrap() sends our close_notify, then raises
            # SSLWantReadError instead of waiting for the peer's.
            sock.settimeout(0)
            sock.unwrap()
        except (OSError, ValueError):
            pass
        finally:
            sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        raise NotImplementedError("TLS in TLS is not supported on the sync pool")

    def get_extra_info(self, info: str) -> Any:
        sock = self._sock
        if info == "ssl_object":
            return self._ssl_object
        if info == "socket":
            return sock
        if info == "client_addr":
            return sock.getsockname()
        if info == "server_addr":
            return sock.getpeername()
        if info == "is_readable":
            if sock.pending():
                return True
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable)
        return None


def start_tls(
    stream: httpcore.NetworkStream,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
    timeout: float | None,
) -> httpcore.NetworkStream:
    """Sync twin of :func:`async_start_tls`: ``wrap_socket(session=...)``;
    over a TLS stream (an https:// proxy's tunnel), TLS over memory BIOs."""
    if stream.get_extra_info("ssl_object") is not None:
        from ._tls_nested import start_nested_tls

        return start_nested_tls(stream, ssl_context, server_hostname, session, timeout)
    raw = stream.get_extra_info("socket")
    if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
        stream.close()
        raise httpcore.ConnectError("TLS needs a plain connected socket")
    try:
        raw.settimeout(timeout)
        # Unlike wrap_bio(), a failed wrap_socket() has already taken over
        # and closed the socket, so a rejected session cannot be retried
        # here; the cache's keying makes sure it never is rejected.
        sock = ssl_context.wrap_socket(
            raw,
            server_hostname=server_hostname,
            session=session,
            do_handshake_on_connect=False,
        )
    except ValueError as exc:
        stream.close()
        raise httpcore.ConnectError(str(exc)) from exc
    except BaseException:
        stream.close()
        raise
    try:
        sock.do_handshake()
    except BaseException as exc:
        sock.close()
        if isinstance(exc, (socket.timeout, TimeoutError)):
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        if isinstance(exc, ssl.SSLError):
            raise httpcore.ConnectError(_reason(exc)) from exc
        if isinstance(exc, OSError):
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
        raise
    return SyncTLSStream(sock)
