"""The sync HTTP/2 connection's network stream: one thread reads while
another writes, on a real TLS connection (``hintpool._shared_stream``).

OpenSSL allows one call at a time on an ``SSL`` object; a ``recv`` waiting
in C while another thread sends broke that, and once in ~20 runs of 20
threads the reader saw a healthy connection as closed by the server.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import httpcore
import pytest
import trustme

from hintpool._shared_stream import SharedSocketStream, shared_stream
from hintpool._tls_stream import SyncTLSStream

from .tls_helpers import client_context, server_context


class _Overlap:
    """Wraps a socket's ``recv`` and ``send``: counts calls inside it at once."""

    def __init__(self, sock: Any) -> None:
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()
        for name in ("recv", "send"):
            setattr(sock, name, self._counted(getattr(sock, name)))

    def _counted(self, method: Any) -> Any:
        def call(*args: Any) -> Any:
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            try:
                return method(*args)
            finally:
                with self.lock:
                    self.inside -= 1

        return call


@pytest.fixture
def tls_pair() -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    ca = trustme.CA()
    server_ctx = server_context(ca.issue_cert("127.0.0.1"), "TLSv1.3")
    a, b = socket.socketpair()
    wrapped: list[ssl.SSLSocket] = []

    def handshake() -> None:
        wrapped.append(server_ctx.wrap_socket(b, server_side=True))

    thread = threading.Thread(target=handshake)
    thread.start()
    client = client_context(ca).wrap_socket(a, server_hostname="127.0.0.1")
    thread.join(5)
    [server] = wrapped
    try:
        yield client, server
    finally:
        client.close()
        server.close()
        a.close()
        b.close()


def test_a_waiting_reader_never_overlaps_a_writer(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    client, server = tls_pair
    overlap = _Overlap(client)
    stream = shared_stream(SyncTLSStream(client))
    assert isinstance(stream, SharedSocketStream)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stream.read(100, 5.0)))
    reader.start()
    for _ in range(200):
        stream.write(b"x" * 100, 5.0)
    received = 0
    server.settimeout(5.0)
    while received < 200 * 100:
        received += len(server.recv(65536))
    server.sendall(b"answer")
    reader.join(5)
    assert got == [b"answer"]
    assert overlap.most == 1


def test_a_read_times_out_and_the_stream_goes_on(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    client, server = tls_pair
    stream = shared_stream(SyncTLSStream(client))
    with pytest.raises(httpcore.ReadTimeout):
        stream.read(100, 0.01)
    server.sendall(b"late")
    assert stream.read(100, 5.0) == b"late"


def test_closing_wakes_a_reader_waiting_without_a_timeout(
    tls_pair: tuple[ssl.SSLSocket, ssl.SSLSocket],
) -> None:
    client, _ = tls_pair
    stream = shared_stream(SyncTLSStream(client))
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(stream.read(100, None))
        except (httpcore.ReadError, ValueError) as exc:  # closed first
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    stream.close()
    reader.join(5)
    assert not reader.is_alive()
    [result] = outcome
    assert result == b"" or isinstance(result, Exception)


def test_a_stream_without_a_socket_is_left_as_it_is() -> None:
    class Mock(httpcore.NetworkStream):
        def get_extra_info(self, info: str) -> Any:
            return None

    mock = Mock()
    assert shared_stream(mock) is mock
