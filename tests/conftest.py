from __future__ import annotations

from collections.abc import Iterator

import pytest

from hintpool._async.connect import AsyncConnector
from hintpool._sync.connect import Connector

pytest_plugins = ["tests.fixtures_server"]

# Tests that send requests through pools run once on each connection class:
# hintpool's own ("fast") and httpcore's. Pure unit tests run once.
_WIRE_DIRS = ("tests/_async/", "tests/_sync/", "tests/interop/")
_WIRE_MODULES = {
    "test_asyncio_connection.py": False,
    "test_socket_connection.py": False,
    "test_bounds.py": True,
    "test_cancel_points.py": True,
    "test_cancellation.py": True,
    "test_faults.py": True,
    "test_reaper.py": True,
    "test_security.py": True,
    "test_threads.py": True,
}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


def _runs_on_both_wires(path: str) -> bool:
    path = path.replace("\\", "/")
    name = path.rsplit("/", 1)[-1]
    if name in _WIRE_MODULES:
        return _WIRE_MODULES[name]
    return any(part in path for part in _WIRE_DIRS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _runs_on_both_wires(str(metafunc.definition.path)):
        metafunc.parametrize("wire", ["fast", "httpcore"], indirect=True)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    # Under trio the pool always drives httpcore's connection: the "fast"
    # run would repeat the "httpcore" one.
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("wire") == "httpcore" and params.get("anyio_backend") == "trio":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def wire(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Which HTTP/1.1 connection class the pools use in this test."""
    name = str(getattr(request, "param", "fast"))
    if name == "httpcore":
        monkeypatch.setattr(AsyncConnector, "uses_fast_wire", lambda self: False)
        monkeypatch.setattr(Connector, "uses_fast_wire", lambda self: False)
    yield name
