"""Bookkeeping of HTTP/2 connections: many requests on one connection.

Theory of operation
-------------------
Pure and synchronous, like ``hintpool._state``, whose object every function
here takes: the pool calls in under its lock and does the I/O afterwards.

An HTTP/2 connection holds one connection slot (``open_count`` counts
connections, never streams) and carries up to the server's
``SETTINGS_MAX_CONCURRENT_STREAMS`` requests at once (``streams``):

* While at least one stream is open its lifetime is ACTIVE; the pool's
  lifecycle (``hintpool._policy``) is the HTTP/1.1 one, with "a request"
  read as "the first stream after idle" and "the response ended" as "the
  last stream ended". With no stream open it is IDLE, on its origin's idle
  stack and in the deadline heap like any idle connection: it expires at
  ``keepalive_expiry`` or the origin's learned timeout, and the reaper
  closes it then.
* An ACTIVE connection with a free stream sits in its origin's ``shared``
  set. :func:`take_stream` looks there first, before the idle stack, so
  requests to an origin share the connection already busy instead of
  opening more: O(1), the set holds only connections with room.
* GOAWAY (or any failure that makes the connection unavailable) takes it
  out of ``shared`` at once; it is closed when its last stream ends.
* Fairness at ``max_connections``: a free stream goes to the origin's
  queued requests first, oldest first, before the connection (re)enters
  ``shared`` (:func:`_serve_waiters`). So while a request of an origin
  waits, that origin's ``shared`` is empty and new requests queue behind
  it instead of taking the streams it waits for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._origin import OriginState, PooledConnection

if TYPE_CHECKING:
    from ._state import PoolState

__all__ = ["first_stream", "handed_stream", "stream_done", "stream_lost", "take_stream"]


def take_stream(state: PoolState, origin: OriginState) -> PooledConnection | None:
    """A stream on an active HTTP/2 connection of ``origin``, or None."""
    shared = origin.shared
    while shared:
        conn = next(iter(shared))
        # The server may have lowered its limit since (a SETTINGS frame).
        if (
            not _open_for_streams(state, conn)
            or conn.streams >= conn.connection.max_streams
        ):
            del shared[conn]
            continue
        _add_stream(state, conn)
        if conn.streams >= conn.connection.max_streams:
            del shared[conn]
        return conn
    return None


def _add_stream(state: PoolState, conn: PooledConnection) -> None:
    """One more request on ``conn``, already carrying one."""
    origin = conn.origin
    conn.streams += 1
    if conn.streams > origin.streams_peak:
        origin.streams_peak = conn.streams
    origin.requests += 1
    origin.reused += 1
    state.totals.requests += 1
    state.totals.reused += 1


def first_stream(state: PoolState, conn: PooledConnection) -> None:
    """``conn`` (new, or taken idle) carries its first stream: share it."""
    conn.http2 = True
    conn.streams = 1
    origin = conn.origin
    connection = conn.connection
    if origin.max_streams is not None and connection.announced_streams is None:
        # Until its SETTINGS arrive, as many streams as the server allowed
        # the last time: not 100 when it said 10.
        connection.assumed_streams = origin.max_streams
    origin.http_version = "HTTP/2"
    if origin.streams_peak < 1:
        origin.streams_peak = 1
    if (
        conn.connection.max_streams > 1
        and _open_for_streams(state, conn)
        and (not state.waiters or _serve_waiters(state, conn))
    ):
        origin.shared[conn] = None


def stream_done(
    state: PoolState,
    conn: PooledConnection,
    now: float,
    to_close: list[PooledConnection],
) -> None:
    """A stream of ``conn`` ended (its response closed, or it failed)."""
    conn.streams -= 1
    origin = conn.origin
    announced = conn.connection.announced_streams
    if announced is not None:
        origin.max_streams = announced
    if not _open_for_streams(state, conn):
        origin.shared.pop(conn, None)
        if conn.streams == 0:
            state.release(conn, now, False, to_close)
        return
    if conn.streams == 0:
        origin.shared.pop(conn, None)
        state.release(conn, now, True, to_close)
    elif conn.streams < conn.connection.max_streams and (
        not state.waiters or _serve_waiters(state, conn)
    ):
        origin.shared[conn] = None


def stream_lost(
    state: PoolState,
    conn: PooledConnection,
    now: float,
    to_close: list[PooledConnection],
) -> None:
    """A stream on a reused connection met a close without GOAWAY before any
    frame of its response: the server closed the idle connection as the
    request went out. The close counts in ``closed_by_server`` and teaches
    the idle timeout once per connection (every stream on it fails alike)."""
    connection = conn.connection
    if not getattr(connection, "close_counted", True):
        connection.close_counted = True
        state.count(conn.origin, "closed_by_server")
        conn.learn_close(now, state.policy.margin)
    stream_done(state, conn, now, to_close)


def _serve_waiters(state: PoolState, conn: PooledConnection) -> bool:
    """Hand ``conn``'s free streams to its origin's queued requests, oldest
    first; whether a free stream is left. Each waiter gets ``conn`` with its
    stream already counted (see :func:`handed_stream`)."""
    waiters = state.waiters
    key = conn.origin.key
    while conn.streams < conn.connection.max_streams:
        waiter = waiters.first_of(key)
        if waiter is None:
            return True
        _add_stream(state, conn)
        waiters.assign(waiter, conn)
    return False


def handed_stream(conn: PooledConnection) -> bool:
    """Whether a waiter given ``conn`` got a stream of it (by
    :func:`_serve_waiters`) rather than the whole connection, idle."""
    return conn.http2 and conn.streams > 0


def _open_for_streams(state: PoolState, conn: PooledConnection) -> bool:
    """Whether new streams may go on ``conn``; counts a GOAWAY once."""
    if conn.goaway:
        return False
    connection = conn.connection
    if getattr(connection, "goaway", None) is not None:
        conn.goaway = True
        state.count(conn.origin, "goaways_received")
        return False
    return conn.generation == state.generation and bool(connection.is_available())
