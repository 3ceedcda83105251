"""The server fixtures themselves: missing servers, failed starts, busy ports."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from .conftest import StartProxy, skip_or_fail
from .servers import (
    ServerSpec,
    ServerStartError,
    ServerUnavailable,
    TLSFiles,
    launch,
    proxies,
)
from .servers.proxies import ProxySpec

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


def test_missing_proxy_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(ServerUnavailable, match=r"danted not found.*dante-server"):
        proxies.start_proxy(ProxySpec("dante"))


@pytest.mark.parametrize("kind", proxies.PROXY_KINDS)
def test_proxy_starts_answers_and_stops(real_proxies: StartProxy, kind: str) -> None:
    proxy = real_proxies(ProxySpec(kind))  # type: ignore[arg-type]
    assert proxy.host == "127.0.0.1"
    assert proxy.url == f"{proxy.spec.scheme}://127.0.0.1:{proxy.port}"
    with socket.create_connection((proxy.host, proxy.port), timeout=5):
        pass
    proxy.stop()
    assert proxy.process.poll() is not None
    assert not proxy.workdir.exists()
    with pytest.raises(OSError):
        socket.create_connection((proxy.host, proxy.port), timeout=1).close()


def test_proxy_that_fails_to_start_names_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from .servers import proxy_configs

    real_write = proxy_configs.write

    def broken(*args: object) -> list[str]:
        argv = real_write(*args)  # type: ignore[arg-type]
        conf = Path(argv[argv.index("-f") + 1])
        conf.write_text(conf.read_text() + "no_such_directive on\n")
        return argv

    monkeypatch.setattr(proxy_configs, "write", broken)
    try:
        with pytest.raises(ServerStartError) as info:
            proxies.start_proxy(ProxySpec("squid"))
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    assert str(info.value).startswith("squid timeout=2s exited with status")
    assert "no_such_directive" in str(info.value)


def test_http2_needs_tls_and_a_server_that_speaks_it() -> None:
    with pytest.raises(ValueError, match="http2=True needs tls"):
        ServerSpec("node", http2=True)
    with pytest.raises(ValueError, match="nginx, node, hypercorn"):
        ServerSpec("apache", http2=True, tls=TLSFiles(Path("c"), Path("k")))
