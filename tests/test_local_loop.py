"""The local servers' event loop thread (``hintpool._local.loop``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Coroutine
from typing import Any

from hintpool._local.loop import LoopThread


class _NeverServed(LoopThread):
    """Accepts, but its connection task never runs: what asyncio.run does to
    a task created as the loop stops (cancelled before its first step)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1")
        self.accepted = threading.Event()

    def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        super()._handle(reader, writer).close()

        async def nothing() -> None:
            return None

        self.accepted.set()
        return nothing()


def test_stop_closes_a_connection_whose_task_never_ran() -> None:
    assert_stop_closes_the_connection(_NeverServed())


def assert_stop_closes_the_connection(server: _NeverServed | _NeverAdopted) -> None:
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert server.accepted.wait(10)
            server.stop()
            # Closed: an end of stream, or a reset (unread data).
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
    finally:
        server.stop()


class _NeverAdopted(LoopThread):
    """Accepts, but no stream is ever made of the socket: what happens when
    the task that would wrap it is cancelled before its first step."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1")
        self.accepted = threading.Event()

    async def _adopt(self, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        self.accepted.set()


def test_stop_closes_a_socket_no_task_ever_wrapped() -> None:
    assert_stop_closes_the_connection(_NeverAdopted())
