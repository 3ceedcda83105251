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

__all__ = ["connect"]

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


async def connect(
    loop: asyncio.AbstractEventLoop,
    factory: ProtocolFactory,
    host: str,
    port: int,
    uds: str | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
) -> None:
    """Connect a transport to ``factory()``'s protocol; raises OSError."""
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
