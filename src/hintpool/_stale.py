"""Has the server hung up on an idle connection? One non-blocking poll.

An idle HTTP/1.1 connection has nothing to read: if its socket polls
readable, the server sent a FIN (or a TLS close_notify, or junk such as a
late ``408``). Either way it must not carry the next request. This is the
check Go's and .NET's pools make on idle connections; doing it at checkout
catches a close that arrived since the connection went idle.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._state import PooledConnection

__all__ = ["server_closed"]

_POLLIN = getattr(select, "POLLIN", 0)


def _readable_poll(sock: Any) -> bool:
    poller = select.poll()
    poller.register(sock, _POLLIN)
    return bool(poller.poll(0))


def _readable_select(sock: Any) -> bool:  # pragma: no cover - no poll() here
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


_readable = _readable_poll if hasattr(select, "poll") else _readable_select


def server_closed(conn: PooledConnection) -> bool:
    sock = conn.sock
    if sock is None:
        # hintpool's own connections know it themselves (an asyncio Protocol
        # is told by the event loop, without a syscall here); mock streams
        # have neither.
        check = getattr(conn.connection, "server_closed", None)
        return False if check is None else bool(check())
    try:
        return _readable(sock)
    except (OSError, ValueError):  # already closed on our side
        return True
