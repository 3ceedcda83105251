from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from hintpool._async.connect import AsyncConnector
from hintpool._sync.connect import Connector

pytest_plugins = ["tests.fixtures_server"]

# Tests that send requests through pools run once on each connection class:
# hintpool's own ("fast") and httpcore's. Pure unit tests run once.
_WIRE_DIRS = ("tests/_async/", "tests/_sync/", "tests/interop/")
_WIRE_MODULES = {
    "test_bounds.py",
    "test_cancel_points.py",
    "test_cancellation.py",
    "test_faults.py",
    "test_reaper.py",
    "test_security.py",
    "test_threads.py",
}

# Hypothesis' deadline (200 ms per example) and its too_slow health check
# time the tests by the wall clock: on a loaded 2-core machine a run failed
# with "only generated 7 valid inputs after 1.06 seconds". Tests here never
# assert on speed, so neither may hypothesis. Loaded before any test module
# is imported, so every @settings(...) inherits it.
settings.register_profile(
    "hintpool", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("hintpool")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections: bound but not listening, and held
    for the whole test, so no server started meanwhile can take it (a port
    merely closed again can go to the next server bound to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


def _runs_on_both_wires(path: str) -> bool:
    path = path.replace("\\", "/")
    if path.rsplit("/", 1)[-1] in _WIRE_MODULES:
        return True
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
