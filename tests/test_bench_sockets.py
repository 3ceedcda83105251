"""The bench's sessions leave no socket for the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import inspect
import ssl
from typing import Any

import pytest
import trustme

from hintpool.cli._bench_aiohttp import aiohttp_session

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def test_the_session_waits_for_the_tls_close_aiohttp_started() -> None:
    # aiohttp closes a connection the server ended and forgets it; over TLS
    # its socket closes only when the server answers our close_notify. Here
    # the server holds that answer back (it stops reading): the session
    # must still be waiting for it, where a plain one had returned and left
    # the socket to the garbage collector once the loop closed.
    aiohttp = pytest.importorskip("aiohttp")
    if "socket_factory" not in inspect.signature(aiohttp.TCPConnector).parameters:
        pytest.skip("aiohttp < 3.12 takes no socket_factory: nothing to wait for")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def scenario() -> None:
        release = asyncio.Event()
        read = asyncio.Event()

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.transport.pause_reading()  # our close_notify waits
            writer.write(RESPONSE)
            await release.wait()
            writer.transport.resume_reading()
            writer.close()

        async def client(url: str) -> None:
            async with aiohttp_session({"ssl": client_ctx}) as session:
                async with session.get(url) as response:
                    assert await response.read() == b"ok"
                read.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        async with server:
            port = server.sockets[0].getsockname()[1]
            task = asyncio.ensure_future(client(f"https://127.0.0.1:{port}/"))
            await asyncio.wait_for(read.wait(), 5)
            for _ in range(20):  # far more turns than a plain session's exit
                await asyncio.sleep(0)
            assert not task.done()
            release.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    gc.collect()  # a socket left open warns here, in this test


def test_the_floor_closes_its_sockets_before_its_session_ends() -> None:
    # close() on an asyncio socket transport closes the socket in a callback
    # on the next loop turn; the floor's session yields one turn after
    # closing its idle connections, so none is left for the loop's end.
    pytest.importorskip("httptools")
    from hintpool.cli._bench_floor import floor_session

    from .test_cli_demo_bench import _canned_server

    async def scenario() -> list[asyncio.BaseTransport]:
        loop = asyncio.get_running_loop()
        transports: list[asyncio.BaseTransport] = []
        create_connection = loop.create_connection

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            transport, protocol = await create_connection(*args, **kwargs)
            transports.append(transport)
            return transport, protocol

        loop.create_connection = recorded  # type: ignore[method-assign]
        async with _canned_server() as (url, _):
            async with floor_session(4, False) as get:
                await get(url + "/")
                await get(url + "/")  # the same connection, idle at the end
            assert [_fileno(t) for t in transports] == [-1]
            async with floor_session(4, True) as get:
                await get(url + "/")  # Connection: close
            assert [_fileno(t) for t in transports] == [-1, -1]
        return transports

    assert len(asyncio.run(scenario())) == 2


def _fileno(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())
