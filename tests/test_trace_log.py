"""httpcore-style DEBUG log lines for trace events (``hintpool._trace_log``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hintpool._trace_log import async_logging_trace, log_trace_event, logging_trace


def user_trace(name: str, info: dict[str, Any]) -> None:
    pass


async def async_user_trace(name: str, info: dict[str, Any]) -> None:
    pass


def test_callbacks_are_untouched_without_debug_logging() -> None:
    assert logging.getLogger("httpcore").getEffectiveLevel() > logging.DEBUG
    assert logging_trace(None) is None
    assert logging_trace(user_trace) is user_trace
    assert async_logging_trace(None) is None
    assert async_logging_trace(async_user_trace) is async_user_trace


def test_with_debug_logging_the_callback_still_gets_every_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def trace(name: str, info: dict[str, Any]) -> None:
        seen.append(name)

    with caplog.at_level(logging.DEBUG, logger="httpcore"):
        wrapped = logging_trace(trace)
        assert wrapped is not None and wrapped is not trace
        wrapped("http11.send_request_body.started", {"request": "r"})
        assert logging_trace(None) is log_trace_event
    assert seen == ["http11.send_request_body.started"]
    assert caplog.record_tuples == [
        ("httpcore.http11", logging.DEBUG, "send_request_body.started request='r'")
    ]


@pytest.mark.parametrize(
    ("name", "info", "logged"),
    [
        ("connection.connect_tcp.started", {"host": "h", "port": 1}, "host='h' port=1"),
        ("http11.send_request_headers.complete", {"return_value": None}, ""),
        ("http11.response_closed.started", {}, ""),
        ("http11.receive_response_body.failed", {"exception": None}, "exception=None"),
    ],
)
def test_lines_read_like_httpcores(
    name: str, info: dict[str, Any], logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="httpcore"):
        log_trace_event(name, info)
    prefix, _, event = name.partition(".")
    message = f"{event} {logged}".rstrip()
    assert caplog.record_tuples == [(f"httpcore.{prefix}", logging.DEBUG, message)]


def test_events_of_other_layers_are_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        log_trace_event("http2.send_request_headers.started", {})
    assert caplog.records == []
