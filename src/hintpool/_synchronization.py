"""The few primitives that differ between the async and the sync pool.

Each async name has a sync twin without the ``Async`` prefix, so that
``scripts/unasync.py`` can generate ``_sync/`` from ``_async/`` by renaming.

The async pool's bookkeeping never awaits between reading and updating its
state, so on one event loop it needs no lock at all: ``AsyncBookkeepingLock``
is a no-op. The sync pool is shared between threads and takes a real lock for
those same short sections, never across I/O.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from typing import Any, Generic, TypeVar

import anyio
import httpcore

__all__ = [
    "AsyncBookkeepingLock",
    "AsyncH2Lock",
    "AsyncLockWithin",
    "AsyncSharedStream",
    "AsyncShieldCancellation",
    "AsyncSlots",
    "AsyncWaiter",
    "BookkeepingLock",
    "H2Lock",
    "LockWithin",
    "SharedStream",
    "ShieldCancellation",
    "Slots",
    "Waiter",
    "async_fast_wire_available",
    "default_async_backend",
    "default_sync_backend",
    "fast_wire_available",
]

T = TypeVar("T")


class AsyncBookkeepingLock:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


def BookkeepingLock() -> threading.Lock:
    return threading.Lock()


def AsyncH2Lock() -> Any:
    """The read and write locks of hintpool's HTTP/2 connection
    (``hintpool._async.http2``).

    anyio's lock yields to the event loop on every acquisition, free or
    not; on asyncio, ``asyncio.Lock`` only waits when it must, so a request
    on a quiet connection takes no round trip. Under trio, trio's.
    """
    if _running_on_trio():
        import trio

        return trio.Lock()
    return asyncio.Lock()


def H2Lock() -> Any:
    return threading.Lock()


async def AsyncLockWithin(lock: Any, timeout: float | None) -> None:
    """Take an :func:`AsyncH2Lock` within the request's read ``timeout``:
    another stream may hold the read lock with a longer timeout, or none."""
    if not lock.locked():
        await lock.acquire()  # free: asyncio's does not yield
        return
    try:
        with anyio.fail_after(timeout):
            await lock.acquire()
    except TimeoutError:
        raise httpcore.ReadTimeout("Timed out waiting to read") from None


def LockWithin(lock: Any, timeout: float | None) -> None:
    if not lock.acquire(timeout=-1 if timeout is None else timeout):
        raise httpcore.ReadTimeout("Timed out waiting to read")


def AsyncSharedStream(stream: Any) -> Any:
    """The network stream of hintpool's HTTP/2 connection. On an event loop
    one task calls into it at a time: as it is."""
    return stream


def SharedStream(stream: Any) -> Any:
    """In threads one reads while another writes: see ``_shared_stream``."""
    from ._shared_stream import shared_stream

    return shared_stream(stream)


def AsyncSlots(bound: int) -> Any:
    """The stream slots of hintpool's HTTP/2 connection: ``await acquire()``
    and a plain ``release()``, callable while the reader hands out frames
    (a SETTINGS frame raising the limit)."""
    if _running_on_trio():
        import trio

        return trio.Semaphore(bound)
    return asyncio.Semaphore(bound)


def Slots(bound: int) -> Any:
    return threading.Semaphore(bound)


class AsyncShieldCancellation:
    """Protect clean-up (closing a connection) from the caller's cancellation."""

    __slots__ = ("_scope",)

    def __init__(self) -> None:
        self._scope = anyio.CancelScope(shield=True)

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._scope.__exit__(exc_type, exc, tb)


class ShieldCancellation:
    """Threads cannot be cancelled: nothing to shield."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


class _WaiterBase(Generic[T]):
    """A request queued for a connection slot, first come first served.

    The pool's bookkeeping calls :meth:`assign` (under its lock) with what the
    waiter gets; the waiting task wakes up and takes it. ``cancelled`` is set
    when the waiter gave up, so the queue can skip it lazily.
    """

    __slots__ = ("assigned", "cancelled", "key", "result")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.result: T | None = None
        self.assigned = False
        self.cancelled = False

    def _wake(self) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def assign(self, result: T) -> None:
        self.result = result
        self.assigned = True
        self._wake()


class AsyncWaiter(_WaiterBase[T]):
    __slots__ = ("_event",)

    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self._event = anyio.Event()

    def _wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None) -> bool:
        """Wait until assigned; False when ``timeout`` expired first."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        return self.assigned


class Waiter(_WaiterBase[T]):
    __slots__ = ("_event",)

    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self._event = threading.Event()

    def _wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        self._event.wait(timeout)
        return self.assigned


def _running_on_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def default_async_backend() -> httpcore.AsyncNetworkBackend:
    """httpcore's native trio backend under trio, its anyio backend otherwise."""
    if _running_on_trio():
        return httpcore.TrioBackend()
    return httpcore.AnyIOBackend()


def async_fast_wire_available() -> bool:
    """hintpool's own connection (``_asyncio_connection``) is an asyncio
    Protocol: under trio the pool drives httpcore's connection instead."""
    return not _running_on_trio()


def fast_wire_available() -> bool:
    """The blocking-socket connection works wherever threads do."""
    return True


def default_sync_backend() -> httpcore.NetworkBackend:
    return httpcore.SyncBackend()
