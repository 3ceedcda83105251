"""Has the server hung up on an idle connection? One non-blocking poll.

An idle HTTP/1.1 connection has nothing to read: if its socket polls
readable, the server sent a FIN (or a TLS close_notify, or junk such as a
late ``408``). Either way it must not carry the next request. This is the
check Go's and .NET's pools make on idle connections; doing it at checkout
catches a close that arrived since the connection went idle.

An idle HTTP/2 connection may have something to read while the server
keeps it open: a PING, a SETTINGS frame. There the poll also asks whether
the peer shut its side down (``POLLRDHUP``), and a peek at the bytes tells
the rest without reading them:

* over TLS, a lone alert record is the close_notify of a server that
  waits for ours before its FIN, as asyncio's TLS does: closed. TLS 1.2
  shows an alert's record type in the clear; TLS 1.3 hides it, but its
  alert record is 24 bytes, shorter than any HTTP/2 frame can make (an
  empty SETTINGS frame: 31, a PING: 39), with the 16-byte AEAD tag every
  TLS 1.3 cipher suite Python offers uses;
* on plain HTTP/2, a GOAWAY frame among them: closed (the pool reads it
  before closing, and counts it).

Otherwise the connection is not closed but ``frames_waiting``: the next
request on it reads (and acknowledges) what arrived, as does the
connection's ``serve_idle()``. Without ``POLLRDHUP`` (not Linux) a readable
HTTP/2 socket counts as closed.
"""

from __future__ import annotations

import select
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._state import PooledConnection

__all__ = ["server_closed"]

_POLLIN = getattr(select, "POLLIN", 0)
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)
#: What says the peer is gone, besides data to read.
_GONE = _POLLRDHUP | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)


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
        if conn.http2 and _POLLRDHUP:
            return _h2_hung_up(sock, conn.connection)
        if (
            conn.prewarmed
            and conn.tls is not None
            and not conn.lifetime.requests_served
        ):
            return _fin_first(sock)
        return True
    except (OSError, ValueError):  # already closed on our side
        return True


def _h2_hung_up(sock: Any, connection: Any) -> bool:
    """A readable idle HTTP/2 socket: closed, or frames to be served."""
    poller = select.poll()
    poller.register(sock, _POLLIN | _POLLRDHUP)
    events = poller.poll(0)
    if not events:
        return False  # read meanwhile
    if events[0][1] & _GONE or not hasattr(connection, "serve_idle"):
        return True
    with socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as peer:
        try:
            waiting = peer.recv(_PEEK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
    if _ends(waiting):
        return True
    connection.frames_waiting = True
    return False


#: Bytes peeked at: more than a close_notify record, or a few frame headers.
_PEEK = 4096
_TLS_ALERT = 0x15
_TLS_DATA = 0x17
#: A TLS 1.3 record holding an alert: header 5, alert 2, inner type 1, tag 16.
_TLS13_ALERT_SIZE = 24
_GOAWAY = 7


def _ends(waiting: bytes) -> bool:
    """Do the bytes an idle HTTP/2 socket holds end the connection?"""
    if not waiting:
        return True
    if waiting[0] in (_TLS_ALERT, _TLS_DATA) and waiting[1:2] == b"\x03":
        if len(waiting) != 5 + int.from_bytes(waiting[3:5], "big"):
            return False  # more than one record: frames, served at reuse
        return waiting[0] == _TLS_ALERT or len(waiting) <= _TLS13_ALERT_SIZE
    offset = 0
    while offset + 9 <= len(waiting):  # plain HTTP/2 frame headers
        if waiting[offset + 3] == _GOAWAY:
            return True
        offset += 9 + int.from_bytes(waiting[offset : offset + 3], "big")
    return False


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
