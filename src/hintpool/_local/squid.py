"""A throw-away squid forward proxy on loopback, for ``hintpool bench``.

squid runs in the foreground (``-N``) from a config written to a temp dir:
no cache, its logs, pid file and core dumps in that dir, listening on
127.0.0.1 only, CONNECT allowed to any port (the bench's origins are on
loopback). Started as root, squid switches to an unprivileged user, so the
temp dir is handed to that user. :func:`start_squid` waits (bounded) until
squid answers *as squid*: with nobody listening yet, a connect to a port in
the ephemeral range can reach itself.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .loop import LocalServerError

__all__ = ["SquidUnavailable", "find_squid", "start_squid"]

HOST = "127.0.0.1"
START_TIMEOUT = 15.0


class SquidUnavailable(Exception):
    """squid is not installed here."""


def find_squid() -> str:
    # Debian puts squid in /usr/sbin, which a non-root PATH lacks.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which("squid", path=path)
    if found is None:
        raise SquidUnavailable("squid not found on PATH")
    return found


def _worker_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("proxy", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def _config(workdir: Path, port: int, user: str | None) -> str:
    lines = [
        f"http_port {HOST}:{port}",
        f"pid_filename {workdir}/squid.pid",
        f"cache_log {workdir}/cache.log",
        f"coredump_dir {workdir}",
        "access_log none",
        "cache deny all",
        "cache_mem 0 MB",
        "http_access allow all",
        "netdb_filename none",
        "pinger_enable off",
        f"dns_nameservers {HOST}",
        "shutdown_lifetime 0 seconds",
        # Longer than any bench run: idle closes are not what is measured.
        "client_idle_pconn_timeout 60 seconds",
        "max_filedescriptors 4096",
    ]
    if user is not None:
        lines.append(f"cache_effective_user {user}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def start_squid() -> Iterator[str]:
    """Run squid; yield its URL (``http://127.0.0.1:PORT``); always stop it."""
    command = find_squid()
    workdir = Path(tempfile.mkdtemp(prefix="hintpool-squid-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        workdir.chmod(0o755)
        user = _worker_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        conf = workdir / "squid.conf"
        conf.write_text(_config(workdir, port, user))
        with (workdir / "console.log").open("wb") as console:
            process = subprocess.Popen(
                [command, "-N", "-f", str(conf)],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_answering(process, port, workdir)
        yield f"http://{HOST}:{port}"
    finally:
        if process is not None:
            # squid takes seconds to exit on SIGTERM and has nothing to save.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_answering(process: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise LocalServerError(f"squid exited while starting: {_tail(workdir)}")
        if _answers(port):
            return
        if time.monotonic() > deadline:
            raise LocalServerError(f"squid did not answer: {_tail(workdir)}")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(
                b"GET http://127.0.0.1:1/ HTTP/1.1\r\n"
                b"Host: 127.0.0.1:1\r\nConnection: close\r\n\r\n"
            )
            head = sock.recv(4096).lower()
            return head.startswith(b"http/1.") and b"squid" in head
    except OSError:
        return False


def _tail(workdir: Path) -> str:
    texts = []
    for name in ("console.log", "cache.log"):
        with contextlib.suppress(OSError):
            texts.append((workdir / name).read_text("utf-8", "replace")[-1000:])
    return "\n".join(texts).strip() or "(no log)"
