"""Opening the socket and the TLS object under an AsyncFastConnection.

``loop.create_connection`` does the usual case. Socket options are applied
before ``connect()`` (some, like ``SO_BINDTODEVICE`` or ``IP_TOS`` on the
SYN, only matter then), so with options the socket is made and connected
here, address by address as ``create_connection`` does, and handed over
with ``sock=``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any, Callable

import httpcore

from ._exceptions import ConnectError, ConnectTimeout

__all__ = ["AsyncSocketIO", "connect"]

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


async def connect(
    loop: asyncio.AbstractEventLoop,
    factory: ProtocolFactory,
    host: str,
    port: int,
    uds: str | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
    sock: socket.socket | None = None,
) -> None:
    """Connect a transport to ``factory()``'s protocol; raises OSError.

    ``sock``: a socket connected already (a proxy tunnel), taken over, and
    closed here if that fails.
    """
    if sock is not None:
        try:
            await loop.create_connection(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
        return
    if socket_options is None:
        if uds is not None:
            await loop.create_unix_connection(factory, uds)
        else:
            local = None if local_address is None else (local_address, 0)
            await loop.create_connection(factory, host, port, local_addr=local)
        return
    options = list(socket_options)
    if uds is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _prepare(sock, options, None)
            await loop.sock_connect(sock, uds)
            await loop.create_unix_connection(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
        return
    sock = await _connected_socket(loop, host, port, local_address, options)
    try:
        await loop.create_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


def _prepare(sock: socket.socket, options: list[Any], local: Any) -> None:
    sock.setblocking(False)
    for option in options:
        sock.setsockopt(*option)
    if local is not None:
        sock.bind(local)


async def _connected_socket(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    local_address: str | None,
    options: list[Any],
) -> socket.socket:
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned no addresses")
    local = None if local_address is None else (local_address, 0)
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            _prepare(sock, options, local)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if len(errors) == 1:
        raise errors[0]
    raise OSError("Multiple exceptions: " + ", ".join(str(e) for e in errors))


class AsyncSocketIO:
    """A socket connected for a proxy handshake, read and written through the
    loop; the connection takes it over afterwards (:meth:`detach`).

    Errors are httpcore's, as from any httpcore stream, so the handshake code
    is the same over this and over httpcore's streams.
    """

    __slots__ = ("_loop", "_sock")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock: socket.socket | None = sock

    @classmethod
    async def connect(
        cls,
        origin: httpcore.Origin,
        *,
        timeout: float | None,
        uds: str | None,
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> AsyncSocketIO:
        loop = asyncio.get_running_loop()
        host = origin.host.decode("ascii")
        options = list(socket_options or ())
        if uds is not None:
            opening = _unix_socket(loop, uds, options)
        else:
            opening = _connected_socket(loop, host, origin.port, local_address, options)
        try:
            sock = await asyncio.wait_for(opening, timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            where = uds or f"{host}:{origin.port}"
            raise ConnectTimeout(f"Timed out connecting to {where}") from exc
        except OSError as exc:
            raise ConnectError(str(exc) or repr(exc)) from exc
        return cls(loop, sock)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        assert self._sock is not None
        try:
            return await asyncio.wait_for(
                self._loop.sock_recv(self._sock, max_bytes), timeout
            )
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise httpcore.ReadTimeout("timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or repr(exc)) from exc

    async def write(self, data: bytes, timeout: float | None = None) -> None:
        assert self._sock is not None
        try:
            await asyncio.wait_for(self._loop.sock_sendall(self._sock, data), timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise httpcore.WriteTimeout("timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or repr(exc)) from exc

    def detach(self) -> socket.socket:
        sock = self._sock
        assert sock is not None
        self._sock = None
        return sock

    async def aclose(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def _unix_socket(
    loop: asyncio.AbstractEventLoop, path: str, options: list[Any]
) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _prepare(sock, options, None)
        await loop.sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock
