"""The test server now lives in :mod:`hintpool._local.server`; re-exported here.

``TestServer`` is the name the tests know :class:`LocalServer` by.
"""

from __future__ import annotations

from hintpool._local.loop import (
    LocalServerError,
    LoopThread,
    abort_with_rst,
    close_writer,
    set_linger_zero,
)
from hintpool._local.server import ConnectionRecord, ServerConfig
from hintpool._local.server import LocalServer as TestServer

__all__ = [
    "ConnectionRecord",
    "LocalServerError",
    "LoopThread",
    "ServerConfig",
    "TestServer",
    "abort_with_rst",
    "close_writer",
    "set_linger_zero",
]
