"""The server fixtures themselves: missing servers, failed starts, busy ports."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from .conftest import skip_or_fail
from .servers import (
    ServerSpec,
    ServerStartError,
    ServerUnavailable,
    TLSFiles,
    launch,
)

pytestmark = pytest.mark.interop


def test_missing_server_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(ServerUnavailable, match="nginx not found"):
        launch.start_server(ServerSpec("nginx"))


def test_missing_server_skips_or_fails() -> None:
    with pytest.raises(pytest.skip.Exception, match="gone"):
        skip_or_fail("gone", require=False)
    with pytest.raises(pytest.fail.Exception, match="HINTPOOL_REQUIRE_SERVERS=1"):
        skip_or_fail("gone", require=True)


def test_failed_start_names_server_and_log_tail() -> None:
    try:
        spec = ServerSpec("nginx", max_requests=-1)
        with pytest.raises(ServerStartError) as info:
            launch.start_server(spec)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    message = str(info.value)
    assert message.startswith("nginx timeout=2s max=-1 exited with status")
    assert "keepalive_requests" in message  # from nginx's own error log


def test_busy_port_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind((launch.HOST, 0))
        busy.listen()
        ports = [busy.getsockname()[1]]
        real_free_port = launch.free_port
        monkeypatch.setattr(
            launch, "free_port", lambda: ports.pop() if ports else real_free_port()
        )
        try:
            server = launch.start_server(ServerSpec("apache"))
        except ServerUnavailable as exc:
            pytest.skip(str(exc))
        with server:
            assert server.port != busy.getsockname()[1]
            assert server.process.poll() is None
        assert server.process.poll() is not None


def test_http2_needs_tls_and_a_server_that_speaks_it() -> None:
    with pytest.raises(ValueError, match="http2=True needs tls"):
        ServerSpec("node", http2=True)
    with pytest.raises(ValueError, match="nginx, node, hypercorn"):
        ServerSpec("apache", http2=True, tls=TLSFiles(Path("c"), Path("k")))
