"""TLS inside TLS for the sync pool: an ``https://`` origin through an
``https://`` proxy.

The sync pool starts TLS with ``SSLContext.wrap_socket`` on the raw socket
(see ``hintpool._tls_stream``), which cannot run over a stream that is TLS
already. :class:`NestedTLSStream` runs an ``SSLObject`` over two
``MemoryBIO``\\ s on top of the outer stream's ``read``/``write``, as the
async pool does for every TLS connection. Only tunnels through an https://
proxy use it.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, Callable, TypeVar

import httpcore

__all__ = ["NestedTLSStream", "start_nested_tls"]

READ_SIZE = 65_536
_T = TypeVar("_T")


class NestedTLSStream(httpcore.NetworkStream):
    """TLS over an httpcore stream (itself TLS), through ``ssl.MemoryBIO``."""

    def __init__(
        self,
        transport: httpcore.NetworkStream,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None,
        session: ssl.SSLSession | None,
    ) -> None:
        self._transport = transport
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = ssl_context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_hostname=server_hostname,
            session=session,
        )
        self._eof = False
        self._closed = False

    def do_handshake(self, timeout: float | None) -> None:
        try:
            self._retry(self._ssl.do_handshake, timeout)
        except ssl.SSLError as exc:
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
        except httpcore.TimeoutException as exc:
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except httpcore.NetworkError as exc:
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc

    def _flush(self, timeout: float | None) -> None:
        data = self._outgoing.read()
        if data:
            self._transport.write(data, timeout)

    def _retry(self, operation: Callable[[], _T], timeout: float | None) -> _T:
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                self._flush(timeout)
                data = self._transport.read(READ_SIZE, timeout)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush(timeout)
            return result

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._eof:
            return b""
        try:
            return self._retry(functools.partial(self._ssl.read, max_bytes), timeout)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            self._eof = True
            return b""
        except ssl.SSLError as exc:
            raise httpcore.ReadError(str(exc) or repr(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        try:
            while view:
                chunk = functools.partial(self._ssl.write, view[:READ_SIZE])
                view = view[self._retry(chunk, timeout) :]
        except ssl.SSLError as exc:
            raise httpcore.WriteError(str(exc) or repr(exc)) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # No close_notify: the outer stream's close ends both.
        self._transport.close()

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._ssl
        if info == "is_readable":
            return bool(self._ssl.pending()) or self._transport.get_extra_info(
                "is_readable"
            )
        return self._transport.get_extra_info(info)


def start_nested_tls(
    stream: httpcore.NetworkStream,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
    timeout: float | None,
) -> NestedTLSStream:
    """TLS over ``stream`` offering ``session``; closes ``stream`` on failure."""
    try:
        tls = NestedTLSStream(stream, ssl_context, server_hostname, session)
        tls.do_handshake(timeout)
    except BaseException:
        stream.close()
        raise
    return tls
