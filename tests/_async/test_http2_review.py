"""hintpool's HTTP/2 connection under review: one stream's trouble stays
that stream's (timeouts, the reader's role), against the scripted server
of ``tests/h2_server.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpcore
import httpx
import pytest

import hintpool
from hintpool._async.http2 import AsyncH2Connection

from ..concurrency import AsyncTaskGroup
from ..h2_server import H2Server

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[H2Server]:
    with H2Server() as srv:
        yield srv


def h2c_client() -> httpx.AsyncClient:
    transport = hintpool.AsyncHTTPTransport(http1=False, http2=True)
    return httpx.AsyncClient(transport=transport, timeout=10.0)


@pytest.mark.parametrize("short_first", [True, False])
async def test_one_stream_s_read_timeout_leaves_the_others_alone(
    server: H2Server, short_first: bool
) -> None:
    """Two requests share the connection; the server answers both only
    after ``hold_timeout``. The one with a short read timeout fails with
    ReadTimeout, whichever of the two reads the network meanwhile; the
    other gets its response on the same connection."""
    async with h2c_client() as client:
        assert (await client.get(f"{server.url}/warm")).status_code == 200
        server.hold = 3  # never reached: answered after hold_timeout
        outcome: dict[str, object] = {}

        async def short() -> None:
            try:
                await client.get(
                    f"{server.url}/short", timeout=httpx.Timeout(10.0, read=0.05)
                )
                outcome["short"] = "answered"
            except httpx.ReadTimeout:
                outcome["short"] = "timeout"

        async def long() -> None:
            try:
                response = await client.get(f"{server.url}/long")
                outcome["long"] = response.status_code
            except httpx.HTTPError as exc:
                outcome["long"] = repr(exc)

        first, second = (short, long) if short_first else (long, short)
        async with AsyncTaskGroup() as tg:
            tg.start_soon(first)
            await tg.wait_until(lambda: len(server.requests) == 2)
            tg.start_soon(second)
    assert outcome == {"short": "timeout", "long": 200}
    assert server.connections == 1


async def test_a_response_closed_unread_gives_its_bytes_back_to_the_connection(
    server: H2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DATA read for a response but not consumed when it closes counts
    against the connection's flow-control window until acknowledged:
    unacknowledged, every such response shrinks the window for good, until
    the server can send nothing on any stream."""
    connections: list[AsyncH2Connection] = []
    init = AsyncH2Connection.__init__

    def recording_init(self: AsyncH2Connection, *args: Any) -> None:
        init(self, *args)
        connections.append(self)

    monkeypatch.setattr(AsyncH2Connection, "__init__", recording_init)
    async with h2c_client() as client:
        assert (await client.get(f"{server.url}/warm")).status_code == 200
        server.hold = 2  # both answered in one write: A's body, then B
        server.body_size = 60_000
        async with AsyncTaskGroup() as tg:
            results: list[httpx.Response] = []

            async def streamed() -> None:
                request = client.build_request("GET", f"{server.url}/a")
                results.append(await client.send(request, stream=True))

            tg.start_soon(streamed)
            await tg.wait_until(lambda: len(server.requests) == 2)
            tg.start_soon(client.get, f"{server.url}/b")
        [unread] = results  # B read past all of A's body: it is queued
        await unread.aclose()
    [connection] = connections
    window = connection._h2._inbound_flow_control_window_manager
    assert window.current_window_size + window._bytes_processed == (
        window.max_window_size
    )


async def test_a_window_update_read_while_the_body_was_written_is_not_awaited(
    server: H2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request body filled the window; while its sender wrote, another
    stream's read took the server's WINDOW_UPDATEs. The sender goes on
    sending: the server, waiting for the body, sends nothing more."""
    flush = AsyncH2Connection._flush
    reading = False

    async def flush_then_read(self: AsyncH2Connection, timeouts: Any) -> None:
        nonlocal reading
        await flush(self, timeouts)
        if reading:
            return
        reading = True  # as another stream's reader would, meanwhile
        for stream_id in list(self._streams):
            while not self._h2.local_flow_control_window(stream_id):
                async with self._read:
                    await self._read_some(timeouts)
        reading = False

    monkeypatch.setattr(AsyncH2Connection, "_flush", flush_then_read)
    body = b"x" * 200_000
    async with h2c_client() as client:
        response = await client.post(
            f"{server.url}/up", content=body, timeout=httpx.Timeout(10.0, read=2.0)
        )
    assert response.text.rstrip(".") == f"POST /up {len(body)}"


async def test_a_request_body_given_up_midway_is_closed(
    server: H2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request fails while its body waits for the window: the body's
    iterator is closed then, not left to the garbage collector."""
    closed = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                for _ in range(3):
                    yield b"x" * 100_000
            finally:
                closed.append(True)

    async def timed_out(*args: Any) -> None:
        raise httpcore.ReadTimeout("no window")

    monkeypatch.setattr(AsyncH2Connection, "_wait_for_flow", timed_out)
    async with h2c_client() as client:
        with pytest.raises(httpx.ReadTimeout):
            request = httpx.Request(
                "POST",
                f"{server.url}/up",
                headers={"content-length": "300000"},
                stream=Body(),
            )
            await client.send(request)
        assert closed == [True]


async def test_an_answer_before_the_whole_body_is_the_response(
    server: H2Server,
) -> None:
    """The server answers before the body is all sent, then resets the
    stream with NO_ERROR (RFC 9113 §8.1): that answer is the response."""
    async with h2c_client() as client:
        assert (await client.get(f"{server.url}/warm")).status_code == 200
        server.answer_early = True
        response = await client.post(
            f"{server.url}/up",
            content=b"x" * 200_000,
            timeout=httpx.Timeout(10.0, read=2.0),
        )
        assert response.status_code == 413


async def test_large_bodies_both_ways_at_ten_at_once(server: H2Server) -> None:
    """Ten uploads and ten large answers share one connection: the windows
    of each stream and of the connection open as the bodies are consumed
    (in threads, for the sync pool)."""
    server.body_size = 300_000
    body = bytes(range(256)) * 800  # 204,800 bytes
    texts: list[str] = []
    async with h2c_client() as client:
        assert (await client.get(f"{server.url}/warm")).status_code == 200

        async def one(i: int) -> None:
            response = await client.post(f"{server.url}/{i}", content=body)
            texts.append(response.text.rstrip("."))
            assert len(response.content) == server.body_size

        async with AsyncTaskGroup() as tg:
            for i in range(10):
                tg.start_soon(one, i)
    assert sorted(texts) == sorted(f"POST /{i} {len(body)}" for i in range(10))
    assert server.connections == 1
