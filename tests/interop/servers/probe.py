"""Raw-socket probes of a running server: what it announces, and when it
really closes an idle connection. Shared by the suite and
``scripts/server_table.py``; blocking sockets, every wait bounded.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import time
from dataclasses import dataclass

import h11

from hintpool import KeepAlive, parse_keep_alive

__all__ = ["Exchange", "ProbeConnection", "measure_idle_close"]

IO_TIMEOUT = 5.0
#: Linux's SO_TIMESTAMPNS (not in the socket module): the kernel stamps each
#: received segment with its arrival time, so an idle close is timed from
#: when the response's last byte arrived, not from when this process, maybe
#: descheduled on a loaded machine, got round to reading it. Measured from
#: user space, ten probe threads on a loaded 2-core machine saw Apache close
#: up to 78 ms "early" (and 179 ms late) around a 1 s timeout.
SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
_TIMESPEC = struct.Struct("@ll")


@dataclass(frozen=True)
class Exchange:
    """One response as seen on the wire."""

    status: int
    keep_alive_header: str | None
    connection_header: str | None

    @property
    def hint(self) -> KeepAlive | None:
        if self.keep_alive_header is None:
            return None
        return parse_keep_alive(self.keep_alive_header.encode("latin-1"))


class ProbeConnection:
    """One HTTP/1.1 connection driven by hand with h11."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        # ``sock``: an open connection to use instead (a proxy's tunnel).
        if sock is None:
            sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        self.stamped = False
        if tls is None and SO_TIMESTAMPNS is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.stamped = True
            except OSError:
                pass
        self.sock = sock
        self.host = host
        self.h11 = h11.Connection(h11.CLIENT)
        #: ``time.time()`` clock: when the last bytes read arrived.
        self.received_at = time.time()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ProbeConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, path: str = "/", keep_alive: bool = True) -> Exchange:
        """Send a GET (with ``Connection: keep-alive`` unless told not to)
        and read the whole response."""
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        headers = [("Host", self.host)]
        if keep_alive:
            headers.append(("Connection", "keep-alive"))
        self.sock.sendall(
            self.h11.send(h11.Request(method="GET", target=path, headers=headers))
            or b""
        )
        self.sock.sendall(self.h11.send(h11.EndOfMessage()) or b"")
        response: h11.Response | None = None
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(self._receive())
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("server closed before the response ended")
        assert response is not None
        found = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in response.headers
        }
        return Exchange(
            status=response.status_code,
            keep_alive_header=found.get("keep-alive"),
            connection_header=found.get("connection"),
        )

    def _receive(self) -> bytes:
        if not self.stamped:
            data = self.sock.recv(65536)
            self.received_at = time.time()
            return data
        data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
        self.received_at = time.time()
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                self.received_at = seconds + nanoseconds / 1e9
        return data

    def wait_for_close(self, bound: float) -> float | None:
        """Seconds from the arrival of the last response byte until the
        server closes the idle connection (None: it was still open after
        ``bound`` seconds). The end is seen from user space: late, never
        early."""
        start = self.received_at
        self.sock.settimeout(bound)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return time.time() - start
                # A server may send "408 Request Timeout" before closing.
        except (TimeoutError, socket.timeout):
            return None
        except (ConnectionResetError, ssl.SSLError):
            return time.time() - start


def measure_idle_close(
    host: str,
    port: int,
    bound: float,
    tls: ssl.SSLContext | None = None,
    path: str = "/probe/idle",
) -> tuple[Exchange, float | None]:
    """Send one keep-alive request, read the response, time the idle close."""
    with ProbeConnection(host, port, tls) as conn:
        exchange = conn.request(path)
        return exchange, conn.wait_for_close(bound)
