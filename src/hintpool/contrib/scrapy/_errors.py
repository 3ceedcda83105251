"""hintpool's failures as the exceptions Scrapy's RetryMiddleware retries.

Theory of operation
-------------------
Scrapy >= 2.15's built-in handlers raise ``scrapy.exceptions.Download*``
errors; spiders written for older versions (and Scrapy's own documentation
of errbacks) check Twisted's classes: ``TimeoutError``, ``DNSLookupError``,
``ConnectionRefusedError``, ``ResponseFailed``. Each class here derives from
both, so ``RETRY_EXCEPTIONS`` (old or new defaults, or the user's own list)
and ``failure.check(...)`` in an errback match as they do for Scrapy's own
handler. The hintpool exception stays reachable as ``__cause__``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from twisted.internet.defer import CancelledError as TxCancelledError
from twisted.internet.error import ConnectError as TxConnectError
from twisted.internet.error import ConnectionRefusedError as TxConnectionRefusedError
from twisted.internet.error import DNSLookupError as TxDNSLookupError
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from ..._exceptions import (
    ConnectError,
    HintpoolError,
    RemoteProtocolError,
    TimeoutException,
)

try:
    from scrapy.exceptions import (
        CannotResolveHostError,
        DownloadCancelledError,
        DownloadConnectionRefusedError,
        DownloadFailedError,
        DownloadTimeoutError,
        ResponseDataLossError,
    )
except ImportError:  # pragma: no cover  (Scrapy < 2.15 has only Twisted's)

    class CannotResolveHostError(Exception):  # type: ignore[no-redef]
        pass

    class DownloadCancelledError(Exception):  # type: ignore[no-redef]
        pass

    class DownloadConnectionRefusedError(Exception):  # type: ignore[no-redef]
        pass

    class DownloadFailedError(Exception):  # type: ignore[no-redef]
        pass

    class DownloadTimeoutError(Exception):  # type: ignore[no-redef]
        pass

    class ResponseDataLossError(Exception):  # type: ignore[no-redef]
        pass


__all__ = [
    "ConnectFailed",
    "ConnectionRefused",
    "DataLoss",
    "DownloadCancelled",
    "DownloadTimeout",
    "HostNotFound",
    "ResponseBroken",
    "ResponseNotReceived",
    "body_error",
    "request_error",
]


class _Failure(Exception):
    """Message first; the Twisted attributes a check may read are set."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        # Twisted's ConnectError keeps the OS error, _WrapperException
        # (ResponseFailed) a list of Failures: both read by user errbacks.
        self.osError = cause if isinstance(cause, OSError) else None
        self.reasons = [Failure(cause)] if cause is not None else []  # type: ignore[no-untyped-call]
        self.response = None

    def __str__(self) -> str:
        return self.message


class DownloadTimeout(_Failure, DownloadTimeoutError, TxTimeoutError):
    """``download_timeout`` passed, or a connect / read / write timed out."""


class ConnectionRefused(
    _Failure, DownloadConnectionRefusedError, TxConnectionRefusedError
):
    """The server refused the TCP connection."""


class HostNotFound(_Failure, CannotResolveHostError, TxDNSLookupError):
    """The host name did not resolve."""


class ConnectFailed(_Failure, DownloadFailedError, TxConnectError):
    """Connecting failed otherwise: reset, unreachable, TLS handshake."""


class ResponseNotReceived(_Failure, DownloadFailedError, ResponseNeverReceived):
    """The connection failed before the response's head arrived."""


class ResponseBroken(_Failure, DownloadFailedError, ResponseFailed):
    """The connection failed in the middle of the response body."""


class DataLoss(_Failure, ResponseDataLossError, ResponseFailed):
    """The server closed before the announced body was complete."""


class DownloadCancelled(_Failure, DownloadCancelledError, TxCancelledError):
    """DOWNLOAD_MAXSIZE was passed, or the handler closed mid-download."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def request_error(exc: BaseException, url: str, timeout: float) -> Exception | None:
    """The Scrapy exception for a hintpool failure before the response head;
    None for what is not a download failure (a bug, a cancellation)."""
    if isinstance(exc, TimeoutException):  # PoolTimeout included
        return DownloadTimeout(
            f"Getting {url} took longer than {timeout} seconds ({exc}).", exc
        )
    if isinstance(exc, ConnectError):
        for cause in _causes(exc):
            if isinstance(cause, socket.gaierror):
                return HostNotFound(f"{url}: {exc}", exc)
            if isinstance(cause, ConnectionRefusedError):
                return ConnectionRefused(f"{url}: {exc}", exc)
        return ConnectFailed(f"{url}: {exc}", exc)
    if isinstance(exc, (HintpoolError, OSError)):
        return ResponseNotReceived(f"{url}: {exc}", exc)
    return None


def body_error(exc: BaseException, url: str, timeout: float) -> Exception | None:
    """As :func:`request_error`, for a failure while the body was read."""
    if isinstance(exc, TimeoutException):
        return DownloadTimeout(
            f"Getting {url} took longer than {timeout} seconds ({exc}).", exc
        )
    if isinstance(exc, RemoteProtocolError):
        return DataLoss(f"{url}: {exc}", exc)
    if isinstance(exc, (HintpoolError, OSError)):
        return ResponseBroken(f"{url}: {exc}", exc)
    return None
