"""An asyncio TCP relay that delays every chunk (and EOF/RST) per direction.

Each chunk read from one side is time-stamped and queued; a per-direction
writer forwards it once ``delay`` seconds have passed since it was read, so a
burst of chunks is delayed by ``delay`` once rather than cumulatively.  EOF is
relayed as a half-close after the same delay, and a connection reset is
relayed as an RST.  Runs in its own thread and event loop, like LocalServer.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

from .loop import LoopThread, abort_with_rst, close_writer

__all__ = ["DelayProxy"]

READ_SIZE = 65536
CONNECT_TIMEOUT = 5.0

_Kind = Literal["data", "eof", "rst"]
_Item = tuple[float, _Kind, bytes]


class DelayProxy(LoopThread):
    _thread_name = "hintpool-delay-proxy"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        delay: float = 0.0125,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay
        self._lock = threading.Lock()
        self._opened = 0

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._opened

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with self._lock:
            self._opened += 1
        try:
            up_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port),
                CONNECT_TIMEOUT,
            )
        except (OSError, asyncio.TimeoutError):
            abort_with_rst(writer)
            return
        try:
            await asyncio.gather(
                self._relay(reader, upstream),
                self._relay(up_reader, writer),
            )
        finally:
            await close_writer(upstream)

    async def _relay(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        await asyncio.gather(self._pump_in(src, queue), self._pump_out(queue, dst))

    async def _pump_in(
        self, src: asyncio.StreamReader, queue: asyncio.Queue[_Item]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await src.read(READ_SIZE)
            except OSError:
                queue.put_nowait((loop.time() + self.delay, "rst", b""))
                return
            if not data:
                queue.put_nowait((loop.time() + self.delay, "eof", b""))
                return
            queue.put_nowait((loop.time() + self.delay, "data", data))

    async def _pump_out(
        self, queue: asyncio.Queue[_Item], dst: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, kind, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if kind == "data":
                    dst.write(data)
                    await dst.drain()
                    continue
                if kind == "eof":
                    if dst.can_write_eof() and not dst.is_closing():
                        dst.write_eof()
                else:
                    abort_with_rst(dst)
            except OSError:
                pass
            return
