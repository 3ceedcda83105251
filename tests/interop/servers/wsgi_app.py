"""A tiny WSGI app for gunicorn: answers ``hello`` and logs each request's
client port to ``$HINTPOOL_ACCESS_LOG`` before answering."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable

ACCESS_LOG = os.environ.get("HINTPOOL_ACCESS_LOG")
BODY = b"hello\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if ACCESS_LOG:
        port = environ.get("REMOTE_PORT", "0")
        line = f'{port} - 200 "{environ["REQUEST_METHOD"]} {environ["PATH_INFO"]}"\n'
        with open(ACCESS_LOG, "a", encoding="utf-8") as log:
            log.write(line)
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
