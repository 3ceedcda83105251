"""The reaper: idle connections close at their deadline without a request.

Async deadlines run on trio's MockClock (virtual time: "wait 4 s" takes
microseconds), with the pool's clock set to trio's clock. The sync reaper is
a thread that waits on real time, so its tests use short windows.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import warnings
import weakref

import anyio
import httpcore
import httpx
import pytest
import trio
import trio.testing

import hintpool
from hintpool import AsyncConnectionPool, ConnectionPool
from hintpool._state import FORGET_AFTER

from ._async.test_connection_pool import response
from .server import TestServer

MOCK_CLOCK = pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}))],
)


def mock_pool(responses: list[bytes], **kwargs: object) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        network_backend=httpcore.AsyncMockBackend(responses),
        clock=trio.current_time,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.anyio
@MOCK_CLOCK
async def test_idle_connection_closes_at_its_deadline_without_a_request() -> None:
    async with mock_pool([response("timeout=5")]) as pool:
        await pool.request("GET", "http://example.test/")
        assert pool.statistics().idle == 1
        await anyio.sleep(3.99)  # window: 5 s - 1 s margin
        assert pool.statistics().idle == 1
        await anyio.sleep(0.02)
        stats = pool.statistics()
        assert (stats.idle, stats.open, stats.expired) == (0, 0, 1)


@pytest.mark.anyio
@MOCK_CLOCK
async def test_reaper_wakes_for_a_nearer_deadline() -> None:
    responses = [response("timeout=60")]
    async with mock_pool(responses) as pool:
        await pool.request("GET", "http://a.test/")  # deadline in 59 s
        await anyio.sleep(1)
        pool._connector._network_backend = httpcore.AsyncMockBackend(
            [response("timeout=3")]
        )
        await pool.request("GET", "http://b.test/")  # deadline in 2 s
        await anyio.sleep(2.05)
        stats = pool.statistics()
        assert stats.origins["http://b.test:80"].expired == 1
        assert stats.origins["http://a.test:80"].idle == 1
        await anyio.sleep(56)
        assert pool.statistics().expired == 2


@pytest.mark.anyio
@MOCK_CLOCK
async def test_requests_one_at_a_time_do_not_wake_the_reaper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No hint: each release makes a watched idle connection, due for a poll
    # sooner than the reaper's heartbeat. That moves the reaper's timer; it
    # used to wake the reaper, which then found the connection in use again
    # and slept until the heartbeat: one pass per request.
    async with mock_pool([response()] * 20) as pool:
        await pool.request("GET", "http://example.test/")
        await anyio.sleep(0)  # the reaper's first pass
        passes = []
        reap = pool._reap

        async def counted() -> float:
            passes.append(trio.current_time())
            return await reap()

        monkeypatch.setattr(pool, "_reap", counted)
        for _ in range(20):  # virtual time stands still: nothing is due
            await pool.request("GET", "http://example.test/")
        assert passes == []
        await anyio.sleep(0.06)  # the watch poll of the last one is
        assert len(passes) == 1
        assert pool.statistics().idle == 1


@pytest.mark.anyio
@MOCK_CLOCK
async def test_a_crawler_that_moved_on_leaves_no_origin_behind() -> None:
    # Origins visited once, then nothing: the reaper closes the idle
    # connections, then wakes FORGET_AFTER seconds later to forget the
    # origins (no new origin has to arrive for that); the totals remain.
    async with mock_pool([response("timeout=5")]) as pool:
        for i in range(30):
            await pool.request("GET", f"http://c{i}.test/")
        await anyio.sleep(5)
        stats = pool.statistics()
        assert (stats.open, len(stats.origins)) == (0, 30)
        await anyio.sleep(FORGET_AFTER - 10)  # the first went vacant at 0
        assert len(pool.statistics().origins) == 30
        await anyio.sleep(10)
        stats = pool.statistics()
        assert (len(stats.origins), stats.connections_opened) == (0, 30)


@pytest.mark.anyio
@MOCK_CLOCK
async def test_reaper_stops_with_the_pool() -> None:
    pool = mock_pool([response("timeout=5")])
    async with pool:
        await pool.request("GET", "http://example.test/")
        assert pool._reaper.running
    assert not pool._reaper.running
    assert pool.statistics().open == 0


@pytest.mark.anyio
@MOCK_CLOCK
async def test_pools_entered_in_one_task_may_exit_in_any_order() -> None:
    # httpx enters its mounted transports after its own and exits them in
    # the same order (not innermost first).
    first = mock_pool([response("timeout=5")])
    second = mock_pool([response("timeout=3")])
    await first.__aenter__()
    await second.__aenter__()
    await first.request("GET", "http://a.test/")
    await second.request("GET", "http://b.test/")
    await first.__aexit__()
    assert not first._reaper.running
    await anyio.sleep(2.5)  # the second pool's reaper still works
    assert second.statistics().expired == 1
    await second.__aexit__()
    assert not second._reaper.running


@pytest.mark.anyio
async def test_without_async_with_expired_connections_close_lazily() -> None:
    clock = [0.0]
    pool = AsyncConnectionPool(
        network_backend=httpcore.AsyncMockBackend([response("timeout=5")] * 2),
        clock=lambda: clock[0],
    )
    await pool.request("GET", "http://example.test/")
    assert not pool._reaper.running
    clock[0] = 10
    await pool.request("GET", "http://other.test/")  # sweeps the expired one
    stats = pool.statistics()
    assert stats.origins["http://example.test:80"].expired == 1
    await pool.aclose()


def test_sync_reaper_closes_idle_connections_on_time() -> None:
    responses = [response("timeout=1.2")]  # 0.2 s window with the 1 s margin
    with ConnectionPool(network_backend=httpcore.MockBackend(responses)) as pool:
        pool.request("GET", "http://example.test/")
        assert pool.statistics().idle == 1
        deadline = time.monotonic() + 5
        while pool.statistics().idle and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.statistics().expired == 1
    assert not pool._reaper.running
    assert not reaper_threads()


def test_a_sync_pool_used_after_close_gets_its_reaper_back() -> None:
    pool = ConnectionPool(network_backend=httpcore.MockBackend([response("timeout=5")]))
    pool.request("GET", "http://example.test/")
    assert pool._reaper.running
    pool.close()
    assert not pool._reaper.running
    pool.request("GET", "http://example.test/")  # a closed pool stays usable
    assert pool._reaper.running  # and its idle connection is watched again
    assert pool.statistics().connections_opened == 2
    pool.close()
    assert not pool._reaper.running


def test_sync_reaper_thread_does_not_keep_the_pool_alive() -> None:
    pool = ConnectionPool(
        network_backend=httpcore.MockBackend([response("timeout=1.1")]),
    )
    pool.request("GET", "http://example.test/")
    assert pool._reaper.running
    [thread] = reaper_threads()
    ref = weakref.ref(pool)
    # Closing is the polite way; an abandoned pool must not leak the thread.
    pool._state.close_all([])  # forget the idle connection without I/O
    del pool
    gc.collect()
    assert ref() is None
    thread.join(5)
    assert not thread.is_alive()


def reaper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hintpool-reaper"]


def idle_pool(hint: str = "timeout=30") -> ConnectionPool:
    pool = ConnectionPool(network_backend=httpcore.MockBackend([response(hint)]))
    pool.request("GET", "http://example.test/")
    assert pool.statistics().idle == 1
    return pool


def test_one_reaper_thread_serves_every_sync_pool() -> None:
    pools = [idle_pool() for _ in range(50)]
    assert all(pool._reaper.running for pool in pools)
    assert len(reaper_threads()) == 1
    for pool in pools[:-1]:
        pool.close()
        assert len(reaper_threads()) == 1  # still serving the last one
    pools[-1].close()
    assert not reaper_threads()


def test_shared_reaper_keeps_each_pools_deadline() -> None:
    early = idle_pool("timeout=1.1")  # 0.1 s window with the 1 s margin
    late = idle_pool("timeout=30")
    deadline = time.monotonic() + 5
    while early.statistics().idle and time.monotonic() < deadline:
        time.sleep(0.02)
    assert early.statistics().expired == 1
    assert late.statistics().idle == 1  # not reaped with the other pool
    early.close()
    assert late._reaper.running
    late.close()
    assert not reaper_threads()


def test_reaper_thread_exits_when_nothing_is_left_to_reap() -> None:
    # The only idle connection expires and the pool is dropped unclosed:
    # nothing is scheduled any more, so the thread goes (it used to wait
    # for the pool forever).
    pool = idle_pool("timeout=1.1")
    [thread] = reaper_threads()
    deadline = time.monotonic() + 5
    while pool.statistics().idle and time.monotonic() < deadline:
        time.sleep(0.02)
    del pool
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_no_reaper_thread_before_a_connection_is_idle() -> None:
    before = threading.active_count()
    pool = hintpool.ConnectionPool()
    assert threading.active_count() == before
    pool.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fds_back_to(count: int) -> bool:
    """The in-process test server closes its side a moment after we close
    ours: give it (boundedly) the time to, then compare."""
    deadline = time.monotonic() + 3
    while open_fds() != count and time.monotonic() < deadline:
        time.sleep(0.01)
    return open_fds() == count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.anyio
async def test_closing_the_pool_leaves_no_task_thread_or_socket(
    server: TestServer,
) -> None:
    fds = open_fds()
    transport = hintpool.AsyncHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        for path in ("/", "/bytes/10", "/close", "/"):
            await client.get(server.url + path)
        async with client.stream("GET", server.url + "/bytes/100"):
            pass  # closed unread
        assert transport.pool._reaper.running
    assert not transport.pool._reaper.running
    assert transport.statistics().open == 0
    # (trio keeps idle worker threads of its own for DNS look-ups)
    assert not [t for t in threading.enumerate() if t.name == "hintpool-reaper"]
    assert fds_back_to(fds)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_closing_a_sync_pool_leaves_no_thread_or_socket(server: TestServer) -> None:
    threads = threading.active_count()
    fds = open_fds()
    transport = hintpool.HTTPTransport()
    with httpx.Client(transport=transport) as client:
        for path in ("/", "/bytes/10", "/close", "/"):
            client.get(server.url + path)
        assert transport.pool._reaper.running
    assert not transport.pool._reaper.running
    assert transport.statistics().open == 0
    assert threading.active_count() == threads
    assert fds_back_to(fds)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_reaper_thread_of_its_own() -> None:
    pool = idle_pool("timeout=30")
    assert len(reaper_threads()) == 1
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() with threads running: that is
        # the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: no thread was inherited; a new idle pool gets one
        ok = False
        try:
            ok = not reaper_threads()
            other = idle_pool("timeout=30")
            ok = ok and other._reaper.running and len(reaper_threads()) == 1
            other.close()
            ok = ok and not reaper_threads()
        finally:
            os.write(write_end, b"1" if ok else b"0")
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
        pool.close()
