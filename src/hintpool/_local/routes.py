"""The local server's connection wrapper, response helpers and routes.

Normal routes (``/``, ``/echo``, ``/headers``, ``/close``, ``/conn``,
``/bytes/N``, ``/chunked/N``, ``/delay/S``, ``/status/N``, and ``/hold``,
answered when the test calls ``LocalServer.release_held()``) return a
``(status, extra headers, body, chunked)`` tuple and let the server add the
framing and the keep-alive headers; fault routes (``/fault/NAME``) write raw,
often broken, bytes themselves and end the connection by raising
:class:`CloseConnection`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from http import HTTPStatus
from typing import Literal

import h11

__all__ = ["CloseConnection", "Conn", "fault", "head", "route", "tokens"]

READ_SIZE = 65536
#: Upper bound for ``/delay/S``.
MAX_DELAY = 30.0
#: ``/fault/trickle`` gives up after this many seconds.
TRICKLE_DURATION = 20.0
TRICKLE_INTERVAL = 0.5
MAX_BYTES = 256 * 1024 * 1024

How = Literal["fin", "rst", "peer"]
Route = tuple[int, list[tuple[str, str]], bytes, bool]


class CloseConnection(Exception):
    """Raised inside a connection handler to end the connection."""

    def __init__(self, reason: str, how: How = "fin") -> None:
        super().__init__(reason)
        self.reason = reason
        self.how: How = how


class Conn:
    """One accepted connection: its streams and the server's record of it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.number = number

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, ssl.SSLError) as exc:
            raise CloseConnection("client", "peer") from exc

    async def read(self, timeout: float | None) -> bytes:
        """Read some bytes (b"" on EOF); raises asyncio.TimeoutError."""
        try:
            if timeout is None:
                return await self.reader.read(READ_SIZE)
            return await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
        except asyncio.TimeoutError:  # an OSError subclass on Python >= 3.11
            raise
        except (OSError, ssl.SSLError) as exc:
            raise CloseConnection("client", "peer") from exc


def _status_line(version: bytes, status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return b"HTTP/%s %d %s\r\n" % (version, status, phrase.encode("ascii"))


def head(version: bytes, status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [_status_line(version, status)]
    lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


def tokens(request: h11.Request, name: bytes) -> set[bytes]:
    out: set[bytes] = set()
    for key, value in request.headers:
        if key == name:
            out.update(t.strip().lower() for t in value.split(b","))
    return out


async def route(conn: Conn, request: h11.Request, body: bytes, k: int) -> Route:
    """Return (status, extra headers, body, chunked) for a normal route."""
    path = request.target.decode("latin-1").split("?", 1)[0]
    bad: Route = (400, [], b"bad request", False)
    if path == "/":
        return 200, [], b"hello", False
    if path == "/echo":
        return 200, [("X-Method", request.method.decode("latin-1"))], body, False
    if path == "/headers":
        items = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers]
        payload = json.dumps(items).encode()
        return 200, [("Content-Type", "application/json")], payload, False
    if path == "/close":
        return 200, [], b"closing", False
    if path == "/hold":
        return 200, [], b"released", False
    if path == "/conn":
        number = str(conn.number).encode()
        return 200, [("X-Request-On-Conn", str(k))], number, False
    prefix, _, arg = path[1:].partition("/")
    try:
        if prefix in ("bytes", "chunked"):
            n = int(arg)
            if not 0 <= n <= MAX_BYTES:
                return bad
            return 200, [], b"x" * n, prefix == "chunked"
        if prefix == "delay":
            await asyncio.sleep(min(max(float(arg), 0.0), MAX_DELAY))
            return 200, [], b"delayed", False
        if prefix == "status":
            status = int(arg)
            if not 200 <= status <= 999:
                return bad
            return status, [], b"", False
    except ValueError:
        return bad
    return 404, [], b"not found", False


async def fault(conn: Conn, name: str) -> None:
    """Misbehave as ``/fault/NAME`` asks; most end the connection."""
    chunked_head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    if name == "reset-headers":
        raise CloseConnection("error", "rst")
    if name == "reset-body":
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await asyncio.sleep(0.05)  # let the 10 bytes reach the client first
        raise CloseConnection("error", "rst")
    if name == "garbage":
        await conn.send(b"NOT HTTP AT ALL\r\n\r\n")
        raise CloseConnection("error")
    if name == "truncated-chunked":
        await conn.send(chunked_head + b"5\r\nhello\r\n")
        raise CloseConnection("error")
    if name == "close-no-response":
        raise CloseConnection("error")
    if name == "trickle":
        await _trickle(conn)
        raise CloseConnection("error")
    if name == "stall-body":
        # A body that never completes: 10 of 1000 bytes, then nothing until
        # the client gives up (bounded), so a client is surely mid-body.
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        try:
            data = await conn.read(TRICKLE_DURATION)
        except asyncio.TimeoutError:
            raise CloseConnection("error") from None
        raise CloseConnection("client" if not data else "error", "peer")
    if name == "huge-headers":
        headers = [(f"X-Huge-{i:03d}", "a" * 1000) for i in range(200)]
        headers.append(("Content-Length", "5"))
        await conn.send(head(b"1.1", 200, headers) + b"hello")
        return
    await conn.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


async def _trickle(conn: Conn) -> None:
    """Status line, then one header byte per TRICKLE_INTERVAL (bounded)."""
    await conn.send(b"HTTP/1.1 200 OK\r\n")
    header = b"X-Trickle: " + b"a" * 200
    loop = asyncio.get_running_loop()
    end = loop.time() + TRICKLE_DURATION
    next_send = loop.time() + TRICKLE_INTERVAL
    i = 0
    while i < len(header) and loop.time() < end:
        # Wait for the next tick, noticing a client that went away.
        try:
            data = await conn.read(max(next_send - loop.time(), 0.0))
        except asyncio.TimeoutError:
            await conn.send(header[i : i + 1])
            i += 1
            next_send += TRICKLE_INTERVAL
            continue
        if not data:
            raise CloseConnection("client", "peer")
