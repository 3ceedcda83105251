"""Several local origins, each a server behind a delay proxy, started together.

One origin is one :class:`~hintpool._local.server.LocalServer` plus, when a
delay is asked for, a :class:`~hintpool._local.delay_proxy.DelayProxy` in
front of it on the same address: clients talk to the proxy, so every byte
and every FIN takes the delay each way, like a real network.  Origins get
their own loopback address (127.0.0.x) where the system allows it, else all
use 127.0.0.1 on different ports.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from .delay_proxy import DelayProxy
from .loop import LocalServerError
from .server import LocalServer, ServerConfig

__all__ = ["LocalOrigin", "LocalOrigins", "loopback_hosts"]


def _bindable(host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
                return False
            raise
    return True


def loopback_hosts(count: int, first: int = 10) -> list[str]:
    """*count* addresses 127.0.x.y starting at 127.0.0.<first>.

    Linux routes all of 127.0.0.0/8 to the loopback interface; macOS and
    others only 127.0.0.1 unless configured, so fall back to that.
    """
    hosts = [
        f"127.0.{(first + i) // 250}.{1 + (first + i) % 250}" for i in range(count)
    ]
    if count and not _bindable(hosts[-1]):
        return ["127.0.0.1"] * count
    return hosts


@dataclass
class LocalOrigin:
    server: LocalServer
    proxy: DelayProxy | None

    @property
    def url(self) -> str:
        scheme = "https" if self.server.tls is not None else "http"
        front = self.proxy if self.proxy is not None else self.server
        return f"{scheme}://{front.host}:{front.port}"


class LocalOrigins:
    """Start (and stop) one origin per host; ``tls[i]`` is origin i's context.

    *port*, when not 0, is the port the clients connect to on each address
    (port + i for origin i when the addresses are all 127.0.0.1).
    """

    def __init__(
        self,
        hosts: Sequence[str],
        config: ServerConfig,
        tls: Sequence[ssl.SSLContext | None],
        delay: float = 0.0,
        port: int = 0,
    ) -> None:
        self.origins: list[LocalOrigin] = []
        self._hosts = list(hosts)
        self._config = config
        self._tls = list(tls)
        self._delay = delay
        self._port = port

    def _front_port(self, index: int) -> int:
        if self._port == 0:
            return 0
        distinct = len(set(self._hosts)) == len(self._hosts)
        return self._port if distinct else self._port + index

    def start(self) -> None:
        """Start every origin; on failure stop those started, raise LocalServerError."""
        try:
            for i, host in enumerate(self._hosts):
                self.origins.append(self._start_one(i, host))
        except BaseException:
            self.stop()
            raise

    def _start_one(self, index: int, host: str) -> LocalOrigin:
        front = self._front_port(index)
        server = LocalServer(
            host,
            dataclass_copy(self._config),
            tls=self._tls[index],
            port=0 if self._delay else front,
        )
        server.start()
        if not self._delay:
            return LocalOrigin(server, None)
        proxy = DelayProxy(host, server.port, delay=self._delay, host=host, port=front)
        try:
            proxy.start()
        except LocalServerError:
            server.stop()
            raise
        return LocalOrigin(server, proxy)

    def stop(self) -> None:
        for origin in reversed(self.origins):
            for thread in (origin.proxy, origin.server):
                if thread is not None:
                    with contextlib.suppress(RuntimeError):
                        thread.stop()

    def __enter__(self) -> LocalOrigins:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def dataclass_copy(config: ServerConfig) -> ServerConfig:
    return ServerConfig(**vars(config))
