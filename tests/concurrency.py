"""Run helpers concurrently: anyio tasks for async tests, threads for sync.

``AsyncTaskGroup`` and ``TaskGroup`` have the same shape, so the generated
sync tests use threads where the async tests use tasks.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Awaitable
from typing import Any, Callable

import anyio
import anyio.abc


class AsyncTaskGroup:
    def __init__(self) -> None:
        self._tg = anyio.create_task_group()

    async def __aenter__(self) -> AsyncTaskGroup:
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self._tg.__aexit__(exc_type, exc, tb)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._tg.start_soon(fn, *args)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Let the other tasks run until ``predicate()`` holds (bounded)."""
        with anyio.fail_after(5):
            while not predicate():
                await anyio.wait_all_tasks_blocked()
                if not predicate():
                    await anyio.sleep(0.001)


class TaskGroup:
    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def __enter__(self) -> TaskGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        for thread in self._threads:
            thread.join(10)
            assert not thread.is_alive(), "a test thread did not finish"
        if self._errors and exc is None:
            raise self._errors[0]

    def start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as error:
                self._errors.append(error)

        thread = threading.Thread(target=run, daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait_until(self, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached in 5 s"
            time.sleep(0.001)


async def async_sleep(seconds: float) -> None:
    """A real wait, only for integration tests against a real server."""
    await anyio.sleep(seconds)


def sleep(seconds: float) -> None:
    time.sleep(seconds)
