"""Tests for the test-suite helpers: tests/server.py and tests/delay_proxy.py."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Callable

import httpx
import pytest

from .delay_proxy import DelayProxy
from .fixtures_server import ProxyFactory, ServerFactory
from .server import ServerConfig, TestServer


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as c:
        yield c


def raw_get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: test\r\n%s\r\n" % (path.encode(), extra)


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=5)
    return sock


def recv_until_eof(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Read until EOF (bounded); ConnectionResetError propagates."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
    raise AssertionError("no EOF within the time limit")


def recv_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one Content-Length-framed response: (head, body).

    Unbuffered: only for a socket with nothing after that response.
    """
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"EOF before the end of the head: {buf!r}"
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        data = sock.recv(65536)
        assert data, "EOF in the body"
        body += data
    return head, body


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# -- routes -------------------------------------------------------------------


def test_basic_routes(server: TestServer, client: httpx.Client) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    r = client.get(server.url + "/")
    assert (r.status_code, r.content) == (200, b"hello")
    assert r.headers["content-length"] == "5"
    assert "keep-alive" not in r.headers

    r = client.post(server.url + "/echo", content=b"some body")
    assert r.content == b"some body"
    assert r.headers["x-method"] == "POST"
    r = client.request("PATCH", server.url + "/echo?q=1", content=b"")
    assert r.headers["x-method"] == "PATCH"

    r = client.get(server.url + "/headers", headers={"X-Custom": "Value"})
    assert ["x-custom", "Value"] in json.loads(r.content)

    r = client.get(server.url + "/bytes/100000")
    assert r.content == b"x" * 100000
    assert r.headers["content-length"] == "100000"

    r = client.get(server.url + "/chunked/2500")
    assert r.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in r.headers
    assert r.content == b"x" * 2500

    r = client.head(server.url + "/bytes/10")
    assert r.headers["content-length"] == "10"
    assert r.content == b""

    assert client.get(server.url + "/status/404").status_code == 404
    r = client.get(server.url + "/status/204")
    assert (r.status_code, r.content) == (204, b"")
    assert client.get(server.url + "/nope").status_code == 404

    t0 = time.monotonic()
    assert client.get(server.url + "/delay/0.1").status_code == 200
    assert time.monotonic() - t0 >= 0.09

    # All of that was one keep-alive connection.
    assert server.connections_opened == 1
    assert server.requests_served == 11


def test_chunk_sizes(server: TestServer) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/chunked/2500", b"Connection: close\r\n"))
        data = recv_until_eof(sock)
    assert b"\r\n3e8\r\n" in data  # chunks of at most 1000 bytes
    assert data.endswith(b"\r\n1f4\r\n" + b"x" * 500 + b"\r\n0\r\n\r\n")


def test_keep_alive_header(server_factory: ServerFactory, client: httpx.Client) -> None:
    srv = server_factory(keep_alive="timeout=1, max=2")
    r = client.get(srv.url + "/")
    assert r.headers["keep-alive"] == "timeout=1, max=2"
    srv.config = ServerConfig(keep_alive="timeout=7")  # applies to new requests
    assert client.get(srv.url + "/").headers["keep-alive"] == "timeout=7"


def test_conn_numbering(server: TestServer) -> None:
    with httpx.Client(trust_env=False) as c1, httpx.Client(trust_env=False) as c2:
        r = c1.get(server.url + "/conn")
        assert (r.text, r.headers["x-request-on-conn"]) == ("1", "1")
        r = c1.get(server.url + "/conn")
        assert (r.text, r.headers["x-request-on-conn"]) == ("1", "2")
        r = c2.get(server.url + "/conn")
        assert (r.text, r.headers["x-request-on-conn"]) == ("2", "1")
    server.wait_closed(2)
    records = server.connections
    assert [(c.number, c.requests) for c in records] == [(1, 2), (2, 1)]
    assert all(c.reason == "client" and not c.closed_by_server for c in records)
    assert server.requests_after_close == 0


def test_records_when_a_connection_was_ready_and_first_used(
    server: TestServer,
) -> None:
    # On the client's clock (same process), for the api-client bench.
    before = time.perf_counter()
    with connect(server.host, server.port):
        pass  # a connection that never sends a request
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/conn", b"Connection: close\r\n"))
        recv_until_eof(sock)
    server.wait_closed(2)
    after = time.perf_counter()
    unused, used = server.connections
    assert unused.first_request_at is None
    assert before <= unused.ready_at <= used.ready_at
    assert used.first_request_at is not None
    assert used.ready_at <= used.first_request_at <= after


def test_pipelined_requests(server: TestServer) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/conn") + raw_get("/conn", b"Connection: close\r\n"))
        data = recv_until_eof(sock)
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"X-Request-On-Conn: 1\r\n" in first
    assert b"X-Request-On-Conn: 2\r\n" in second
    assert first.endswith(b"\r\n\r\n1")
    assert second.endswith(b"\r\n\r\n1")


def test_close_route(server: TestServer, client: httpx.Client) -> None:
    r = client.get(server.url + "/close")
    assert r.headers["connection"] == "close"
    assert client.get(server.url + "/conn").text == "2"
    server.wait_closed(1)
    first = server.connections[0]
    assert (first.closed_by_server, first.reason) == (True, "close")


def test_client_connection_close(server: TestServer) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/", b"Connection: close\r\n"))
        data = recv_until_eof(sock)
    assert b"Connection: close" in data
    server.wait_closed(1)
    assert server.connections[0].reason == "close"


# -- connection lifetime ------------------------------------------------------


def test_max_requests(server_factory: ServerFactory, client: httpx.Client) -> None:
    srv = server_factory(keep_alive="timeout=5, max=2", max_requests=2)
    r1 = client.get(srv.url + "/conn")
    r2 = client.get(srv.url + "/conn")
    r3 = client.get(srv.url + "/conn")
    assert "connection" not in r1.headers
    assert r2.headers["connection"] == "close"
    assert [r.text for r in (r1, r2, r3)] == ["1", "1", "2"]
    srv.wait_closed(1)
    first = srv.connections[0]
    assert (first.requests, first.closed_by_server, first.reason) == (2, True, "max")
    assert srv.requests_after_close == 0


def test_max_requests_lying_server(server_factory: ServerFactory) -> None:
    srv = server_factory(max_requests=2, close_on_last=False)
    with connect(srv.host, srv.port) as sock:
        sock.sendall(raw_get("/"))
        recv_response(sock)
        sock.sendall(raw_get("/"))
        head, body = recv_response(sock)
        assert b"Connection" not in head
        assert body == b"hello"
        assert sock.recv(100) == b""  # then a FIN anyway
    srv.wait_closed(1)
    assert srv.connections[0].reason == "max"


def test_idle_timeout(server_factory: ServerFactory) -> None:
    srv = server_factory(idle_timeout=0.3)
    with connect(srv.host, srv.port) as sock:
        # Timed from before the request: the server's idle timer starts
        # after its response, so no earlier; timing from when this thread
        # got the response would undercount by however late a loaded
        # machine ran it.
        t0 = time.monotonic()
        sock.sendall(raw_get("/"))
        recv_response(sock)
        assert sock.recv(100) == b""  # FIN (an RST would raise here)
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.25
    srv.wait_closed(1)
    record = srv.connections[0]
    assert (record.closed_by_server, record.reason) == (True, "idle")
    assert srv.requests_after_close == 0


def test_idle_timeout_none(server_factory: ServerFactory) -> None:
    srv = server_factory(idle_timeout=None)
    with connect(srv.host, srv.port) as sock:
        sock.sendall(raw_get("/"))
        recv_response(sock)
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(100)
    srv.wait_closed(1)
    assert srv.connections[0].reason == "client"


def test_requests_after_close(server_factory: ServerFactory) -> None:
    srv = server_factory(idle_timeout=0.2)
    with connect(srv.host, srv.port) as sock:
        sock.sendall(raw_get("/"))
        recv_response(sock)
        srv.wait_closed(1)
        assert sock.recv(100) == b""
        sock.sendall(raw_get("/"))  # a buggy client reusing a closed connection
        wait_for(lambda: srv.requests_after_close == 1)
        assert sock.recv(100) == b""  # no answer, of course
    assert srv.connections[0].request_after_close


def test_http10_mode(server_factory: ServerFactory, client: httpx.Client) -> None:
    srv = server_factory(http_version=b"1.0", keep_alive="timeout=5")
    with connect(srv.host, srv.port) as sock:
        sock.sendall(raw_get("/"))
        data = recv_until_eof(sock)
    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Keep-Alive" not in data
    assert data.endswith(b"\r\n\r\nhello")
    r = client.get(srv.url + "/chunked/1500")
    assert r.http_version == "HTTP/1.0"
    assert r.content == b"x" * 1500
    assert client.get(srv.url + "/conn").text == "3"
    srv.wait_closed(3)
    assert [c.reason for c in srv.connections] == ["close"] * 3


def test_counts_and_reset(server: TestServer, client: httpx.Client) -> None:
    client.get(server.url + "/")
    client.get(server.url + "/")
    assert (server.connections_opened, server.requests_served) == (1, 2)
    server.reset_counts()
    assert server.connections == []
    assert (server.connections_opened, server.requests_served) == (0, 0)
    client.get(server.url + "/")
    assert (server.connections_opened, server.requests_served) == (0, 1)
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/conn"))
        assert recv_response(sock)[1] == b"2"  # numbers are never reset
        assert server.connections[0].client_port == sock.getsockname()[1]
    assert server.connections_opened == 1


def test_wait_closed_times_out(server: TestServer) -> None:
    with pytest.raises(TimeoutError):
        server.wait_closed(1, timeout=0.05)


# -- faults -------------------------------------------------------------------


def test_fault_reset_headers(server: TestServer, client: httpx.Client) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/fault/reset-headers"))
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    with pytest.raises(httpx.TransportError):
        client.get(server.url + "/fault/reset-headers")


def test_fault_reset_body(server: TestServer) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/fault/reset-body"))
        received = b""
        with pytest.raises(ConnectionResetError):
            while True:
                data = sock.recv(65536)
                assert data, "expected an RST, not a FIN"
                received += data
    assert received.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n")
    assert received.endswith(b"\r\n\r\n" + b"x" * 10)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/fault/garbage", b"NOT HTTP AT ALL\r\n\r\n"),
        ("/fault/close-no-response", b""),
        (
            "/fault/truncated-chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
    ],
)
def test_fault_fin(server: TestServer, path: str, expected: bytes) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get(path))
        assert recv_until_eof(sock) == expected
    server.wait_closed(1)
    record = server.connections[0]
    assert (record.closed_by_server, record.reason) == (True, "error")


def test_fault_trickle(server: TestServer) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/fault/trickle"))
        t0 = time.monotonic()
        data = b""
        while time.monotonic() - t0 < 1.2:
            data += sock.recv(100)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert 0 < len(data) - len(b"HTTP/1.1 200 OK\r\n") <= 3
    server.wait_closed(1)  # notices the client going away
    assert server.connections[0].reason == "client"


def test_fault_huge_headers(server: TestServer, client: httpx.Client) -> None:
    with connect(server.host, server.port) as sock:
        sock.sendall(raw_get("/fault/huge-headers"))
        head, body = recv_response(sock)
    assert len(head) > 200_000
    assert body == b"hello"
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(server.url + "/fault/huge-headers")


# -- TLS, lifecycle -----------------------------------------------------------


def test_tls(server_factory: ServerFactory) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    srv = server_factory(host="localhost", tls=server_ctx, idle_timeout=0.2)
    assert srv.url == f"https://localhost:{srv.port}"
    with httpx.Client(verify=client_ctx, trust_env=False) as c:
        assert c.get(srv.url + "/conn").text == "1"
        assert c.get(srv.url + "/conn").headers["x-request-on-conn"] == "2"
        srv.wait_closed(1)
    assert srv.connections[0].reason == "idle"


def test_stop_closes_connections() -> None:
    srv = TestServer(config=ServerConfig(idle_timeout=None))
    with srv, connect(srv.host, srv.port) as sock:
        sock.sendall(raw_get("/"))
        recv_response(sock)
        srv.stop()
        assert srv.thread is not None
        assert not srv.thread.is_alive()
        assert not srv.running
        assert sock.recv(100) == b""
    assert srv.connections[0].reason == "stop"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((srv.host, srv.port), timeout=1).close()
    srv.stop()  # idempotent


def test_stop_with_request_in_flight(server_factory: ServerFactory) -> None:
    srv = server_factory()
    with connect(srv.host, srv.port) as sock:
        sock.sendall(raw_get("/delay/20"))
        wait_for(lambda: srv.requests_served == 1)
        t0 = time.monotonic()
        srv.stop()
        # Far under the request's 20 s, so stop() did not wait for it; not
        # tighter, since a loaded machine can take seconds to join threads.
        assert time.monotonic() - t0 < 10
        assert recv_until_eof(sock) == b""


# -- delay proxy ----------------------------------------------------------------


def test_proxy_relays(server: TestServer, delay_proxy_factory: ProxyFactory) -> None:
    proxy = delay_proxy_factory(server.host, server.port)
    assert proxy.url() == f"http://127.0.0.1:{proxy.port}"
    assert proxy.url("https").startswith("https://")
    with httpx.Client(trust_env=False) as c:
        assert c.get(proxy.url() + "/").content == b"hello"
        r = c.post(proxy.url() + "/echo", content=b"y" * 300_000)
        assert r.content == b"y" * 300_000
        assert c.get(proxy.url() + "/chunked/5000").content == b"x" * 5000
    assert proxy.connections_opened == 1
    server.wait_closed(1)
    assert server.connections[0].requests == 3


def test_proxy_delays(server: TestServer, delay_proxy_factory: ProxyFactory) -> None:
    delay = 0.05
    proxy = delay_proxy_factory(server.host, server.port, delay=delay)
    with connect(proxy.host, proxy.port) as sock:
        for _ in range(3):
            t0 = time.monotonic()
            sock.sendall(raw_get("/"))
            recv_response(sock)
            assert time.monotonic() - t0 >= 2 * delay * 0.8
        # A server FIN is relayed after the delay too.
        t0 = time.monotonic()
        sock.sendall(raw_get("/fault/close-no-response"))
        assert recv_until_eof(sock) == b""
        assert time.monotonic() - t0 >= 2 * delay * 0.8


def test_proxy_relays_rst(
    server: TestServer, delay_proxy_factory: ProxyFactory
) -> None:
    proxy = delay_proxy_factory(server.host, server.port, delay=0.01)
    with connect(proxy.host, proxy.port) as sock:
        sock.sendall(raw_get("/fault/reset-headers"))
        with pytest.raises(ConnectionResetError):
            sock.recv(100)


def test_proxy_idle_close_seen_by_client(
    server_factory: ServerFactory, delay_proxy_factory: ProxyFactory
) -> None:
    srv = server_factory(idle_timeout=0.2)
    proxy = delay_proxy_factory(srv.host, srv.port, delay=0.02)
    with connect(proxy.host, proxy.port) as sock:
        sock.sendall(raw_get("/"))
        recv_response(sock)
        assert recv_until_eof(sock) == b""
    srv.wait_closed(1)
    assert srv.connections[0].reason == "idle"
    assert srv.requests_after_close == 0


def test_proxy_target_down(
    delay_proxy_factory: ProxyFactory, refused_port: int
) -> None:
    proxy = delay_proxy_factory("127.0.0.1", refused_port)
    # The RST may even beat the end of the client's connect().

    def attempt() -> None:
        with connect(proxy.host, proxy.port) as sock:
            sock.sendall(raw_get("/"))
            recv_until_eof(sock)

    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        attempt()
    assert proxy.connections_opened == 1


def test_proxy_stop(server: TestServer) -> None:
    proxy = DelayProxy(server.host, server.port, delay=0.01)
    with proxy, connect(proxy.host, proxy.port) as sock:
        sock.sendall(raw_get("/"))
        recv_response(sock)
        proxy.stop()
        assert proxy.thread is not None
        assert not proxy.thread.is_alive()
        assert sock.recv(100) == b""
    server.wait_closed(1)
