"""Local servers for ``hintpool demo``, ``hintpool bench`` and the test suite.

Package-private: an HTTP/1.1 server (asyncio + h11, in a background thread)
that behaves like a keep-alive server -- ``Keep-Alive`` header, idle close,
``max`` requests, fault routes -- and a TCP relay that adds latency.  Only
the standard library and h11 (a hintpool dependency) are needed.
"""

from __future__ import annotations

from .delay_proxy import DelayProxy
from .loop import LocalServerError, LoopThread
from .server import ConnectionRecord, LocalServer, ServerConfig

__all__ = [
    "ConnectionRecord",
    "DelayProxy",
    "LocalServer",
    "LocalServerError",
    "LoopThread",
    "ServerConfig",
]
