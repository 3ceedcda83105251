"""The bench's aiohttp sessions: every socket closed before the loop ends.

aiohttp closes a connection the server ended (``Connection: close``, the
last request ``Keep-Alive: max`` allows) and forgets it. Over TLS, closing
takes a round trip: asyncio's SSL transport sends its ``close_notify`` and
closes the socket when the server's answer arrives. ``ClientSession.close()``
waits for the connections still in its pool, not for those. When the last
response of a run ended its connection (the api-client workload: TLS,
``max=10``), the event loop could close before the server's answer came,
and the socket's transport was left for the garbage collector, which warned
about it (a ``ResourceWarning``) in whatever code ran next, a later test.

:func:`aiohttp_session` records each socket aiohttp opens (its connector's
``socket_factory``, aiohttp >= 3.12) and, as it exits, waits (bounded) until
each one is closed. Older aiohttp versions get the plain session.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["aiohttp_session"]

#: Longest wait for the servers' answers (one round trip each).
SETTLE_TIMEOUT = 5.0
#: How often the sockets are looked at meanwhile.
SETTLE_POLL = 0.002


@asynccontextmanager
async def aiohttp_session(
    connector: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[Any]:
    """``aiohttp.ClientSession(connector=TCPConnector(**connector), **options)``."""
    import aiohttp

    opened: list[socket.socket] = []
    connector_options = dict(connector or {})
    if "socket_factory" in inspect.signature(aiohttp.TCPConnector).parameters:

        def new_socket(addr_info: Any) -> socket.socket:
            family, kind, proto = addr_info[:3]
            sock = socket.socket(family=family, type=kind, proto=proto)
            opened.append(sock)
            return sock

        connector_options["socket_factory"] = new_socket
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(**connector_options), **options
        ) as session:
            yield session
    finally:
        await sockets_closed(opened, SETTLE_TIMEOUT)


async def sockets_closed(sockets: list[socket.socket], timeout: float) -> bool:
    """Until every socket in *sockets* is closed (True) or *timeout* passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    open_ones = [s for s in sockets if s.fileno() != -1]
    while open_ones:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(SETTLE_POLL)
        open_ones = [s for s in open_ones if s.fileno() != -1]
    return True
