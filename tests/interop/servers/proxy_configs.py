"""Config files and command lines for each real proxy (see proxies.py).

Each writer puts what its proxy needs into ``workdir`` and returns the argv.
All of them listen on ``host`` only and reach origins on loopback only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .proxies import ProxySpec

__all__ = ["write"]


def write(
    spec: ProxySpec, command: str, workdir: Path, host: str, port: int
) -> list[str]:
    writers: dict[str, Callable[..., list[str]]] = {
        "squid": _squid,
        "tinyproxy": _tinyproxy,
        "microsocks": _microsocks,
        "dante": _dante,
    }
    return writers[spec.kind](spec, command, workdir, host, port)


def _group_of(user: str) -> str:
    import grp
    import pwd

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _squid(
    spec: ProxySpec, command: str, workdir: Path, host: str, port: int
) -> list[str]:
    from .proxies import worker_user

    user = worker_user()
    listen = f"http_port {host}:{port}"
    if spec.tls is not None:
        # Copies squid's unprivileged user can read (pytest's dirs are 0700).
        chain, key = workdir / "proxy-chain.pem", workdir / "proxy-key.pem"
        chain.write_bytes(spec.tls.cert_chain.read_bytes())
        key.write_bytes(spec.tls.private_key.read_bytes())
        for path in (chain, key):
            path.chmod(0o644)
        listen = f"https_port {host}:{port} tls-cert={chain} tls-key={key}"
    lines = [
        listen,
        f"pid_filename {workdir}/squid.pid",
        f"cache_log {workdir}/proxy.log",
        f"coredump_dir {workdir}",
        # One line per request, starting with the client's port like the
        # origin servers' logs; %<lp is squid's own port towards the origin.
        "logformat hintpool %>p %rm %ru %>Hs %<lp",
        f"access_log stdio:{workdir}/access.log hintpool",
        "cache deny all",
        "cache_mem 0 MB",
        "http_access allow all",
        "netdb_filename none",
        "pinger_enable off",
        # Origins are IP literals; never ask the machine's resolver.
        f"dns_nameservers {host}",
        "shutdown_lifetime 0 seconds",
        *([f"cache_effective_user {user}"] if user else []),
    ]
    if spec.idle_timeout is not None:
        # Whole seconds only ("the minimal unit is second").
        seconds = _whole_seconds(spec.idle_timeout)
        lines.append(f"client_idle_pconn_timeout {seconds} seconds")
    conf = workdir / "squid.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [command, "-N", "-f", str(conf)]


def _tinyproxy(
    spec: ProxySpec, command: str, workdir: Path, host: str, port: int
) -> list[str]:
    from .proxies import worker_user

    user = worker_user()
    timeout = 600 if spec.idle_timeout is None else spec.idle_timeout
    lines = [
        f"Port {port}",
        f"Listen {host}",
        f"Timeout {_whole_seconds(timeout)}",
        f'LogFile "{workdir}/proxy.log"',
        "LogLevel Info",
        f'PidFile "{workdir}/tinyproxy.pid"',
        "MaxClients 200",
        "Allow 127.0.0.0/8",
        *([f"User {user}", f"Group {_group_of(user)}"] if user else []),
    ]
    conf = workdir / "tinyproxy.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [command, "-d", "-c", str(conf)]


def _microsocks(
    spec: ProxySpec, command: str, workdir: Path, host: str, port: int
) -> list[str]:
    argv = [command, "-i", host, "-p", str(port)]
    if spec.auth is not None:
        argv += ["-u", spec.auth[0], "-P", spec.auth[1]]
    return argv


def _dante(
    spec: ProxySpec, command: str, workdir: Path, host: str, port: int
) -> list[str]:
    from .proxies import worker_user

    user = worker_user()
    lines = [
        f"logoutput: {workdir}/proxy.log",
        f"internal: {host} port = {port}",
        f"external: {host}",
        "clientmethod: none",
        "socksmethod: none",
        *([f"user.privileged: {user}", f"user.unprivileged: {user}"] if user else []),
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
        "socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 }",
    ]
    if spec.idle_timeout is not None:
        lines.insert(4, f"timeout.io: {_whole_seconds(spec.idle_timeout)}")
    conf = workdir / "danted.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [command, "-f", str(conf), "-p", str(workdir / "danted.pid"), "-N", "1"]
