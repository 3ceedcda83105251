"""Pytest fixtures for the test server and the delay proxy.

Import from ``tests/conftest.py`` with ``pytest_plugins = ["tests.fixtures_server"]``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from .delay_proxy import DelayProxy
from .server import ServerConfig, TestServer

__all__ = ["delay_proxy_factory", "server", "server_factory"]

ServerFactory = Callable[..., TestServer]
ProxyFactory = Callable[..., DelayProxy]


@pytest.fixture
def server() -> Iterator[TestServer]:
    """A started TestServer with the default ServerConfig."""
    with TestServer() as srv:
        yield srv


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    """``make(*, host="127.0.0.1", tls=None, **ServerConfig_kwargs) -> TestServer``.

    Every server made is started now and stopped at teardown.
    """
    servers: list[TestServer] = []

    def make(
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        **config: Any,
    ) -> TestServer:
        srv = TestServer(host=host, config=ServerConfig(**config), tls=tls)
        servers.append(srv)
        srv.start()
        return srv

    try:
        yield make
    finally:
        for srv in reversed(servers):
            srv.stop()


@pytest.fixture
def delay_proxy_factory() -> Iterator[ProxyFactory]:
    """``make(target_host, target_port, delay=0.0125) -> DelayProxy`` (started).

    All proxies made are stopped at teardown.
    """
    proxies: list[DelayProxy] = []

    def make(target_host: str, target_port: int, delay: float = 0.0125) -> DelayProxy:
        proxy = DelayProxy(target_host, target_port, delay=delay)
        proxies.append(proxy)
        proxy.start()
        return proxy

    try:
        yield make
    finally:
        for proxy in reversed(proxies):
            proxy.stop()
