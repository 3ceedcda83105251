"""``hintpool serve``: the local server the documentation's examples talk to.

It is the server the demo and the test suite use (``hintpool._local``):
HTTP/1.1 on ``127.0.0.1:8000`` by default, answering ``Keep-Alive: timeout=5,
max=N`` (``N`` counted down per connection, like Apache) and closing idle
connections after 5 s, with the routes ``/``, ``/echo`` (the request body
back), ``/bytes/N``, ``/chunked/N``, ``/delay/S``, ``/status/N``,
``/headers``, ``/close`` and ``/conn``. It runs until Ctrl-C.

Exit status: 0 after Ctrl-C, 1 when the server cannot start (e.g. the port
is in use).
"""

from __future__ import annotations

import argparse
import sys
import threading

from .._local import LocalServer, LocalServerError, ServerConfig

__all__ = ["add_arguments", "run"]

DEFAULT_KEEP_ALIVE = "timeout=5, max={left}"
ROUTES = "/ /echo /bytes/N /chunked/N /delay/S /status/N /headers /close /conn"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port (default: 8000; 0 picks one)"
    )
    parser.add_argument(
        "--keep-alive",
        default=DEFAULT_KEEP_ALIVE,
        metavar="VALUE",
        help="Keep-Alive header value, '{left}' counted down per connection, "
        "'' for none (default: %(default)r)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="close connections idle this long (default: 5)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=100,
        metavar="N",
        help="requests per connection; the last says Connection: close (default: 100)",
    )


def run(args: argparse.Namespace) -> int:
    config = ServerConfig(
        keep_alive=args.keep_alive or None,
        idle_timeout=args.idle_timeout,
        max_requests=args.max_requests,
    )
    server = LocalServer(args.host, config=config, port=args.port)
    try:
        server.start()
    except LocalServerError as exc:
        print(f"hintpool serve: {exc}", file=sys.stderr)
        return 1
    keep_alive = config.keep_alive or "(none)"
    # The first line is the URL, for scripts that start the server on port 0.
    print(f"{server.url}", flush=True)
    print(
        f"hintpool serve: Keep-Alive: {keep_alive}; routes: {ROUTES}; Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
