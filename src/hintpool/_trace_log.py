"""httpcore's DEBUG log lines for the ``trace`` events hintpool emits itself.

httpx's default transport logs every step of a request through the loggers
``httpcore.connection`` and ``httpcore.http11`` at DEBUG (``connect_tcp.started
host='example.com' port=443 ...``), and httpx's documentation tells users to
turn them on to see what happens on the wire. Those lines come from
httpcore's connection classes; hintpool opens connections itself (for both
connection classes) and, on its own connection, sends the request itself, so
it emits the same events as a ``trace`` callback and logs them the same way.

When neither logger is enabled for DEBUG, the caller's callback (or None) is
handed back untouched: nothing is added to a request's path but two cached
``isEnabledFor`` look-ups.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

__all__ = [
    "async_http11_trace",
    "async_logging_trace",
    "http11_trace",
    "log_trace_event",
    "logging_trace",
]

_LOGGERS = {
    "connection": logging.getLogger("httpcore.connection"),
    "http11": logging.getLogger("httpcore.http11"),
}
_CONNECTION = _LOGGERS["connection"]
_HTTP11 = _LOGGERS["http11"]

Trace = Callable[[str, "dict[str, Any]"], Any]


def log_trace_event(name: str, info: dict[str, Any]) -> None:
    """Log one event as httpcore's ``Trace`` does: the logger's own name is
    the prefix, and a None return value is left out."""
    prefix, _, event = name.partition(".")
    logger = _LOGGERS.get(prefix)
    if logger is None or not logger.isEnabledFor(logging.DEBUG):
        return
    if not info or ("return_value" in info and info["return_value"] is None):
        logger.debug(event)
    else:
        args = " ".join(f"{key}={value!r}" for key, value in info.items())
        logger.debug(f"{event} {args}")


def _debug_enabled() -> bool:
    return _CONNECTION.isEnabledFor(logging.DEBUG) or _HTTP11.isEnabledFor(
        logging.DEBUG
    )


def logging_trace(trace: Trace | None) -> Trace | None:
    """``trace``, plus httpcore's DEBUG log lines when those loggers are on."""
    if not _debug_enabled():
        return trace
    if trace is None:
        return log_trace_event
    user_trace = trace

    def trace_and_log(name: str, info: dict[str, Any]) -> None:
        # httpcore calls the extension first, then logs.
        user_trace(name, info)
        log_trace_event(name, info)

    return trace_and_log


def async_logging_trace(trace: Any) -> Any:
    """:func:`logging_trace` for an async ``trace`` callback (awaited)."""
    if not _debug_enabled():
        return trace
    user_trace = trace

    async def trace_and_log(name: str, info: dict[str, Any]) -> None:
        if user_trace is not None:
            await user_trace(name, info)
        log_trace_event(name, info)

    return trace_and_log


def http11_trace(trace: Trace | None) -> Trace | None:
    """:func:`logging_trace` for one request's exchange, whose events all go
    to ``httpcore.http11``: without a callback, and with that logger off,
    None at the cost of one look-up (every request asks)."""
    if trace is None and not _HTTP11.isEnabledFor(logging.DEBUG):
        return None
    return logging_trace(trace)


def async_http11_trace(trace: Any) -> Any:
    """:func:`http11_trace` for an async ``trace`` callback."""
    if trace is None and not _HTTP11.isEnabledFor(logging.DEBUG):
        return None
    return async_logging_trace(trace)
