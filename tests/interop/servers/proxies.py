"""Start real proxies (squid, tinyproxy, microsocks, Dante) in the foreground.

Theory of operation
-------------------
A :class:`ProxySpec` says which proxy and how long it lets a client
connection sit idle (squid's ``client_idle_pconn_timeout``, tinyproxy's
``Timeout``, Dante's ``timeout.io``; microsocks has none). :func:`start_proxy`
writes the config into a fresh temp dir, picks a free port on 127.0.0.1 and
waits (bounded) until the proxy answers *as itself*: an HTTP proxy's error
response names it in ``Server:``, a SOCKS5 server answers the greeting. A
bare connect is not enough: with nobody listening, a connect to a port in
the ephemeral range can connect to itself. Missing programs raise
:class:`ServerUnavailable`, proxies that exit or never answer
:class:`ServerStartError` with their log tail, as in ``launch.py``.

squid logs one line per request (client port, method, URL, status) to
``access.log``; the others only have their own log. Run as root, squid and
tinyproxy drop to an unprivileged user, so their temp dir is handed to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .launch import (
    HOST,
    START_ATTEMPTS,
    START_TIMEOUT,
    STOP_TIMEOUT,
    AccessRecord,
    ServerStartError,
    ServerUnavailable,
    TLSFiles,
    free_port,
)

__all__ = [
    "PROXY_KINDS",
    "ProxySpec",
    "RunningProxy",
    "proxy_version",
    "start_proxy",
]

ProxyKind = Literal["squid", "tinyproxy", "microsocks", "dante"]
PROXY_KINDS: tuple[ProxyKind, ...] = ("squid", "tinyproxy", "microsocks", "dante")
SOCKS_KINDS = frozenset({"microsocks", "dante"})
PROGRAMS = {
    "squid": ("squid", "squid"),
    "tinyproxy": ("tinyproxy", "tinyproxy"),
    "microsocks": ("microsocks", "microsocks"),
    "dante": ("danted", "dante-server"),
}


@dataclass(frozen=True)
class ProxySpec:
    """What to run; ``idle_timeout=None`` keeps the proxy's default."""

    kind: ProxyKind
    idle_timeout: float | None = 2.0
    #: Username and password the proxy demands (microsocks only).
    auth: tuple[str, str] | None = None
    #: squid only: clients speak TLS to the proxy (an ``https://`` proxy).
    tls: TLSFiles | None = None

    @property
    def label(self) -> str:
        parts = [self.kind]
        if self.idle_timeout is not None:
            parts.append(f"timeout={self.idle_timeout:g}s")
        if self.auth is not None:
            parts.append("auth")
        if self.tls is not None:
            parts.append("tls")
        return " ".join(parts)

    @property
    def scheme(self) -> str:
        if self.kind in SOCKS_KINDS:
            return "socks5"
        return "http" if self.tls is None else "https"


class RunningProxy:
    """A started proxy; :meth:`stop` always ends its process group."""

    def __init__(
        self,
        spec: ProxySpec,
        process: subprocess.Popen[bytes],
        port: int,
        workdir: Path,
        log_path: Path,
    ) -> None:
        self.spec = spec
        self.process = process
        self.host = HOST
        self.port = port
        self.workdir = workdir
        self.log_path = log_path
        self.access_log = workdir / "access.log"

    def __repr__(self) -> str:
        return f"<RunningProxy {self.spec.label} on {self.host}:{self.port}>"

    @property
    def url(self) -> str:
        """The proxy URL without credentials."""
        return f"{self.spec.scheme}://{self.host}:{self.port}"

    def url_with_auth(self) -> str:
        if self.spec.auth is None:
            return self.url
        user, password = self.spec.auth
        return f"{self.spec.scheme}://{user}:{password}@{self.host}:{self.port}"

    def log_mark(self) -> int:
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0

    def records(self, since: int = 0) -> list[AccessRecord]:
        """squid's access log from ``since``: port, then method, URL, status."""
        try:
            with self.access_log.open("rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return []
        records = []
        for line in data.decode("utf-8", "replace").split("\n")[:-1]:
            fields = tuple(line.split())
            if fields and fields[0].isdigit():
                records.append(AccessRecord(int(fields[0]), fields[1:]))
        return records

    def wait_records(
        self,
        count: int,
        since: int = 0,
        timeout: float = 5.0,
        match: Callable[[AccessRecord], bool] | None = None,
    ) -> list[AccessRecord]:
        """squid logs a CONNECT when the tunnel ends, a GET after answering.

        So a tunnel that an earlier test closed can be logged after the next
        test took its mark: *match* keeps the test's own records."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records(since)
            if match is not None:
                records = [record for record in records if match(record)]
            if len(records) >= count or time.monotonic() > deadline:
                return records
            time.sleep(0.02)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def stop(self) -> None:
        process = self.process
        # squid takes 2 s to exit on SIGTERM even with shutdown_lifetime 0,
        # and has nothing to save here (no cache): kill it outright.
        if process.poll() is None and self.spec.kind != "squid":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
        # Dante's and tinyproxy's children may outlive the parent.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
        # Dante's children still hold the listening socket for a moment
        # after the parent is reaped: stopped means the port refuses.
        _wait_refused(self.host, self.port, STOP_TIMEOUT)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RunningProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait_refused(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.02)


def program(kind: ProxyKind) -> str:
    name, package = PROGRAMS[kind]
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise ServerUnavailable(f"{name} not found on PATH (apt-get install {package})")
    return found


def proxy_version(kind: ProxyKind) -> str:
    """The installed proxy's version, for the docs table."""
    command = program(kind)
    if kind == "microsocks":
        return "microsocks"  # it has no version flag
    flag = {"squid": "-v", "tinyproxy": "-v", "dante": "-v"}[kind]
    out = subprocess.run(
        [command, flag], capture_output=True, text=True, timeout=10, check=False
    )
    first = (out.stdout + out.stderr).strip().splitlines()[0]
    if kind == "squid":
        return "squid " + first.rsplit(" ", 1)[-1]
    if kind == "dante":
        return first.split(".  ", 1)[0].replace(" v", " ")
    return first


def start_proxy(spec: ProxySpec) -> RunningProxy:
    """Start ``spec`` on a free port and wait until it answers."""
    from . import proxy_configs

    command = program(spec.kind)
    last_error: ServerStartError | None = None
    for _ in range(START_ATTEMPTS):
        workdir = Path(tempfile.mkdtemp(prefix=f"hintpool-{spec.kind}-"))
        workdir.chmod(0o755)
        _hand_to_worker_user(workdir, spec.kind)
        port = free_port()
        argv = proxy_configs.write(spec, command, workdir, HOST, port)
        log_path = workdir / "proxy.log"
        with (workdir / "console.log").open("wb") as console:
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proxy = RunningProxy(spec, process, port, workdir, log_path)
        try:
            _wait_answering(proxy)
        except ServerStartError as exc:
            proxy.stop()
            last_error = exc
            if "in use" not in str(exc).lower():
                raise
            continue
        return proxy
    assert last_error is not None
    raise last_error


def worker_user() -> str | None:
    """The user squid/tinyproxy/Dante switch to when started as root."""
    if os.geteuid() != 0:
        return None
    for name in ("proxy", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def _hand_to_worker_user(workdir: Path, kind: ProxyKind) -> None:
    user = worker_user()
    if user is None or kind == "microsocks":
        return
    entry = pwd.getpwnam(user)
    os.chown(workdir, entry.pw_uid, entry.pw_gid)


def _wait_answering(proxy: RunningProxy) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        code = proxy.process.poll()
        if code is not None:
            raise ServerStartError(
                f"{proxy.spec.label} exited with status {code} while starting "
                f"on port {proxy.port}; last lines of its log:\n{_tails(proxy)}"
            )
        if _answers(proxy):
            return
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{proxy.spec.label} did not answer on port {proxy.port} within "
                f"{START_TIMEOUT:g} s; last lines of its log:\n{_tails(proxy)}"
            )
        time.sleep(0.05)


def _answers(proxy: RunningProxy) -> bool:
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(
                socket.create_connection((proxy.host, proxy.port), timeout=2)
            )
            if proxy.spec.tls is not None:
                # Only a liveness check: the tests verify certificates.
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = stack.enter_context(
                    context.wrap_socket(sock, server_hostname=proxy.host)
                )
            return _greets(proxy, sock)
    except OSError:
        return False


def _greets(proxy: RunningProxy, sock: socket.socket) -> bool:
    if proxy.spec.scheme == "socks5":
        # Offer "no auth" and "username/password": either answer is fine.
        sock.sendall(b"\x05\x02\x00\x02")
        return sock.recv(2)[:1] == b"\x05"
    # Port 1 on loopback refuses: the proxy answers with its own error.
    sock.sendall(
        b"GET http://127.0.0.1:1/__ready/ HTTP/1.1\r\n"
        b"Host: 127.0.0.1:1\r\nConnection: close\r\n\r\n"
    )
    head = sock.recv(4096).lower()
    return head.startswith(b"http/1.") and proxy.spec.kind.encode() in head


def _tails(proxy: RunningProxy) -> str:
    tails = [proxy.log_tail()]
    console = proxy.workdir / "console.log"
    if console.exists():
        tails.append(console.read_text("utf-8", "replace")[-2000:])
    return "\n".join(t for t in tails if t.strip())
