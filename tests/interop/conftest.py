"""Fixtures that run real servers (see ``servers/launch.py``).

* ``real_servers`` (module scope): ``start(spec) -> RunningServer``. Servers
  are shared by spec within a test module (tests tell their requests apart
  with ``server.log_mark()`` and a path from ``helpers.unique_prefix``, since
  an earlier test's last log line may land after the mark) and always
  stopped at the module's end.
* A server that is not installed skips the test with the reason, or fails
  it when ``HINTPOOL_REQUIRE_SERVERS=1`` (CI), so a missing install step
  cannot hide behind a skip. A server that does not come up fails the test
  with its log tail.
* ``tls_ca`` / ``tls_files`` / ``tls_client_context``: trustme certificates.
* ``real_proxies`` (module scope): ``start(spec) -> RunningProxy``, the same
  for squid, tinyproxy, microsocks and Dante (``servers/proxies.py``).
* ``nginx_tls``: an nginx with TLS whose access log carries
  ``$ssl_session_reused`` (read it with ``servers.ssl_session_reused``) --
  the hook for the TLS resumption tests of issue #4.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from typing import Callable, NoReturn

import pytest
import trustme

from .servers import (
    RunningServer,
    ServerSpec,
    ServerStartError,
    ServerUnavailable,
    TLSFiles,
    start_server,
)
from .servers.proxies import ProxySpec, RunningProxy, start_proxy
from .servers.tls import client_context, write_tls_files

REQUIRE_SERVERS = os.environ.get("HINTPOOL_REQUIRE_SERVERS") == "1"
#: Modules that only speak HTTP/2 over TLS, which never runs on the fast
#: HTTP/1.1 wire: their "httpcore" wire run would repeat the "fast" one.
HTTP2_ONLY_MODULES = frozenset({"test_http2_goaway.py", "test_http2_race.py"})

StartServer = Callable[[ServerSpec], RunningServer]
StartProxy = Callable[[ProxySpec], RunningProxy]


def skip_or_fail(message: str, require: bool) -> NoReturn:
    """Skip a test whose server is missing, or fail it when CI requires it."""
    if require:
        pytest.fail(f"{message} (HINTPOOL_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("wire") == "httpcore" and item.path.name in HTTP2_ONLY_MODULES:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module")
def real_servers() -> Iterator[StartServer]:
    running: dict[ServerSpec, RunningServer] = {}

    def start(spec: ServerSpec) -> RunningServer:
        server = running.get(spec)
        if server is not None and server.process.poll() is None:
            return server
        try:
            server = start_server(spec)
        except ServerUnavailable as exc:
            skip_or_fail(f"{spec.kind} unavailable: {exc}", REQUIRE_SERVERS)
        except ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        running[spec] = server
        return server

    try:
        yield start
    finally:
        for server in running.values():
            server.stop()


@pytest.fixture(scope="module")
def real_proxies() -> Iterator[StartProxy]:
    running: dict[ProxySpec, RunningProxy] = {}

    def start(spec: ProxySpec) -> RunningProxy:
        proxy = running.get(spec)
        if proxy is not None and proxy.process.poll() is None:
            return proxy
        try:
            proxy = start_proxy(spec)
        except ServerUnavailable as exc:
            skip_or_fail(f"{spec.kind} unavailable: {exc}", REQUIRE_SERVERS)
        except ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        running[spec] = proxy
        return proxy

    try:
        yield start
    finally:
        for proxy in running.values():
            proxy.stop()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return write_tls_files(tls_ca, tmp_path_factory.mktemp("interop-tls"))


@pytest.fixture(scope="session")
def tls_client_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    return client_context(tls_ca)


@pytest.fixture
def nginx_tls(real_servers: StartServer, tls_files: TLSFiles) -> RunningServer:
    return real_servers(ServerSpec("nginx", idle_timeout=2.0, tls=tls_files))
