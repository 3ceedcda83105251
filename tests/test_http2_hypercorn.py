"""HTTP/2 against a real server: hypercorn (h2 over TLS, trustme), in-process.

hypercorn runs on its own event loop in a thread; the tests drive the async
transport (asyncio and trio) and the sync one (threads) against it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any, Callable

import anyio
import httpx
import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config

import hintpool

from .interop.servers.asgi_app import app


class Hypercorn:
    def __init__(self, ca: trustme.CA, tmp: Any) -> None:
        cert = ca.issue_cert("127.0.0.1")
        certfile, keyfile = tmp / "cert.pem", tmp / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.config = Config()
        self.config.bind = [f"127.0.0.1:{self.port}"]
        self.config.certfile, self.config.keyfile = str(certfile), str(keyfile)
        self.config.graceful_timeout = 1
        self.config.keep_alive_timeout = 30
        self.loop = asyncio.new_event_loop()
        self.stopped: asyncio.Event | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stopped = asyncio.Event()
            self.started.set()
            trigger: Callable[..., Any] = self.stopped.wait
            await serve(app, self.config, shutdown_trigger=trigger)

        self.loop.run_until_complete(main())
        self.loop.close()

    def __enter__(self) -> Hypercorn:
        self.thread.start()
        self.started.wait(5)
        for _ in range(500):  # until it listens (bounded)
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                break
            except OSError:
                threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stopped is not None
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(10)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def hypercorn(ca: trustme.CA, tmp_path: Any) -> Iterator[Hypercorn]:
    with Hypercorn(ca, tmp_path) as srv:
        yield srv


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.mark.anyio
async def test_hypercorn_async_shares_one_connection(
    hypercorn: Hypercorn, client_ctx: ssl.SSLContext
) -> None:
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx, http2=True)
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(transport=transport) as client:

        async def one(i: int) -> None:
            responses.append(await client.get(f"{hypercorn.url}/{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        stats = transport.statistics()
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert {r.text for r in responses} == {"hello\n"}
    assert stats.connections_opened == 1
    assert stats.requests == 50
    [origin] = stats.origins.values()
    assert origin.http_version == "HTTP/2"
    assert origin.concurrent_streams_peak > 1


def test_hypercorn_sync_threads_and_tls_resumption(
    hypercorn: Hypercorn, client_ctx: ssl.SSLContext
) -> None:
    transport = hintpool.HTTPTransport(verify=client_ctx, http2=True)
    responses: list[httpx.Response] = []
    with httpx.Client(transport=transport) as client:

        def one(i: int) -> None:
            responses.append(client.get(f"{hypercorn.url}/{i}"))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert [r.http_version for r in responses] == ["HTTP/2"] * 10
        # Closing the pool closes its idle connection and keeps the TLS
        # sessions: the next connection resumes.
        transport.close()
        assert client.get(hypercorn.url).http_version == "HTTP/2"
        stats = transport.statistics()
    assert stats.connections_opened == 2
    assert (stats.tls_handshakes_full, stats.tls_handshakes_resumed) == (1, 1)


@pytest.mark.anyio
async def test_hypercorn_sequential_requests_reuse_the_idle_connection(
    hypercorn: Hypercorn, client_ctx: ssl.SSLContext
) -> None:
    # Nothing the server sends after a response may look like a close to
    # the idle check (it would be learned as a tiny idle timeout).
    transport = hintpool.AsyncHTTPTransport(verify=client_ctx, http2=True)
    async with httpx.AsyncClient(transport=transport) as client:
        for i in range(20):
            response = await client.post(f"{hypercorn.url}/{i}", content=b"x" * i)
            assert response.http_version == "HTTP/2"
            await anyio.sleep(0.01)  # frames sent after the response arrive
        stats = transport.statistics()
    assert stats.connections_opened == 1
    assert stats.closed_by_server == 0
