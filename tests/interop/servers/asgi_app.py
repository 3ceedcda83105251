"""A tiny ASGI app for uvicorn and hypercorn: answers ``hello`` and logs each
request's client port to ``$HINTPOOL_ACCESS_LOG`` before answering."""

from __future__ import annotations

import os
from typing import Any, Callable

ACCESS_LOG = os.environ.get("HINTPOOL_ACCESS_LOG")
BODY = b"hello\n"


def record(port: int, method: str, path: str, version: str = "1.1") -> None:
    if ACCESS_LOG:
        # One short O_APPEND write per line: lines never interleave.
        with open(ACCESS_LOG, "a", encoding="utf-8") as log:
            log.write(f'{port} - 200 "{method} {path} HTTP/{version}"\n')


async def app(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    client = scope.get("client") or ("", 0)
    record(client[1], scope["method"], scope["path"], scope.get("http_version", "1.1"))
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
