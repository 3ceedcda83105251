"""The benchmark server: Node.js ``http`` when ``node`` is on PATH, else ours.

Both answer every request with ``200 hello`` and ``Keep-Alive: timeout=5``
(``/delay/S``: after S seconds, for the crawler workload's slow origin)
and listen on each of the given loopback addresses (one port per address).
Node.js runs in its own process, so the client's CPU time is the client's
alone; the in-process h11 server shares the interpreter (and the GIL) with
the client and is much slower, so its numbers only compare clients with each
other.  Both stop when asked, and Node.js also exits when our stdin closes,
so it never outlives this process.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .loop import LocalServerError
from .server import LocalServer, ServerConfig

__all__ = ["BenchServer", "BenchTLS", "start_bench_server"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
KEEP_ALIVE_TIMEOUT = 5

NODE_SERVER = r"""
const http = require('http');
const fs = require('fs');
const hosts = JSON.parse(process.argv[1]);
// Optional certificate and key files: serve https instead.
const tls = process.argv[3]
  ? {cert: fs.readFileSync(process.argv[3]), key: fs.readFileSync(process.argv[4])}
  : null;
const keepAliveMs = Number(process.argv[2]) * 1000;
const handler = (req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  const delay = /^\/delay\/([0-9.]+)$/.exec(req.url);
  if (delay) setTimeout(() => res.end('delayed'), Number(delay[1]) * 1000);
  else res.end('hello');
};
const ports = new Array(hosts.length);
let pending = hosts.length;
hosts.forEach((host, i) => {
  const server = tls
    ? require('https').createServer(tls, handler)
    : http.createServer(handler);
  server.keepAliveTimeout = keepAliveMs;
  server.on('error', (err) => {
    process.stderr.write(`${host}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(0, host, () => {
    ports[i] = server.address().port;
    if (--pending === 0) process.stdout.write(JSON.stringify(ports) + '\n');
  });
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
"""


class BenchServer:
    """A started benchmark server: ``addresses[i]`` is origin i's (host, port)."""

    def __init__(
        self, kind: str, addresses: list[tuple[str, int]], scheme: str = "http"
    ) -> None:
        self.kind = kind
        self.addresses = addresses
        self.scheme = scheme
        self._process: subprocess.Popen[str] | None = None
        self._server: LocalServer | None = None

    def urls(self, path: str = "/") -> list[str]:
        return [f"{self.scheme}://{host}:{port}{path}" for host, port in self.addresses]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        if process is not None:
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class BenchTLS:
    """What an https benchmark server needs: PEM files for Node.js, a
    context for the in-process server."""

    cert_chain: Path
    private_key: Path
    server_context: ssl.SSLContext


def start_bench_server(
    hosts: Sequence[str], kind: str = "auto", tls: BenchTLS | None = None
) -> BenchServer:
    """Start a server listening on every host; *kind* "auto", "node" or "python"."""
    node = shutil.which("node")
    if kind == "node" and node is None:
        raise LocalServerError("node is not on PATH")
    if kind != "python" and node is not None:
        return _start_node(node, hosts, tls)
    server = LocalServer(
        hosts[0],
        ServerConfig(
            keep_alive=f"timeout={KEEP_ALIVE_TIMEOUT}",
            idle_timeout=float(KEEP_ALIVE_TIMEOUT),
        ),
        extra_hosts=hosts[1:],
        tls=None if tls is None else tls.server_context,
    )
    server.start()
    scheme = "http" if tls is None else "https"
    bench = BenchServer("in-process h11 server", list(server.addresses), scheme)
    bench._server = server
    return bench


def _start_node(node: str, hosts: Sequence[str], tls: BenchTLS | None) -> BenchServer:
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=START_TIMEOUT
    ).stdout.strip()
    files = [] if tls is None else [str(tls.cert_chain), str(tls.private_key)]
    process = subprocess.Popen(
        [
            node,
            "-e",
            NODE_SERVER,
            json.dumps(list(hosts)),
            str(KEEP_ALIVE_TIMEOUT),
            *files,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    scheme = "http" if tls is None else "https"
    bench = BenchServer(f"Node.js {version} {scheme}", [], scheme)
    bench._process = process
    try:
        ports = _read_ports(process, len(hosts))
    except BaseException:
        bench.stop()
        raise
    bench.addresses = list(zip(hosts, ports))
    return bench


def _read_ports(process: subprocess.Popen[str], count: int) -> list[int]:
    assert process.stdout is not None and process.stderr is not None
    # Bounded wait for the ports line (node exits at once on an error; on a
    # timeout the caller's stop() kills it, which ends the reader thread).
    lines: list[str] = []
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()))
    reader.start()
    reader.join(START_TIMEOUT)
    if not lines:
        raise LocalServerError("the Node.js server did not start in time")
    try:
        ports = [int(p) for p in json.loads(lines[0])]
    except ValueError:
        process.wait(START_TIMEOUT)
        error = process.stderr.read().strip().splitlines()
        reason = error[0] if error else f"exit code {process.returncode}"
        raise LocalServerError(f"the Node.js server did not start: {reason}") from None
    if len(ports) != count:
        raise LocalServerError("the Node.js server did not report its ports")
    return ports
