"""Has the server hung up on an idle connection? One non-blocking poll.

An idle HTTP/1.1 connection has nothing to read: if its socket polls
readable, the server sent a FIN (or a TLS close_notify, or junk such as a
late ``408``). Either way it must not carry the next request. This is the
check Go's and .NET's pools make on idle connections; doing it at checkout
catches a close that arrived since the connection went idle.
"""

from __future__ import annotations

import select
import socket
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
        if not _readable(sock):
            return False
        if (
            conn.prewarmed
            and conn.tls is not None
            and not conn.lifetime.requests_served
        ):
            return _fin_first(sock)
        return True
    except (OSError, ValueError):  # already closed on our side
        return True


def _fin_first(sock: Any) -> bool:
    """A pre-warmed TLS connection nothing has read from yet: the bytes
    waiting are most likely the server's TLS 1.3 session tickets, sent
    after the handshake. Only an end of stream with nothing before it
    counts as a hang-up (a close that follows data is met by the request,
    and an idempotent one is retried)."""
    # Through a duplicate of the descriptor: under trio ``sock`` is a trio
    # socket, whose recv() is a coroutine.
    with socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as peer:
        try:
            return peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
