"""httpcore's ``trace`` events around an
:class:`~hintpool._asyncio_connection.AsyncFastConnection`'s opening and
exchange: the same names and arguments as httpcore's own connection sends.
Only used when a trace callback is set; the untraced path does none of this.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import httpcore

from ._h1 import ResponseHead

if TYPE_CHECKING:
    from ._asyncio_connection import AsyncFastConnection

__all__ = ["exchange_traced", "open_traced", "traced"]

_T = TypeVar("_T")


async def traced(
    trace: Any,
    name: str,
    info: dict[str, Any],
    step: Callable[..., Awaitable[_T]],
    *args: Any,
) -> _T:
    """Run ``step(*args)`` between httpcore's ``.started`` and ``.failed``
    trace events; the caller sends ``.complete`` with httpcore's value."""
    await trace(name + ".started", info)
    try:
        return await step(*args)
    except BaseException as exc:
        await trace(name + ".failed", {"exception": exc})
        raise


async def open_traced(
    conn: AsyncFastConnection,
    trace: Any,
    timeout: float | None,
    uds: str | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
) -> None:
    if uds is None:
        name = "connection.connect_tcp"
        info: dict[str, Any] = {
            "host": conn.origin.host.decode("ascii"),
            "port": conn.origin.port,
            "local_address": local_address,
            "timeout": timeout,
            "socket_options": socket_options,
        }
    else:
        name = "connection.connect_unix_socket"
        info = {"path": uds, "timeout": timeout, "socket_options": socket_options}
    await traced(
        trace,
        name,
        info,
        conn._connect,
        timeout,
        uds,
        local_address,
        socket_options,
    )
    await trace(name + ".complete", {"return_value": conn.network_stream})
    if ssl_context is None:
        return
    name = "connection.start_tls"
    info = {
        "ssl_context": ssl_context,
        "server_hostname": server_hostname,
        "timeout": timeout,
    }
    await traced(
        trace,
        name,
        info,
        conn._start_tls,
        ssl_context,
        server_hostname,
        session,
        timeout,
    )
    await trace(name + ".complete", {"return_value": conn.network_stream})


async def exchange_traced(
    conn: AsyncFastConnection, request: httpcore.Request, trace: Any, timeouts: Any
) -> ResponseHead:
    codec = conn._codec
    info = {"request": request}
    done = {"return_value": None}
    name = "http11.send_request_headers"
    await trace(name + ".started", info)
    try:
        conn._write(
            codec.start_request(request.method, request.url.target, request.headers)
        )
    except BaseException as exc:
        await trace(name + ".failed", {"exception": exc})
        raise
    await trace(name + ".complete", done)
    name = "http11.send_request_body"
    write_timeout = timeouts.get("write")
    await traced(trace, name, info, conn._send_body, request.stream, b"", write_timeout)
    await trace(name + ".complete", done)
    name = "http11.receive_response_headers"
    head = await traced(trace, name, info, conn._receive_head)
    value = (head.http_version, head.status, head.reason, head.headers)
    await trace(name + ".complete", {"return_value": value})
    return head
