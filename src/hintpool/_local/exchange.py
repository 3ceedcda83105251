"""One request/response exchange of the local server: reading a request
with h11, then framing the answer as raw bytes (Content-Length or chunked,
the ``Keep-Alive`` hint with its ``max`` countdown, ``Connection: close``)
as the :class:`ServerConfig` asks.  The connection's lifecycle and its
bookkeeping stay in :mod:`hintpool._local.server`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

from .routes import READ_SIZE, CloseConnection, Conn, head, tokens

__all__ = ["BAD_REQUEST", "REQUEST_TIMEOUT", "ServerConfig", "read_request", "respond"]

#: Bound on reading the rest of a request once its first byte arrived.
REQUEST_TIMEOUT = 30.0

BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


@dataclass
class ServerConfig:
    #: Value of the ``Keep-Alive`` response header (None: no header);
    #: ``{left}`` in it becomes the number of requests the connection still
    #: accepts after this one (Apache's countdown of ``max``).
    keep_alive: str | None = None
    #: Close (FIN) a connection idle this long after a response (None: never).
    idle_timeout: float | None = 5.0
    #: Close the connection after serving this many requests on it.
    max_requests: int | None = None
    #: Send ``Connection: close`` on the max_requests-th response.  When False
    #: the server just closes after it (a "lying" server).
    close_on_last: bool = True
    #: ``b"1.0"`` answers with HTTP/1.0 status lines and closes every time.
    http_version: bytes = b"1.1"


async def read_request(
    conn: Conn, leftover: bytes, eof: bool, idle_timeout: float | None
) -> tuple[h11.Request, bytes, bytes, bool]:
    parser = h11.Connection(h11.SERVER)
    started = bool(leftover)
    if leftover:
        parser.receive_data(leftover)
    if eof:
        parser.receive_data(b"")
    request: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            if eof:
                raise CloseConnection("client", "peer") from exc
            await conn.send(BAD_REQUEST)
            raise CloseConnection("error") from exc
        if event is h11.NEED_DATA:
            if eof:
                raise CloseConnection("client", "peer")
            timeout = REQUEST_TIMEOUT if started else idle_timeout
            try:
                data = await conn.read(timeout)
            except asyncio.TimeoutError as exc:
                raise CloseConnection("error" if started else "idle") from exc
            started = started or bool(data)
            eof = not data
            parser.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            trailing, closed = parser.trailing_data
            return request, bytes(body), trailing, closed or eof
        elif isinstance(event, h11.ConnectionClosed):
            raise CloseConnection("client", "peer")


async def respond(
    conn: Conn,
    cfg: ServerConfig,
    request: h11.Request,
    path: str,
    k: int,
    answer: tuple[int, list[tuple[str, str]], bytes, bool],
) -> None:
    """Send *answer* (the route's status, headers, payload, chunked) to the
    *k*-th request of the connection; CloseConnection if it was the last."""
    status, headers, payload, chunked = answer
    http10 = cfg.http_version == b"1.0"
    connection = tokens(request, b"connection")
    client_close = b"close" in connection or (
        request.http_version == b"1.0" and b"keep-alive" not in connection
    )
    chunked = chunked and not http10  # HTTP/1.0: the close delimits the body

    reason: str | None = None
    if http10 or client_close or path == "/close":
        reason = "close"
    elif cfg.max_requests is not None and k >= cfg.max_requests:
        reason = "max"

    no_body = status in (204, 304)
    out: list[tuple[str, str]] = []
    if no_body:
        payload = b""
    elif chunked:
        out.append(("Transfer-Encoding", "chunked"))
    elif not (http10 and path.startswith("/chunked/")):
        out.append(("Content-Length", str(len(payload))))
    if cfg.keep_alive is not None and not http10:
        # "{left}" counts down like Apache: requests still accepted after
        # this one on this connection.
        left = 100 if cfg.max_requests is None else max(0, cfg.max_requests - k)
        out.append(("Keep-Alive", cfg.keep_alive.replace("{left}", str(left))))
    if not http10 and (reason == "close" or (reason == "max" and cfg.close_on_last)):
        out.append(("Connection", "close"))
    out += headers

    version = b"1.0" if http10 else b"1.1"
    await conn.send(head(version, status, out))
    if not (request.method == b"HEAD" or no_body):
        await _send_body(conn, payload, chunked)
    if reason is not None:
        raise CloseConnection(reason)


async def _send_body(conn: Conn, payload: bytes, chunked: bool) -> None:
    if chunked:
        for i in range(0, len(payload), 1000):
            piece = payload[i : i + 1000]
            await conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        await conn.send(b"0\r\n\r\n")
    else:
        for i in range(0, len(payload), READ_SIZE):
            await conn.send(payload[i : i + READ_SIZE])
