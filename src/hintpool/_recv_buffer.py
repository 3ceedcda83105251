"""One receive buffer per thread, shared by every connection the thread
reads from, asyncio's and the sync pool's alike.

A connection reads into it and hands the bytes to its codec (or TLS
object) before anything else can run in the thread; those copy what they
keep (a body chunk given to the caller is always a ``bytes`` of its own),
so the next read may overwrite the buffer. An idle connection then holds
no buffer at all: with one per connection, 64 KiB or more each, idle
connections cost ten times their own state.
"""

from __future__ import annotations

import threading

__all__ = ["RECV_SIZE", "receive_buffer"]

#: Size of the buffer: asyncio's own read size.
RECV_SIZE = 256 * 1024

_per_thread = threading.local()


def receive_buffer() -> memoryview:
    """This thread's receive buffer (``RECV_SIZE`` bytes)."""
    try:
        view: memoryview = _per_thread.buffer
    except AttributeError:
        view = _per_thread.buffer = memoryview(bytearray(RECV_SIZE))
    return view
