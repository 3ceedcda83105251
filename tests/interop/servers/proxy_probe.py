"""Raw-socket probes through a proxy: what reaches the client, and when the
proxy closes an idle client connection or tunnel. Blocking sockets, every
wait bounded; shared by the suite and ``scripts/server_table.py``.
"""

from __future__ import annotations

import socket
import ssl
import struct

from .probe import IO_TIMEOUT, ProbeConnection
from .proxies import RunningProxy

__all__ = ["ProxyRefused", "forward", "open_tunnel", "tunnel"]


class ProxyRefused(Exception):
    """The proxy did not open the tunnel."""


def forward(proxy: RunningProxy, host: str, port: int) -> ProbeConnection:
    """A connection to an HTTP proxy; send absolute-form targets on it
    (``conn.request(absolute_url(...))``)."""
    sock = socket.create_connection((proxy.host, proxy.port), timeout=IO_TIMEOUT)
    return ProbeConnection(f"{host}:{port}", port, sock=sock)


def tunnel(
    proxy: RunningProxy, host: str, port: int, tls: ssl.SSLContext | None = None
) -> ProbeConnection:
    """A connection to the origin through the proxy's tunnel (CONNECT or
    SOCKS5), with TLS to the origin inside it when ``tls`` is given."""
    return ProbeConnection(host, port, tls, sock=open_tunnel(proxy, host, port))


def open_tunnel(proxy: RunningProxy, host: str, port: int) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=IO_TIMEOUT)
    try:
        if proxy.spec.scheme == "socks5":
            _socks5(sock, host, port)
        else:
            _connect(sock, host, port)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(sock: socket.socket, host: str, port: int) -> None:
    sock.sendall(
        f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    )
    head = b""
    # Read byte by byte: nothing after the blank line may be swallowed.
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ProxyRefused(f"proxy closed during CONNECT: {head!r}")
        head += byte
    status = head.split(b"\r\n", 1)[0]
    if status.split(b" ")[1:2] != [b"200"]:
        raise ProxyRefused(status.decode("latin-1"))


def _socks5(sock: socket.socket, host: str, port: int) -> None:
    sock.sendall(b"\x05\x01\x00")
    if _exactly(sock, 2) != b"\x05\x00":
        raise ProxyRefused("SOCKS5 server wants authentication")
    address = socket.inet_aton(host)
    sock.sendall(b"\x05\x01\x00\x01" + address + struct.pack("!H", port))
    reply = _exactly(sock, 4)
    if reply[1] != 0:
        raise ProxyRefused(f"SOCKS5 reply {reply[1]}")
    bound = {1: 4, 4: 16}.get(reply[3])
    if bound is None:
        bound = _exactly(sock, 1)[0]
    _exactly(sock, bound + 2)


def _exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ProxyRefused("proxy closed during the SOCKS5 handshake")
        data += chunk
    return data


def absolute_url(host: str, port: int, path: str) -> str:
    return f"http://{host}:{port}{path}"
