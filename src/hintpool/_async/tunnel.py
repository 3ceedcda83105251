"""Opening a tunnel through a proxy on a connected stream: CONNECT or SOCKS5.

The stream is anything with httpcore's ``read(max_bytes, timeout)`` and
``write(data, timeout)``: an httpcore network stream (TLS to an https://
proxy included) or the socket under hintpool's own connection before the
connection takes it over. So the same code runs on both wires, on asyncio,
trio and in sync code. The bytes and their checks are in
``hintpool._proxy`` and ``hintpool._socks``.

Errors: the proxy's refusal, or a proxy that closes or resets during the
handshake, is :class:`~hintpool.ProxyError`; running out of the connect
timeout is ``ConnectTimeout``. The caller closes the stream on any error.
"""

from __future__ import annotations

from typing import Any

import httpcore

from .. import _socks
from .._exceptions import ConnectTimeout, ProxyError
from .._proxy import (
    ProxyConfig,
    authority,
    connect_head_end,
    connect_request,
    parse_connect_response,
)

__all__ = ["open_tunnel"]

READ_SIZE = 4096


async def open_tunnel(
    stream: Any,
    proxy: ProxyConfig,
    origin: httpcore.Origin,
    timeout: float | None,
) -> None:
    """Ask ``proxy`` (at the other end of ``stream``) for a tunnel to ``origin``."""
    target = authority(origin).decode("ascii")
    try:
        if proxy.is_socks:
            await _socks5(stream, proxy, origin, target, timeout)
        else:
            await _connect(stream, proxy, origin, target, timeout)
    except (httpcore.ReadTimeout, httpcore.WriteTimeout) as exc:
        raise ConnectTimeout(
            f"proxy {proxy.label} did not open a tunnel to {target} in time"
        ) from exc
    except (httpcore.ReadError, httpcore.WriteError) as exc:
        raise ProxyError(
            f"proxy {proxy.label} failed while opening a tunnel to {target}: {exc}"
        ) from exc


async def _connect(
    stream: Any,
    proxy: ProxyConfig,
    origin: httpcore.Origin,
    target: str,
    timeout: float | None,
) -> None:
    await stream.write(connect_request(origin, proxy), timeout)
    buffer = b""
    while True:
        chunk = await stream.read(READ_SIZE, timeout)
        if not chunk:
            raise ProxyError(
                f"proxy {proxy.label} closed the connection before answering "
                f"CONNECT {target}"
            )
        buffer += chunk
        end = connect_head_end(buffer)
        if end >= 0:
            break
    parse_connect_response(buffer[:end], target, proxy.label)
    if len(buffer) > end:
        # TLS to the origin starts with our ClientHello: nothing may come
        # before it (a body on a 2xx CONNECT answer is not allowed either).
        raise ProxyError(
            f"proxy {proxy.label} sent unexpected bytes after accepting "
            f"CONNECT {target}"
        )


async def _read_exactly(
    stream: Any, size: int, timeout: float | None, proxy: ProxyConfig, target: str
) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.read(size - len(data), timeout)
        if not chunk:
            raise ProxyError(
                f"SOCKS5 proxy {proxy.label} closed the connection during the "
                f"handshake for {target}"
            )
        data += chunk
    return data


async def _socks5(
    stream: Any,
    proxy: ProxyConfig,
    origin: httpcore.Origin,
    target: str,
    timeout: float | None,
) -> None:
    auth = proxy.auth
    label = proxy.label
    await stream.write(_socks.auth_methods_request(auth is not None), timeout)
    reply = await _read_exactly(stream, _socks.AUTH_REPLY_SIZE, timeout, proxy, target)
    _socks.check_auth_reply(reply, auth is not None, label)
    if auth is not None:
        await stream.write(_socks.password_request(*auth), timeout)
        reply = await _read_exactly(
            stream, _socks.AUTH_REPLY_SIZE, timeout, proxy, target
        )
        _socks.check_password_reply(reply, label)
    host = origin.host.decode("ascii")
    if not proxy.remote_dns:
        host = await _socks.async_resolve(host, origin.port)
    await stream.write(_socks.command_request(host, origin.port), timeout)
    head = await _read_exactly(stream, _socks.REPLY_HEAD_SIZE, timeout, proxy, target)
    size = _socks.reply_size(head, target, label)
    rest = await _read_exactly(stream, size - len(head), timeout, proxy, target)
    _socks.check_command_reply(head + rest, target, label)
