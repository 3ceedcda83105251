"""One exception tree for hintpool.

Every error the pool raises is a :class:`HintpoolError`. Each class also
derives from the httpcore exception of the same name, so code written for
``httpcore.ConnectionPool`` keeps working, and the httpx transports translate
each one 1:1 into the httpx exception users already catch (see
``hintpool._transports``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import httpcore

__all__ = [
    "CloseError",
    "ConnectError",
    "ConnectTimeout",
    "HintpoolError",
    "LocalProtocolError",
    "NetworkError",
    "PoolClosed",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "TimeoutException",
    "UnsupportedConfiguration",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
]


class HintpoolError(Exception):
    """Base class of every exception hintpool raises."""


class UnsupportedConfiguration(HintpoolError, ValueError):
    """An option hintpool does not support (yet), such as ``http2=True``."""


class UnsupportedProtocol(HintpoolError, httpcore.UnsupportedProtocol):
    """The URL's scheme is not ``http`` or ``https``, or it has no host."""


class ProtocolError(HintpoolError, httpcore.ProtocolError):
    """The HTTP/1.1 exchange broke the protocol."""


class RemoteProtocolError(ProtocolError, httpcore.RemoteProtocolError):
    """The server broke the protocol, or closed without sending a response."""


class LocalProtocolError(ProtocolError, httpcore.LocalProtocolError):
    """The request could not be sent as valid HTTP/1.1."""


class TimeoutException(HintpoolError, httpcore.TimeoutException):
    """A timeout from the request's ``timeout`` extension expired."""


class ConnectTimeout(TimeoutException, httpcore.ConnectTimeout):
    pass


class ReadTimeout(TimeoutException, httpcore.ReadTimeout):
    pass


class WriteTimeout(TimeoutException, httpcore.WriteTimeout):
    pass


class PoolTimeout(TimeoutException, httpcore.PoolTimeout):
    """No connection slot became free within the ``pool`` timeout."""


class NetworkError(HintpoolError, httpcore.NetworkError):
    pass


class ConnectError(NetworkError, httpcore.ConnectError):
    pass


class ReadError(NetworkError, httpcore.ReadError):
    pass


class WriteError(NetworkError, httpcore.WriteError):
    pass


class CloseError(NetworkError):
    pass


class ProxyError(HintpoolError, httpcore.ProxyError):
    """The proxy refused or broke the tunnel: a non-2xx answer to CONNECT
    (407 included), a SOCKS5 refusal, or a proxy that closed during the
    handshake. The message has the proxy's status and reason, never the
    credentials. Never retried: nothing was sent to the origin.
    """


class PoolClosed(ConnectError):
    """Not raised any more: a closed pool stays usable, as httpx's does.

    Kept so that code naming it still imports. It was a ``RuntimeError``
    that no httpx ``except`` clause caught; it is a :class:`ConnectError`
    now, should anything raise it.
    """


# httpcore class -> ours. Looked up by exact type first, then along the MRO,
# so subclasses httpcore may add later still map to their nearest parent.
_FROM_HTTPCORE: dict[type[Exception], type[HintpoolError]] = {
    httpcore.UnsupportedProtocol: UnsupportedProtocol,
    httpcore.ProtocolError: ProtocolError,
    httpcore.RemoteProtocolError: RemoteProtocolError,
    httpcore.LocalProtocolError: LocalProtocolError,
    httpcore.TimeoutException: TimeoutException,
    httpcore.ConnectTimeout: ConnectTimeout,
    httpcore.ReadTimeout: ReadTimeout,
    httpcore.WriteTimeout: WriteTimeout,
    httpcore.PoolTimeout: PoolTimeout,
    httpcore.NetworkError: NetworkError,
    httpcore.ConnectError: ConnectError,
    httpcore.ReadError: ReadError,
    httpcore.WriteError: WriteError,
    httpcore.ProxyError: ProxyError,
}


def translate(exc: BaseException) -> BaseException:
    """Return the hintpool exception for an httpcore one (or ``exc`` itself)."""
    if isinstance(exc, HintpoolError):
        return exc
    for cls in type(exc).__mro__:
        ours = _FROM_HTTPCORE.get(cls)
        if ours is not None:
            new = ours(*exc.args)
            new.__cause__ = exc
            return new
    return exc


def raise_translated(exc: BaseException) -> NoReturn:
    """Raise the hintpool exception for ``exc`` (from within its handler)."""
    mapped = translate(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _httpx_map() -> dict[type[BaseException], type[Exception]]:
    import httpx

    return {
        UnsupportedProtocol: httpx.UnsupportedProtocol,
        ProtocolError: httpx.ProtocolError,
        RemoteProtocolError: httpx.RemoteProtocolError,
        LocalProtocolError: httpx.LocalProtocolError,
        TimeoutException: httpx.TimeoutException,
        ConnectTimeout: httpx.ConnectTimeout,
        ReadTimeout: httpx.ReadTimeout,
        WriteTimeout: httpx.WriteTimeout,
        PoolTimeout: httpx.PoolTimeout,
        NetworkError: httpx.NetworkError,
        ConnectError: httpx.ConnectError,
        ReadError: httpx.ReadError,
        WriteError: httpx.WriteError,
        CloseError: httpx.CloseError,
        ProxyError: httpx.ProxyError,
    }


_TO_HTTPX: dict[type[BaseException], type[Exception]] = {}


def to_httpx(exc: BaseException) -> BaseException:
    """The httpx exception for a hintpool (or httpcore) one, else ``exc``."""
    if not _TO_HTTPX:
        _TO_HTTPX.update(_httpx_map())
    exc = translate(exc)
    for cls in type(exc).__mro__:
        target = _TO_HTTPX.get(cls)
        if target is not None:
            return target(str(exc))
    return exc


def raise_as_httpx(exc: Exception) -> NoReturn:
    """Raise the httpx exception for ``exc`` (from within its handler)."""
    mapped = to_httpx(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


@contextlib.contextmanager
def as_httpx_errors() -> Iterator[None]:
    """Raise httpx's exception classes, so user ``except`` clauses match."""
    try:
        yield
    except Exception as exc:
        raise_as_httpx(exc)
