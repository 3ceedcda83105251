"""Start real HTTP servers (Apache, nginx, Node.js, uvicorn, hypercorn,
gunicorn) in the foreground from a config written to a temp dir.

Theory of operation
-------------------
A :class:`ServerSpec` says what to run: which server, its idle timeout, its
per-connection request limit, whether it should announce ``Keep-Alive`` and
whether it speaks TLS. :func:`start_server` writes the config into a fresh
temp dir, picks a free port on 127.0.0.1, starts the process in its own
session and waits (bounded) until the port accepts connections. A server
that is not installed raises :class:`ServerUnavailable`; one that exits or
never listens raises :class:`ServerStartError` naming the server and the
tail of its log. A busy port (the free-port probe is racy) is retried.

Every server writes one access-log line per request that starts with the
client's port, so tests count connections server-side: the distinct ports
are the connections. Shared by the pytest fixtures and
``scripts/server_table.py``; no pytest in here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import configs

__all__ = [
    "HTTP2_KINDS",
    "KINDS",
    "AccessRecord",
    "RunningServer",
    "ServerSpec",
    "ServerStartError",
    "ServerUnavailable",
    "TLSFiles",
    "server_version",
    "start_server",
]

Kind = Literal["apache", "nginx", "node", "uvicorn", "hypercorn", "gunicorn"]
KINDS: tuple[Kind, ...] = (
    "apache",
    "nginx",
    "node",
    "uvicorn",
    "hypercorn",
    "gunicorn",
)
PYTHON_KINDS = frozenset({"uvicorn", "hypercorn", "gunicorn"})
#: Servers the suite runs with HTTP/2 (over TLS, ALPN ``h2``; HTTP/1.1 too).
HTTP2_KINDS: tuple[Kind, ...] = ("nginx", "node", "hypercorn")

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
START_ATTEMPTS = 3
LOG_TAIL_LINES = 20
#: The start-up check's requests; left out of :meth:`RunningServer.records`.
READY_PATH = "/__ready/"
HERE = Path(__file__).resolve().parent


class ServerUnavailable(Exception):
    """The server's program is not installed here."""


class ServerStartError(Exception):
    """The server was found but did not come up."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files a TLS server is started with (from trustme)."""

    cert_chain: Path
    private_key: Path


@dataclass(frozen=True)
class ServerSpec:
    """What to run. ``None`` leaves the server's own default in place."""

    kind: Kind
    idle_timeout: float | None = 2.0
    max_requests: int | None = None
    #: nginx only announces ``Keep-Alive`` when asked to (2nd parameter of
    #: ``keepalive_timeout``); the other servers ignore this switch.
    hint: bool = True
    tls: TLSFiles | None = None
    #: Offer HTTP/2 through ALPN (needs ``tls``; only the HTTP2_KINDS).
    http2: bool = False
    #: SETTINGS_MAX_CONCURRENT_STREAMS to announce (HTTP/2 only).
    max_streams: int | None = None

    def __post_init__(self) -> None:
        if self.http2 and (self.tls is None or self.kind not in HTTP2_KINDS):
            raise ValueError(
                f"http2=True needs tls and one of {', '.join(HTTP2_KINDS)}"
            )

    @property
    def label(self) -> str:
        parts = [self.kind]
        if self.idle_timeout is not None:
            parts.append(f"timeout={self.idle_timeout:g}s")
        if self.max_requests is not None:
            parts.append(f"max={self.max_requests}")
        if self.kind == "nginx" and not self.hint:
            parts.append("no-hint")
        if self.tls is not None:
            parts.append("tls")
        if self.http2:
            parts.append("h2")
        if self.max_streams is not None:
            parts.append(f"streams={self.max_streams}")
        return " ".join(parts)


@dataclass(frozen=True)
class AccessRecord:
    """One request as the server logged it."""

    port: int
    fields: tuple[str, ...]


class RunningServer:
    """A started server; :meth:`stop` always ends its process group."""

    def __init__(
        self,
        spec: ServerSpec,
        process: subprocess.Popen[bytes],
        port: int,
        workdir: Path,
        log_path: Path,
        access_log: Path,
    ) -> None:
        self.spec = spec
        self.process = process
        self.host = HOST
        self.port = port
        self.workdir = workdir
        self.log_path = log_path
        self.access_log = access_log

    def __repr__(self) -> str:
        return f"<RunningServer {self.spec.label} on {self.host}:{self.port}>"

    @property
    def url(self) -> str:
        scheme = "https" if self.spec.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def log_mark(self) -> int:
        """A position in the access log; :meth:`records` reads from there."""
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0

    def records(self, since: int = 0, prefix: str | None = None) -> list[AccessRecord]:
        """The requests logged from ``since`` on; with ``prefix``, only those
        whose path starts with it (see :func:`tests.interop.helpers.unique_prefix`)."""
        try:
            with self.access_log.open("rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return []
        records = []
        # A line still being written has no newline yet: leave it for later.
        for line in data.decode("utf-8", "replace").split("\n")[:-1]:
            fields = tuple(line.split())
            if not fields or not fields[0].isdigit() or READY_PATH in line:
                continue
            if prefix is None or any(f.startswith(prefix) for f in fields):
                records.append(AccessRecord(int(fields[0]), fields[1:]))
        return records

    def wait_records(
        self,
        count: int,
        since: int = 0,
        timeout: float = 5.0,
        prefix: str | None = None,
    ) -> list[AccessRecord]:
        """The records since ``since`` once there are ``count`` (servers log
        after the response is sent, so the last line can lag a little).

        Servers are shared within a module, so an earlier test's last lines
        can land after this test's mark: a test that counts records passes
        its own ``prefix`` and so counts only what its requests produced."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records(since, prefix)
            if len(records) >= count or time.monotonic() > deadline:
                return records
            time.sleep(0.02)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def stop(self) -> None:
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
        # Children (Apache/nginx workers) may outlive the parent's exit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def program(kind: Kind) -> list[str]:
    """The command that runs ``kind``, or ServerUnavailable saying why not."""
    if kind in PYTHON_KINDS:
        try:
            __import__(kind)
        except ImportError:
            raise ServerUnavailable(
                f"{kind} is not installed: pip install -e '.[test]'"
            ) from None
        return [sys.executable, "-m", kind]
    name = {"apache": "apache2", "nginx": "nginx", "node": "node"}[kind]
    # Debian puts apache2 and nginx in /usr/sbin, which a non-root PATH lacks.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        hint = "Node.js" if kind == "node" else f"apt-get install {name}"
        raise ServerUnavailable(f"{name} not found on PATH ({hint})")
    return [found]


def server_version(kind: Kind) -> str:
    """The version string the installed server reports (for the docs table)."""
    command = program(kind)
    if kind in PYTHON_KINDS:
        from importlib.metadata import version

        return f"{kind} {version(kind)}"
    flag = {"apache": "-v", "nginx": "-v", "node": "--version"}[kind]
    out = subprocess.run(
        [*command, flag], capture_output=True, text=True, timeout=10, check=False
    )
    text = (out.stdout + out.stderr).strip()
    if kind == "apache":
        return text.splitlines()[0].split(":", 1)[1].strip().split(" ")[0]
    if kind == "nginx":
        return text.split(":", 1)[1].strip()
    return f"Node.js {text}"


def start_server(spec: ServerSpec) -> RunningServer:
    """Start ``spec`` on a free port and wait until it accepts connections."""
    command = program(spec.kind)
    last_error: ServerStartError | None = None
    for _ in range(START_ATTEMPTS):
        server = _launch(spec, command)
        try:
            _wait_listening(server)
        except ServerStartError as exc:
            server.stop()
            last_error = exc
            if "in use" not in str(exc).lower():
                raise
            continue  # the free port was taken meanwhile: try another
        return server
    assert last_error is not None
    raise last_error


def _launch(spec: ServerSpec, command: list[str]) -> RunningServer:
    # Not pytest's tmp_path: Apache and nginx workers drop root privileges
    # and must still read what is in here, so the dir is world-readable.
    workdir = Path(tempfile.mkdtemp(prefix=f"hintpool-{spec.kind}-"))
    workdir.chmod(0o755)
    port = free_port()
    access_log = workdir / "access.log"
    log_path = workdir / "server.log"
    argv, env = configs.write(spec, command, workdir, HOST, port, access_log)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir if spec.kind not in PYTHON_KINDS else HERE,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    error_log = workdir / "error.log"
    # Apache and nginx write their own error log; show that one on failure.
    shown_log = error_log if spec.kind in ("apache", "nginx") else log_path
    return RunningServer(spec, process, port, workdir, shown_log, access_log)


def _wait_listening(server: RunningServer) -> None:
    """Until the server answers a request that shows up in *its* access log:
    a bare connect could reach whoever else holds the port."""
    token = secrets.token_hex(8)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        code = server.process.poll()
        if code is not None:
            raise ServerStartError(
                f"{server.spec.label} exited with status {code} while starting "
                f"on port {server.port}; last lines of its log:\n"
                f"{_both_tails(server)}"
            )
        if _answers(server, token) and _logged(server, token):
            return
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{server.spec.label} did not answer on port {server.port} "
                f"within {START_TIMEOUT:g} s; last lines of its log:\n"
                f"{_both_tails(server)}"
            )
        time.sleep(0.05)


def _logged(server: RunningServer, token: str) -> bool:
    try:
        return token in server.access_log.read_text("utf-8", "replace")
    except FileNotFoundError:
        return False


def _answers(server: RunningServer, token: str) -> bool:
    request = (
        f"GET {READY_PATH}{token} HTTP/1.1\r\nHost: {server.host}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection((server.host, server.port), timeout=1) as raw:
            if server.spec.tls is None:
                raw.sendall(request)
                return raw.recv(64).startswith(b"HTTP/1.1 200")
            # Only a liveness check: the tests verify certificates.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(raw, server_hostname=server.host) as sock:
                sock.sendall(request)
                return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _both_tails(server: RunningServer) -> str:
    tails = [server.log_tail()]
    console = server.workdir / "server.log"
    if console != server.log_path and console.exists():
        tails.append(console.read_text("utf-8", "replace")[-2000:])
    return "\n".join(t for t in tails if t.strip())
