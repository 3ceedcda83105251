"""One raw HTTP/1.1 connection for ``hintpool probe``.

Theory of operation: the probe must see exactly what the server does, so it
does not go through the pool (which would hide closes by re-using or
discarding connections). It opens a plain blocking socket (wrapped by
``ssl`` for https), writes ``GET`` requests with ``Connection: keep-alive``
and lets h11 parse the answers. Timing is taken with ``time.monotonic`` at
the moments that matter: the last byte of a response read, and the EOF (or
reset) that ends an idle connection.

Every failure leaves this module as a :class:`ProbeError` whose message is
one line a person can act on; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from ..__version__ import __version__

__all__ = [
    "ClosedBeforeResponse",
    "Exchange",
    "IdleClose",
    "ProbeError",
    "Target",
    "Wire",
    "parse_target",
]

READ_SIZE = 65536
#: Largest response body read per request; bigger ones are cut short, which
#: also ends the connection (probe a smaller resource).
MAX_BODY = 16 * 1024 * 1024
#: Bound on sending close_notify and waiting for the server's on close.
TLS_CLOSE_TIMEOUT = 0.5
USER_AGENT = f"hintpool-probe/{__version__}"


class ProbeError(Exception):
    """A probe failure, explained in one line. ``usage``: the input was bad."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


class ClosedBeforeResponse(ProbeError):
    """The server closed (or reset) the connection instead of answering."""


@dataclass(frozen=True)
class Target:
    """What the probe talks to: one origin and one request target."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str) -> Target:
    """Check ``url`` and split it; :class:`ProbeError` (usage) if it is bad."""

    def bad(why: str) -> ProbeError:
        return ProbeError(f"invalid URL {url!r}: {why}", usage=True)

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise bad("it must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise bad("it has no host")
    if parts.username is not None:
        raise bad("credentials in the URL are not supported")
    try:
        host.encode("idna")
    except UnicodeError:
        raise bad("the host name is not valid") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    if any(ch in path for ch in " \r\n\t"):
        raise bad("the path contains whitespace")
    if port is None:
        port = 443 if scheme == "https" else 80
    return Target(url=url, scheme=scheme, host=host, port=port, path=path)


@dataclass(frozen=True)
class Exchange:
    """One response, as the probe saw it."""

    status: int
    reason: str
    http_version: str
    headers: tuple[tuple[str, str], ...]
    #: h11's verdict: may another request follow on this connection?
    reusable: bool
    #: monotonic time at which the last byte of the response was read.
    finished_at: float

    def header(self, name: str) -> str | None:
        """The value of a header (several joined with ", "), or None."""
        values = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(values) if values else None


@dataclass(frozen=True)
class IdleClose:
    """What happened while the probe kept a connection idle."""

    #: seconds from the end of the last response to the close (None: open).
    seconds: float | None
    #: "fin", "reset", or None while open.
    how: str | None
    #: bytes the server sent while the connection was idle (e.g. a 408).
    unsolicited: bytes


class Wire:
    """One blocking connection to ``target``; see the module docstring."""

    def __init__(
        self,
        target: Target,
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)
        self._closed = False
        started = time.monotonic()
        self.sock: socket.socket = self._connect()
        self.connect_seconds = time.monotonic() - started
        self.handshake_seconds: float | None = None
        self.tls: ssl.SSLSocket | None = None
        if target.scheme == "https":
            assert ssl_context is not None
            self._start_tls(ssl_context, session)

    def _connect(self) -> socket.socket:
        t = self.target
        try:
            return socket.create_connection((t.host, t.port), timeout=self.timeout)
        except socket.gaierror as exc:
            reason = exc.strerror
            raise ProbeError(f"cannot resolve host {t.host!r}: {reason}") from None
        except socket.timeout:
            raise ProbeError(
                f"timed out connecting to {t.address} after {self.timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            raise ProbeError(f"connection refused by {t.address}") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ProbeError(f"cannot connect to {t.address}: {reason}") from None

    def _start_tls(
        self, context: ssl.SSLContext, session: ssl.SSLSession | None
    ) -> None:
        started = time.monotonic()
        try:
            self.tls = context.wrap_socket(
                self.sock, server_hostname=self.target.host, session=session
            )
        except ssl.SSLCertVerificationError as exc:
            self.sock.close()
            raise ProbeError(
                f"TLS certificate of {self.target.address} not trusted: "
                f"{exc.verify_message} (see --cafile, --insecure)"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            self.sock.close()
            raise ProbeError(
                f"TLS handshake with {self.target.address} failed: {_reason(exc)} "
                "(is this an https port?)"
            ) from None
        self.handshake_seconds = time.monotonic() - started
        self.sock = self.tls

    # -- requests ------------------------------------------------------------

    def exchange(self) -> Exchange:
        """Send one ``GET`` and read the whole response."""
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        request = h11.Request(
            method="GET",
            target=self.target.path,
            headers=[
                ("Host", self.target.host_header),
                ("User-Agent", USER_AGENT),
                ("Accept", "*/*"),
                ("Connection", "keep-alive"),
            ],
        )
        data = conn.send(request) + (conn.send(h11.EndOfMessage()) or b"")
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except socket.timeout:
            raise ProbeError(f"timed out sending to {self.target.address}") from None
        except OSError:
            raise ClosedBeforeResponse(
                f"{self.target.address} closed the connection"
            ) from None
        return self._read_response()

    def _read_response(self) -> Exchange:
        conn = self._h11
        response: h11.Response | None = None
        body = 0
        start = b""  # the first bytes of the answer, to explain a bad one
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._protocol_error(start, exc) from None
            if event is h11.NEED_DATA:
                data = self._recv()
                if len(start) < 5:
                    start += data[:5]
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > MAX_BODY:
                    raise ProbeError(
                        f"the response body is over {MAX_BODY // 2**20} MiB: "
                        "probe a smaller resource"
                    )
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return Exchange(
                    status=response.status_code,
                    reason=response.reason.decode("latin-1"),
                    http_version=response.http_version.decode("ascii"),
                    headers=tuple(
                        (n.decode("latin-1").lower(), v.decode("latin-1"))
                        for n, v in response.headers
                    ),
                    reusable=conn.our_state is h11.DONE
                    and conn.their_state is h11.DONE,
                    finished_at=time.monotonic(),
                )
            elif isinstance(event, h11.ConnectionClosed):
                raise self._protocol_error(start, None)
            # h11.InformationalResponse (1xx): keep reading.

    def _protocol_error(
        self, start: bytes, exc: h11.RemoteProtocolError | None
    ) -> ProbeError:
        where = self.target.address
        if not start:
            return ClosedBeforeResponse(
                f"{where} closed the connection without sending a response"
            )
        if not b"HTTP/".startswith(start[:5]):
            return ProbeError(
                f"{where} did not answer with HTTP/1.x (it sent {start[:5]!r}...)"
            )
        return ProbeError(f"{where} sent a broken response: {exc}")

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(READ_SIZE)
        except socket.timeout:
            raise ProbeError(
                f"no response from {self.target.address} within {self.timeout:g} s"
            ) from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
            return b""
        except OSError as exc:
            raise ProbeError(
                f"reading from {self.target.address} failed: {_reason(exc)}"
            ) from None

    # -- idle ---------------------------------------------------------------

    def wait_for_close(self, idle_since: float, max_wait: float) -> IdleClose:
        """Stay idle until the server closes, or ``max_wait`` s have passed."""
        deadline = idle_since + max_wait
        unsolicited = b""
        how: str | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return IdleClose(None, None, unsolicited)
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(READ_SIZE)
            except socket.timeout:
                return IdleClose(None, None, unsolicited)
            except ConnectionResetError:
                how, data = "reset", b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            if not data:
                closed_after = time.monotonic() - idle_since
                return IdleClose(closed_after, how or "fin", unsolicited)
            unsolicited = (unsolicited + data)[:200]

    # -- TLS and closing -------------------------------------------------------

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session worth offering on the next connection, if any."""
        if self.tls is None:
            return None
        session = self.tls.session
        if session is None:
            return None
        # TLS 1.3 sessions resume only with a ticket; TLS 1.2 session IDs
        # resume without one.
        if self.tls.version() == "TLSv1.3" and not session.has_ticket:
            return None
        return session

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.tls is not None:
            # Send close_notify: a session whose connection ends without it
            # may be marked not resumable.
            try:
                self.tls.settimeout(TLS_CLOSE_TIMEOUT)
                self.tls.unwrap().close()
            except (OSError, ValueError):
                pass
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
