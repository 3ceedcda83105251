"""Config files and command lines for each real server (see launch.py).

Each writer puts what its server needs into ``workdir`` and returns the
argv and extra environment. Every server logs one line per request to
``access_log``, starting with the client's port.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .launch import ServerSpec

__all__ = ["BODY", "write"]

BODY = "hello\n"
HERE = Path(__file__).resolve().parent

Written = tuple[list[str], dict[str, str]]


def write(
    spec: ServerSpec,
    command: list[str],
    workdir: Path,
    host: str,
    port: int,
    access_log: Path,
) -> Written:
    writers: dict[str, Callable[..., Written]] = {
        "apache": _apache,
        "nginx": _nginx,
        "node": _node,
        "uvicorn": _uvicorn,
        "hypercorn": _hypercorn,
        "gunicorn": _gunicorn,
    }
    return writers[spec.kind](spec, command, workdir, host, port, access_log)


def _unprivileged_user() -> tuple[str, str] | None:
    """The (user, group) for workers when we run as root, else None.

    Apache refuses to serve as root, and nginx's workers switch user.
    """
    if os.geteuid() != 0:
        return None
    for name in ("www-data", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        import grp

        return name, grp.getgrgid(entry.pw_gid).gr_name
    return None


# -- Apache ----------------------------------------------------------------


def _apache_module(command: list[str], name: str) -> str:
    """Where ``mod_<name>.so`` is: read from Debian's ``mods-available``
    ``.load`` files under the compiled-in HTTPD_ROOT, else ``modules/``."""
    out = subprocess.run(
        [*command, "-V"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r'HTTPD_ROOT="([^"]+)"', out)
    root = Path(match.group(1)) if match else Path("/etc/apache2")
    load = root / "mods-available" / f"{name}.load"
    if load.exists():
        found = re.search(r"LoadModule\s+\S+\s+(\S+)", load.read_text())
        if found:
            return found.group(1)
    return str(root / "modules" / f"mod_{name}.so")


def _apache_timeout(seconds: float) -> str:
    # KeepAliveTimeout takes whole seconds, or milliseconds with "ms".
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{round(seconds * 1000)}ms"


def _apache(
    spec: ServerSpec,
    command: list[str],
    workdir: Path,
    host: str,
    port: int,
    access_log: Path,
) -> Written:
    htdocs = workdir / "htdocs"
    htdocs.mkdir()
    (htdocs / "index.html").write_text(BODY)
    modules = ["mpm_event", "authz_core", "alias"]
    if spec.tls is not None:
        modules += ["socache_shmcb", "ssl"]
    lines = [
        f'LoadModule {name}_module "{_apache_module(command, name)}"'
        for name in modules
    ]
    lines += [
        "ServerName 127.0.0.1",
        f"Listen {host}:{port}",
        f'PidFile "{workdir}/apache.pid"',
        f'DefaultRuntimeDir "{workdir}"',
        f"Mutex file:{workdir} default",
        f'ErrorLog "{workdir}/error.log"',
        "LogLevel warn",
        # %{remote}p: the client's port; %k: keep-alive requests before this
        # one on the connection.
        'LogFormat "%{remote}p %k %>s \\"%r\\"" interop',
        f'CustomLog "{access_log}" interop',
        "StartServers 1",
        "ServerLimit 1",
        "ThreadsPerChild 16",
        "MaxRequestWorkers 16",
        "MinSpareThreads 1",
        "MaxSpareThreads 32",
        "KeepAlive On",
        f'DocumentRoot "{htdocs}"',
        f'AliasMatch "^/.*" "{htdocs}/index.html"',
        f'<Directory "{htdocs}">',
        "    Require all granted",
        "</Directory>",
    ]
    user = _unprivileged_user()
    if user is not None:
        lines += [f"User {user[0]}", f"Group {user[1]}"]
    if spec.idle_timeout is not None:
        lines.append(f"KeepAliveTimeout {_apache_timeout(spec.idle_timeout)}")
    if spec.max_requests is not None:
        lines.append(f"MaxKeepAliveRequests {spec.max_requests}")
    if spec.tls is not None:
        lines += [
            f'SSLSessionCache "shmcb:{workdir}/ssl_scache(512000)"',
            "SSLEngine on",
            f'SSLCertificateFile "{spec.tls.cert_chain}"',
            f'SSLCertificateKeyFile "{spec.tls.private_key}"',
        ]
    conf = workdir / "httpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    return [*command, "-d", str(workdir), "-f", str(conf), "-DFOREGROUND"], {}


# -- nginx -------------------------------------------------------------------


def _nginx_time(seconds: float) -> str:
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


#: nginx 1.25.1 replaced ``listen ... http2`` by the ``http2 on;`` directive.
HTTP2_ON = (1, 25, 1)


def _nginx_version(command: list[str]) -> tuple[int, ...]:
    out = subprocess.run(
        [*command, "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(int(n) for n in found.groups()) if found else (0, 0, 0)


def _nginx_h2(spec: ServerSpec, command: list[str]) -> str:
    # Since 1.19.7 keepalive_timeout and keepalive_requests govern HTTP/2
    # connections too (http2_idle_timeout and http2_max_requests are gone).
    if spec.http2 and _nginx_version(command) < HTTP2_ON:
        return " http2"
    return ""


def _nginx(
    spec: ServerSpec,
    command: list[str],
    workdir: Path,
    host: str,
    port: int,
    access_log: Path,
) -> Written:
    timeout = "75s" if spec.idle_timeout is None else _nginx_time(spec.idle_timeout)
    # The second parameter is what makes nginx send "Keep-Alive: timeout=N".
    # The header_timeout parameter takes whole seconds only: round down, as
    # Apache and Node do when they announce a sub-second part.
    header = "75s" if spec.idle_timeout is None else f"{int(spec.idle_timeout)}s"
    keepalive = f"{timeout} {header}" if spec.hint else timeout
    if spec.idle_timeout is None and not spec.hint:
        keepalive = ""
    server = [
        f"listen {host}:{port}{' ssl' if spec.tls else ''}{_nginx_h2(spec, command)};"
    ]
    if spec.http2 and _nginx_version(command) >= HTTP2_ON:
        server.append("http2 on;")
    if spec.tls is not None:
        server += [
            f"ssl_certificate {spec.tls.cert_chain};",
            f"ssl_certificate_key {spec.tls.private_key};",
            "ssl_session_cache shared:SSL:1m;",
            # nginx < 1.23.4 defaults to TLS <= 1.2; issue #4 tests both.
            "ssl_protocols TLSv1.2 TLSv1.3;",
        ]
    server.append('location / { default_type text/plain; return 200 "hello\\n"; }')
    user = _unprivileged_user()
    temp_paths = [
        f"{name}_temp_path {workdir}/{name}_temp;"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]
    http = [
        # $connection_requests counts this connection's requests;
        # r=$ssl_session_reused is "r=r" for a resumed TLS session, "r=."
        # otherwise and "r=" without TLS (issue #4 reads it).
        "log_format interop '$remote_port $connection_requests $status "
        'r=$ssl_session_reused $connection "$request"\';',
        f"access_log {access_log} interop;",
        *temp_paths,
        *([f"keepalive_timeout {keepalive};"] if keepalive else []),
        *(
            [f"keepalive_requests {spec.max_requests};"]
            if spec.max_requests is not None
            else []
        ),
        "server {",
        *(f"    {line}" for line in server),
        "}",
    ]
    lines = [
        *([f"user {user[0]} {user[1]};"] if user else []),
        "worker_processes 1;",
        f"pid {workdir}/nginx.pid;",
        f"error_log {workdir}/error.log warn;",
        "events { worker_connections 256; }",
        "http {",
        *(f"    {line}" for line in http),
        "}",
    ]
    conf = workdir / "nginx.conf"
    conf.write_text("\n".join(lines) + "\n")
    argv = [
        *command,
        "-p",
        f"{workdir}/",
        "-c",
        str(conf),
        "-e",
        f"{workdir}/error.log",
        "-g",
        "daemon off;",
    ]
    return argv, {}


# -- Node.js -----------------------------------------------------------------


def _node(
    spec: ServerSpec,
    command: list[str],
    workdir: Path,
    host: str,
    port: int,
    access_log: Path,
) -> Written:
    env = {
        "HINTPOOL_HOST": host,
        "HINTPOOL_PORT": str(port),
        "HINTPOOL_ACCESS_LOG": str(access_log),
    }
    if spec.idle_timeout is not None:
        env["HINTPOOL_KEEPALIVE_MS"] = str(round(spec.idle_timeout * 1000))
    if spec.max_requests is not None:
        env["HINTPOOL_MAX_REQUESTS"] = str(spec.max_requests)
    if spec.tls is not None:
        env["HINTPOOL_TLS_CERT"] = str(spec.tls.cert_chain)
        env["HINTPOOL_TLS_KEY"] = str(spec.tls.private_key)
    script = "node_h2_server.js" if spec.http2 else "node_server.js"
    return [*command, str(HERE / script)], env


# -- Python servers (no per-connection request limit in any of them) ------


def _python_env(access_log: Path) -> dict[str, str]:
    return {"HINTPOOL_ACCESS_LOG": str(access_log), "PYTHONDONTWRITEBYTECODE": "1"}


def _whole_seconds(spec: ServerSpec) -> list[str]:
    assert spec.idle_timeout is not None
    return [str(max(1, round(spec.idle_timeout)))]


def _uvicorn(
    spec: ServerSpec,
    command: list[str],
    workdir: Path,
    host: str,
    port: int,
    access_log: Path,
) -> Written:
    argv = [*command, "asgi_app:app", "--host", host, "--port", str(port)]
    argv += ["--no-access-log", "--log-level", "info"]
    if spec.idle_timeout is not None:
        argv += ["--timeout-keep-alive", *_whole_seconds(spec)]
    return argv, _python_env(access_log)


def _hypercorn(
    spec: ServerSpec,
    command: list[str],
    workdir: Path,
    host: str,
    port: int,
    access_log: Path,
) -> Written:
    argv = [*command, "--bind", f"{host}:{port}", "--workers", "1"]
    if spec.idle_timeout is not None:
        argv += ["--keep-alive", *_whole_seconds(spec)]
    if spec.tls is not None:
        # Hypercorn offers h2 through ALPN whenever it speaks TLS.
        argv += ["--certfile", str(spec.tls.cert_chain)]
        argv += ["--keyfile", str(spec.tls.private_key)]
    if spec.max_requests is not None:
        # Only in a config file: requests per HTTP/2 connection, then GOAWAY.
        config = workdir / "hypercorn.toml"
        config.write_text(f"keep_alive_max_requests = {spec.max_requests}\n")
        argv += ["--config", str(config)]
    return [*argv, "asgi_app:app"], _python_env(access_log)


def _gunicorn(
    spec: ServerSpec,
    command: list[str],
    workdir: Path,
    host: str,
    port: int,
    access_log: Path,
) -> Written:
    # The default "sync" worker closes every connection after one response;
    # gthread is gunicorn's keep-alive worker.
    argv = [*command, "--bind", f"{host}:{port}", "--workers", "1"]
    argv += ["--worker-class", "gthread", "--threads", "4"]
    if spec.idle_timeout is not None:
        argv += ["--keep-alive", *_whole_seconds(spec)]
    return [*argv, "wsgi_app:app"], _python_env(access_log)
