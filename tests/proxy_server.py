"""A small in-process proxy for the tests: HTTP forward + CONNECT, or SOCKS5.

It runs on its own event loop thread (``LoopThread``), so sync, asyncio and
trio tests all use it. It records what it saw (connections, forwarded
request lines, CONNECT and SOCKS targets) and can misbehave on purpose:
answer CONNECT with scripted bytes, close after accepting, answer SOCKS
with a scripted reply.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from hintpool._local.loop import LoopThread, close_writer

__all__ = ["ProxyBehaviour", "TestProxy"]

# StreamWriter.start_tls exists from Python 3.11.
_HANDSHAKE_IN_HANDLER = sys.version_info >= (3, 11)


@dataclass
class ProxyBehaviour:
    #: Required credentials (user, password); None: no authentication.
    auth: tuple[str, str] | None = None
    #: ``Keep-Alive`` header the proxy adds to forwarded responses.
    keep_alive: str | None = None
    #: Bytes sent as the whole answer to CONNECT, then the proxy closes.
    connect_answer: bytes | None = None
    #: Read CONNECT and never answer.
    stall_connect: bool = False
    #: Answer CONNECT with an HTTP/1.0 status line (as tinyproxy does).
    http10: bool = False
    #: Accept CONNECT (200), then close at once.
    close_after_connect: bool = False
    #: Bytes sent as the SOCKS5 reply to the CONNECT command, then close.
    socks_reply: bytes | None = None
    #: Close the client connection after this many forwarded requests.
    max_forwarded: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TestProxy(LoopThread):
    """``kind``: "http" (forward + CONNECT; TLS to it when ``tls`` is given)
    or "socks5"."""

    __test__ = False
    _thread_name = "hintpool-test-proxy"

    def __init__(
        self,
        kind: str = "http",
        behaviour: ProxyBehaviour | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__("127.0.0.1")
        self.kind = kind
        self.behaviour = behaviour or ProxyBehaviour()
        self.tls = tls
        self._lock = threading.Lock()
        self.connections = 0
        self.open_connections = 0
        #: Connections the proxy half-closed after ``max_forwarded``.
        self.fins_sent = 0
        #: (method, target) of every request line received (CONNECT included).
        self.requests: list[tuple[str, str]] = []
        #: Headers of every request received, lower-cased names.
        self.headers: list[dict[str, str]] = []
        #: SOCKS5: (address type, host) asked for.
        self.socks_targets: list[tuple[int, str]] = []

    @property
    def url(self) -> str:
        if self.kind == "socks5":
            return f"socks5://127.0.0.1:{self.port}"
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _listener_tls(self) -> ssl.SSLContext | None:
        return None if _HANDSHAKE_IN_HANDLER else self.tls

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.tls is not None and _HANDSHAKE_IN_HANDLER:
            # In the handler task, so that stop() cancels a handshake in
            # progress and closes its transport (as the test server does).
            try:
                await writer.start_tls(self.tls)  # type: ignore[attr-defined,unused-ignore]
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                return
        with self._lock:
            self.connections += 1
            self.open_connections += 1
        try:
            if self.kind == "socks5":
                await self._socks5(reader, writer)
            else:
                await self._http(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self.open_connections -= 1

    # -- HTTP ----------------------------------------------------------------

    async def _read_head(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, str, dict[str, str]] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        with self._lock:
            self.requests.append((method, target))
            self.headers.append(headers)
        return method, target, headers

    def _authorised(self, headers: dict[str, str]) -> bool:
        auth = self.behaviour.auth
        if auth is None:
            return True
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return headers.get("proxy-authorization") == f"Basic {token}"

    async def _http(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        forwarded = 0
        while True:
            parsed = await self._read_head(reader)
            if parsed is None:
                return
            method, target, headers = parsed
            if not self._authorised(headers):
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if method == "CONNECT":
                await self._connect(target, reader, writer)
                return
            body = b""
            length = int(headers.get("content-length", "0"))
            if length:
                body = await reader.readexactly(length)
            await self._forward(method, target, headers, body, writer)
            forwarded += 1
            limit = self.behaviour.max_forwarded
            if limit is not None and forwarded >= limit:
                # FIN, then read on for a while as servers do, so that a
                # request sent meanwhile meets an EOF rather than a reset.
                writer.write_eof()
                with self._lock:
                    self.fins_sent += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reader.read(), 2.0)
                return

    async def _forward(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        assert target.startswith("http://"), target
        rest = target[len("http://") :]
        authority, _, path = rest.partition("/")
        host, _, port = authority.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        try:
            lines = [f"{method} /{path} HTTP/1.1"]
            for name, value in headers.items():
                if name not in ("connection", "proxy-authorization", "keep-alive"):
                    lines.append(f"{name}: {value}")
            lines.append("connection: close")
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            response = await up_reader.read()
        finally:
            await close_writer(up_writer)
        head, _, content = response.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        kept = [
            line
            for line in header_lines
            if line.split(":", 1)[0].strip().lower()
            not in ("connection", "keep-alive", "content-length", "transfer-encoding")
        ]
        kept.append(f"Content-Length: {len(content)}")
        kept.append("Connection: keep-alive")
        if self.behaviour.keep_alive is not None:
            kept.append(f"Keep-Alive: {self.behaviour.keep_alive}")
        if "chunked" in head.decode("latin-1").lower():
            content = _dechunk(content)
            kept[-3 if self.behaviour.keep_alive else -2] = (
                f"Content-Length: {len(content)}"
            )
        writer.write(("\r\n".join([status_line, *kept]) + "\r\n\r\n").encode())
        writer.write(content)
        await writer.drain()

    async def _connect(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        behaviour = self.behaviour
        if behaviour.stall_connect:
            await reader.read()  # until the client gives up
            return
        if behaviour.connect_answer is not None:
            writer.write(behaviour.connect_answer)
            await writer.drain()
            return
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        try:
            version = b"1.0" if behaviour.http10 else b"1.1"
            writer.write(b"HTTP/%b 200 Connection established\r\n\r\n" % version)
            await writer.drain()
            if not behaviour.close_after_connect:
                await _pipe_both(reader, writer, up_reader, up_writer)
        finally:
            await close_writer(up_writer)

    # -- SOCKS5 --------------------------------------------------------------

    async def _socks5(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        behaviour = self.behaviour
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        want = 2 if behaviour.auth is not None else 0
        if version != 5 or want not in methods:
            writer.write(b"\x05\xff")
            await writer.drain()
            return
        writer.write(bytes([5, want]))
        await writer.drain()
        if want == 2:
            _, ulen = await reader.readexactly(2)
            user = await reader.readexactly(ulen)
            (plen,) = await reader.readexactly(1)
            password = await reader.readexactly(plen)
            assert behaviour.auth is not None
            ok = (user.decode(), password.decode()) == behaviour.auth
            writer.write(b"\x01\x00" if ok else b"\x01\x01")
            await writer.drain()
            if not ok:
                return
        _, _command, _, atype = await reader.readexactly(4)
        if atype == 1:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        elif atype == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        else:
            raw = await reader.readexactly(16)
            import ipaddress

            host = str(ipaddress.IPv6Address(raw))
        port = int.from_bytes(await reader.readexactly(2), "big")
        with self._lock:
            self.socks_targets.append((atype, host))
        if behaviour.socks_reply is not None:
            writer.write(behaviour.socks_reply)
            await writer.drain()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.write(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
            await writer.drain()
            return
        try:
            writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00")
            await writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer)
        finally:
            await close_writer(up_writer)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    # Either side's end ends the tunnel (a TLS client cannot half-close).
    tasks = {
        asyncio.ensure_future(_pipe(reader, up_writer)),
        asyncio.ensure_future(_pipe(up_reader, writer)),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
