"""hintpool: an HTTP/1.1 connection pool that honours the server's Keep-Alive.

Use :class:`HTTPTransport` / :class:`AsyncHTTPTransport` as the ``transport=``
of an ``httpx.Client`` / ``httpx.AsyncClient``, or the pools directly.
"""

from __future__ import annotations

from .__version__ import __version__
from ._async.connection_pool import AsyncConnectionPool
from ._async.transport import AsyncHTTPTransport
from ._exceptions import (
    CloseError,
    ConnectError,
    ConnectTimeout,
    HintpoolError,
    LocalProtocolError,
    NetworkError,
    PoolClosed,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TimeoutException,
    UnsupportedConfiguration,
    UnsupportedProtocol,
    WriteError,
    WriteTimeout,
)
from ._hints import KeepAlive, parse_keep_alive
from ._policy import LifetimePolicy
from ._respx import register_with_respx
from ._state import OriginStatistics, PoolStatistics
from ._stats import ProxyStatistics
from ._sync.connection_pool import ConnectionPool
from ._sync.transport import HTTPTransport

__all__ = [
    "AsyncConnectionPool",
    "AsyncHTTPTransport",
    "CloseError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionPool",
    "HTTPTransport",
    "HintpoolError",
    "KeepAlive",
    "LifetimePolicy",
    "LocalProtocolError",
    "NetworkError",
    "OriginStatistics",
    "PoolClosed",
    "PoolStatistics",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ProxyStatistics",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "TimeoutException",
    "UnsupportedConfiguration",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
    "__version__",
    "parse_keep_alive",
]

register_with_respx()
