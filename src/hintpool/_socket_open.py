"""Opening the socket of a :class:`~hintpool._socket_connection.FastConnection`.

TCP (or a Unix socket) the way httpcore's ``SyncBackend`` does it, then TLS
with ``SSLContext.wrap_socket(..., session=...)`` so that a cached session
can be offered. With a ``trace`` callback each step reports httpcore's
``connection.*`` events, with the same names and arguments.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

import httpcore

from ._exceptions import ConnectError, ConnectTimeout
from ._stale import _readable

__all__ = [
    "NetworkStream",
    "SocketIO",
    "Trace",
    "open_socket",
    "ssl_object_of",
    "traced",
]

_T = TypeVar("_T")
Trace = Callable[[str, "dict[str, Any]"], Any]


def ssl_object_of(sock: socket.socket) -> Any:
    """The C-level SSL object, as httpcore's SyncStream hands it out: unlike
    the SSLSocket it still answers version()/session_reused after close."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    return getattr(sock, "_sslobj", None) or sock


def traced(
    trace: Trace, name: str, info: dict[str, Any], fn: Callable[..., _T], *args: Any
) -> _T:
    """Run ``fn(*args)`` between httpcore-style started/complete/failed events."""
    trace(name + ".started", info)
    try:
        result = fn(*args)
    except BaseException as exc:
        trace(name + ".failed", {"exception": exc})
        raise
    trace(name + ".complete", {"return_value": result})
    return result


class NetworkStream:
    """The ``network_stream`` response extension: answers ``get_extra_info``.

    Addresses and the SSL object are captured at open, so the answers stay
    meaningful after the connection was closed.
    """

    __slots__ = ("_client_addr", "_server_addr", "_sock", "_ssl_object")

    def __init__(self, sock: socket.socket, ssl_object: Any) -> None:
        self._sock = sock
        self._ssl_object = ssl_object
        try:
            self._client_addr: Any = sock.getsockname()
            self._server_addr: Any = sock.getpeername()
        except OSError:  # pragma: no cover - the peer reset right after connect
            self._client_addr = self._server_addr = None

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._ssl_object
        if info == "socket":
            return self._sock
        if info == "client_addr":
            return self._client_addr
        if info == "server_addr":
            return self._server_addr
        if info == "is_readable":
            sock = self._sock
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return True
            try:
                return _readable(sock)
            except (OSError, ValueError):  # closed: reading would fail at once
                return True
        return None

    def __repr__(self) -> str:
        return f"<hintpool network stream {self._client_addr}->{self._server_addr}>"


def connect(
    origin: httpcore.Origin,
    timeout: float | None,
    uds: str | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
) -> socket.socket:
    """TCP (or Unix socket) connect as httpcore's SyncBackend does it."""
    try:
        if uds is None:
            source = None if local_address is None else (local_address, 0)
            address = (origin.host.decode("ascii"), origin.port)
            sock = socket.create_connection(address, timeout, source_address=source)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if uds is None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                sock.settimeout(timeout)
                sock.connect(uds)
        except BaseException:
            sock.close()
            raise
    except socket.timeout as exc:
        raise ConnectTimeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise ConnectError(str(exc) or repr(exc)) from exc
    return sock


def start_tls(
    sock: socket.socket,
    ssl_context: ssl.SSLContext,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
) -> ssl.SSLSocket:
    """The handshake runs under the socket's timeout: the connect timeout."""
    try:
        # wrap_socket() takes over the descriptor and closes it when the
        # wrap or the handshake fails; sock.close() below is for the rest.
        return ssl_context.wrap_socket(
            sock, server_hostname=server_hostname, session=session
        )
    except BaseException as exc:
        sock.close()
        if isinstance(exc, socket.timeout):
            raise ConnectTimeout("TLS handshake timed out") from exc
        if isinstance(exc, (OSError, ValueError)):  # SSLError is an OSError
            raise ConnectError(str(exc) or repr(exc)) from exc
        raise


def open_socket(
    origin: httpcore.Origin,
    *,
    timeout: float | None,
    uds: str | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
    trace: Trace | None,
    sock: socket.socket | None = None,
) -> socket.socket:
    """A connected socket (an SSLSocket after the handshake for TLS).

    ``sock``: a socket connected already (through a proxy), used instead of
    connecting; closed here if TLS fails.
    """
    if trace is None or sock is not None:
        if sock is None:
            sock = connect(origin, timeout, uds, local_address, socket_options)
        if ssl_context is None:
            return sock
        return start_tls(sock, ssl_context, server_hostname, session)

    def tcp() -> NetworkStream:
        sock = connect(origin, timeout, uds, local_address, socket_options)
        return NetworkStream(sock, None)

    if uds is None:
        info: dict[str, Any] = {
            "host": origin.host.decode("ascii"),
            "port": origin.port,
            "local_address": local_address,
            "timeout": timeout,
            "socket_options": socket_options,
        }
        stream = traced(trace, "connection.connect_tcp", info, tcp)
    else:
        info = {"path": uds, "timeout": timeout, "socket_options": socket_options}
        stream = traced(trace, "connection.connect_unix_socket", info, tcp)
    raw: socket.socket = stream.get_extra_info("socket")
    if ssl_context is None:
        return raw

    def tls() -> NetworkStream:
        sock = start_tls(raw, ssl_context, server_hostname, session)
        return NetworkStream(sock, ssl_object_of(sock))

    info = {
        "ssl_context": ssl_context,
        "server_hostname": server_hostname,
        "timeout": timeout,
    }
    stream = traced(trace, "connection.start_tls", info, tls)
    tls_sock: socket.socket = stream.get_extra_info("socket")
    return tls_sock


class SocketIO:
    """A blocking socket connected for a proxy handshake; the connection
    takes it over afterwards (:meth:`detach`). Sync twin of
    ``hintpool._asyncio_open.AsyncSocketIO``; errors are httpcore's."""

    __slots__ = ("_sock", "_timeout")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self._sock: socket.socket | None = sock
        self._timeout = timeout

    @classmethod
    def connect(
        cls,
        origin: httpcore.Origin,
        *,
        timeout: float | None,
        uds: str | None,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> SocketIO:
        sock = connect(origin, timeout, uds, local_address, socket_options)
        return cls(sock, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        assert self._sock is not None
        try:
            self._sock.settimeout(timeout)
            return self._sock.recv(max_bytes)
        except socket.timeout as exc:
            raise httpcore.ReadTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or repr(exc)) from exc

    def write(self, data: bytes, timeout: float | None = None) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(data)
        except socket.timeout as exc:
            raise httpcore.WriteTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or repr(exc)) from exc

    def detach(self) -> socket.socket:
        sock = self._sock
        assert sock is not None
        self._sock = None
        # The TLS handshake that follows runs under the connect timeout.
        sock.settimeout(self._timeout)
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
