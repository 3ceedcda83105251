#!/usr/bin/env python
"""hintpool's own cost per request on asyncio, without the network: the
pool and its asyncio connection over an in-memory transport that answers
every request on the next loop iteration, as a loopback server would.

    python benchmarks/profile_pool_inmemory.py --concurrency 100
    python benchmarks/profile_pool_inmemory.py --origins 1000 --profile
    python benchmarks/profile_pool_inmemory.py --concurrency 1 --no-hint
    python benchmarks/profile_pool_inmemory.py --header "Authorization: Bearer x"

No server, no syscalls (but one ``poll()`` at checkout): the CPU time per
request is Python's and asyncio's alone, so it varies far less with the
machine's load than ``hintpool bench`` or ``profile_pool_asyncio.py``; use
it to compare changes to the hot path, and the real benchmarks to see what
they are worth. ``--profile`` prints cProfile's top functions of the last
round. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import socket
import statistics
import time
from typing import Any

import hintpool
import hintpool._asyncio_connection as fast_connection

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    b"Date: Sun, 29 Nov 2026 00:00:00 GMT\r\nConnection: keep-alive\r\n"
    b"Keep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\nhello"
)
#: ``--no-hint``: a server that announces no idle timeout (the reaper then
#: watches the idle connections for a hang-up).
RESPONSE_NO_HINT = RESPONSE.replace(b"Keep-Alive: timeout=5\r\n", b"")


class MemoryTransport(asyncio.Transport):
    """Answers each request head with RESPONSE on the next loop iteration."""

    def __init__(self, protocol: asyncio.Protocol, sock: socket.socket) -> None:
        super().__init__()
        self._protocol = protocol
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._closing = False

    response = RESPONSE

    def write(self, data: Any) -> None:
        self._loop.call_soon(self._protocol.data_received, self.response)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self._sock}.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._loop.call_soon(self._protocol.connection_lost, None)


_SOCKETS: list[socket.socket] = []


def _quiet_socket() -> socket.socket:
    """A socket that never polls readable, for the checkout's poll()."""
    ours, theirs = socket.socketpair()
    _SOCKETS.extend((ours, theirs))
    return ours


async def _round(args: argparse.Namespace, profiler: cProfile.Profile | None) -> float:
    urls = [f"http://127.0.{i // 250}.{1 + i % 250}:8000/" for i in range(args.origins)]
    limit = args.origins + args.concurrency
    pool = hintpool.AsyncConnectionPool(
        max_connections=limit,
        max_keepalive_connections=limit,
        prewarm=not args.no_prewarm,
    )

    async def drive(total: int) -> None:
        per_worker = max(1, total // args.concurrency)

        async def worker(offset: int) -> None:
            for i in range(per_worker):
                url = urls[(offset + i * args.concurrency) % len(urls)]
                response = await pool.request("GET", url, headers=args.header)
                assert response.status == 200 and response.content == b"hello"

        await asyncio.gather(*(worker(k) for k in range(args.concurrency)))

    async with pool:
        await drive(len(urls) + 20)
        if profiler is not None:
            profiler.enable()
        cpu = time.process_time()
        await drive(args.requests)
        cpu = time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
    return 1e6 * cpu / args.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--origins", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--no-hint", action="store_true", help="responses without Keep-Alive"
    )
    parser.add_argument(
        "--no-prewarm", action="store_true", help="the pool with prewarm=False"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        help='"Name: value" sent with every request (repeatable)',
    )
    args = parser.parse_args()
    if args.no_hint:
        MemoryTransport.response = RESPONSE_NO_HINT
    fast_connection.connect = _connect_once  # type: ignore[assignment]
    results = []
    profiler = cProfile.Profile() if args.profile else None
    for r in range(args.rounds):
        last = r == args.rounds - 1
        results.append(asyncio.run(_round(args, profiler if last else None)))
        for sock in _SOCKETS:
            sock.close()
        _SOCKETS.clear()
    print(
        f"origins={args.origins} C={args.concurrency}: CPU us/req "
        f"min {min(results):.1f} median {statistics.median(results):.1f}"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


def _header(text: str) -> tuple[str, str]:
    name, _, value = text.partition(":")
    return name.strip(), value.strip()


async def _connect_once(
    loop: asyncio.AbstractEventLoop, factory: Any, *args: Any, **kwargs: Any
) -> None:
    protocol = factory()
    protocol.connection_made(MemoryTransport(protocol, _quiet_socket()))


if __name__ == "__main__":
    main()
