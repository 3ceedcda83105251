"""``hintpool probe`` against local servers: measurements, output, bad input.

The servers are the test tree's TestServer and a few raw socket servers made
here for what TestServer does not do (drop idle connections without a FIN,
speak no HTTP, never answer). Waits are kept short with small --max-wait.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

from hintpool.cli import main
from hintpool.cli._probe_measure import IdleCloseTime, RequestCount, narrow, recommend
from hintpool.cli._probe_wire import ProbeError, parse_target
from hintpool.cli.probe import render_text

from .fixtures_server import ServerFactory

TOLERANCE = 0.5


def probe_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["probe", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


# -- measurements against TestServer -----------------------------------------


def test_close_time_max_and_json_shape(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = server_factory(
        keep_alive="timeout=1, max={left}", idle_timeout=1.0, max_requests=5
    )
    code, report = probe_json(capsys, srv.url + "/", "--max-wait", "5")
    assert code == 0
    assert report["ok"] is True
    assert set(report) == {
        "ok",
        "url",
        "connect_ms",
        "response",
        "requests",
        "idle_close",
        "tls",
        "recommendation",
    }
    response = report["response"]
    assert (response["status"], response["http_version"]) == (200, "1.1")
    assert response["keep_alive"] == "timeout=1, max=4"
    assert response["keep_alive_parsed"] == {"timeout": 1.0, "max": 4}
    assert report["requests"] == {
        "count": 5,
        "ended_by": "close",
        "max_requests": 100,
        "max_values": [4, 3, 2, 1, 0],
    }
    idle = report["idle_close"]
    assert idle["method"] == "fin"
    assert abs(idle["seconds"] - 1.0) < TOLERANCE
    assert report["tls"] is None
    rec = report["recommendation"]
    assert rec["keepalive_margin"] >= 1.0
    assert rec["notes"]
    # Two connections: one counted requests, one waited for the close.
    assert srv.connections_opened == 2


def test_human_report(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # The expiry is rounded down to half seconds: 1.75 s keeps the measured
    # close (which jitters both ways on a loaded machine) off a rounding edge.
    srv = server_factory(keep_alive=None, idle_timeout=1.75, max_requests=3)
    assert main(["probe", srv.url, "--max-wait", "5"]) == 0
    out = capsys.readouterr().out
    assert "Keep-Alive" in out
    assert "(not sent)" in out
    assert "s after the response (FIN)" in out
    assert "keepalive_expiry=0.5" in out  # 1.75 s close minus the 1 s margin


def test_server_that_never_closes_and_request_limit(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = server_factory(keep_alive="timeout=600", idle_timeout=None)
    args = [srv.url, "--max-wait", "0.5", "--max-requests", "7"]
    code, report = probe_json(capsys, *args)
    assert code == 0
    assert report["idle_close"]["method"] == "open"
    assert report["idle_close"]["seconds"] is None
    assert report["requests"]["count"] == 7
    assert report["requests"]["ended_by"] == "limit"
    assert main(["probe", *args]) == 0
    assert "did not close within 0.5 s" in capsys.readouterr().out


def test_server_closing_without_saying_so(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = server_factory(idle_timeout=0.3, max_requests=3, close_on_last=False)
    code, report = probe_json(capsys, srv.url, "--max-wait", "2")
    assert code == 0
    assert report["requests"]["count"] == 3
    assert report["requests"]["ended_by"] == "silent"
    assert abs(report["idle_close"]["seconds"] - 0.3) < TOLERANCE


def test_http10_server(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = server_factory(http_version=b"1.0")
    code, report = probe_json(capsys, srv.url, "--max-wait", "2")
    assert code == 0
    assert report["response"]["http_version"] == "1.0"
    assert report["requests"]["count"] == 1
    assert report["idle_close"]["method"] == "not-applicable"
    assert "nothing to reuse" in report["recommendation"]["notes"][0]


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def test_https_reports_tls_and_resumption(
    server_factory: ServerFactory,
    ca: trustme.CA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    srv = server_factory(tls=server_ctx, keep_alive="timeout=1", idle_timeout=1.0)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    args = [srv.url, "--max-wait", "3", "--cafile", str(cafile)]
    code, report = probe_json(capsys, *args)
    assert code == 0, report
    tls = report["tls"]
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls["cipher"]
    assert tls["alpn"] in (None, "http/1.1")
    assert tls["full_handshake_ms"] > 0
    assert tls["session_offered"] is True
    assert tls["resumed"] is True
    assert abs(report["idle_close"]["seconds"] - 1.0) < TOLERANCE

    # Without the CA the certificate is not trusted: one clear line.
    assert main(["probe", srv.url, "--max-wait", "1"]) == 1
    err = capsys.readouterr().err
    assert "not trusted" in err
    assert len(err.strip().splitlines()) == 1


# -- raw servers for what TestServer does not do ----------------------------

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawServer:
    """Runs ``handle(conn)`` in a thread for each accepted connection."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._handle = handle
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._stopping = False
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.05)  # so that stop() is noticed quickly
        while not self._stopping:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._conns.append(conn)
            conn.settimeout(10)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self._handle(conn)

    def stop(self) -> None:
        self._stopping = True
        self._accept.join(5)
        self.listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(handle: Callable[[socket.socket], None]) -> RawServer:
        srv = RawServer(handle)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def drops_silently_after(idle_timeout: float) -> Callable[[socket.socket], None]:
    """Answer requests; one that comes after ``idle_timeout`` idle gets a reset.

    What a connection dropped by a NAT or firewall looks like: no FIN ever
    arrives, the next request fails.
    """

    def handle(conn: socket.socket) -> None:
        last_response: float | None = None
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            if last_response and time.monotonic() - last_response > idle_timeout:
                linger = struct.pack("ii", 1, 0)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                conn.sendall(OK_RESPONSE)
                last_response = time.monotonic()

    return handle


def test_silent_drop_is_found_by_bisection(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    srv = raw_server(drops_silently_after(0.6))
    code, report = probe_json(capsys, srv.url, "--max-wait", "1.5")
    assert code == 0
    idle = report["idle_close"]
    assert idle["method"] == "bisection"
    assert idle["low"] <= 0.6 + 0.05
    # A request sent after a gap reaches the server's clock later by the
    # probe's own scheduling delay (up to ~80 ms measured with ten probe
    # threads on a loaded 2-core machine): a gap a little under 0.6 s may
    # already count as dead there.
    assert idle["high"] >= 0.6 - 0.1
    assert abs(idle["seconds"] - 0.6) < TOLERANCE


def test_narrow_converges_and_is_bounded() -> None:
    calls: list[Sequence[float]] = []

    def alive_after_each(gaps: Sequence[float]) -> list[bool]:
        calls.append(gaps)
        return [gap < 7.3 for gap in gaps]

    low, high = narrow(0.0, 30.0, alive_after_each)
    assert low < 7.3 <= high
    assert high - low <= 0.25
    assert len(calls) <= 4
    # A flaky answer (alive after a dead gap) never inverts the interval.
    low, high = narrow(0.0, 4.0, lambda gaps: [True, False, True])
    assert low < high


def test_recommend_larger_margin_for_early_closer() -> None:
    idle = IdleCloseTime(3.0, "fin", 30.0)
    from hintpool import KeepAlive

    rec = recommend(KeepAlive(5.0, None), reusable=True, idle=idle, round_trip=0.001)
    assert rec.keepalive_margin == 3.0  # 2 s early + the usual 1 s
    assert "before the timeout it announces" in rec.notes[0]


def test_render_text_without_rich(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from hintpool.cli._probe_measure import ProbeOptions, probe

    srv = server_factory(keep_alive="timeout=5, max={left}", idle_timeout=0.75)
    report = probe(parse_target(srv.url), ProbeOptions(max_wait=2, max_requests=3))
    text = render_text(report)
    assert "timeout=5, max=100" in text
    assert "at least 3" in text
    # It closes 4.25 s before the timeout it announces: margin 4.25 + 1,
    # rounded up to half seconds. With a 0.5 s close the expected margin sat
    # on the rounding edge: a close measured a few ms early (a loaded CI run)
    # made it 6.0.
    assert "hintpool.HTTPTransport(keepalive_margin=5.5" in text
    assert "before the timeout it announces" in text


# -- bad input: one line, non-zero, never a traceback ------------------------


def assert_one_line_error(
    capsys: pytest.CaptureFixture[str], args: list[str], code: int, words: str
) -> None:
    assert main(["probe", *args]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hintpool probe: error: ")
    assert words in lines[0]
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://127.0.0.1/", "http:// or https://"),
        ("127.0.0.1:8000", "http:// or https://"),
        ("http://", "no host"),
        ("http://127.0.0.1:99999/", "invalid URL"),
        ("http://user:pw@127.0.0.1/", "credentials"),
    ],
)
def test_invalid_url(capsys: pytest.CaptureFixture[str], url: str, words: str) -> None:
    assert_one_line_error(capsys, [url], 2, words)


def test_refused_connection(capsys: pytest.CaptureFixture[str]) -> None:
    # Bound but not listening: refused, and nothing else can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        assert_one_line_error(capsys, [url], 1, "connection refused by 127.0.0.1:")
        code, report = probe_json(capsys, url)
    assert code == 1
    assert report["ok"] is False
    assert "connection refused" in report["error"]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (socket.gaierror(-2, "Name or service not known"), "cannot resolve host"),
        (OSError(113, "No route to host"), "cannot connect to 127.0.0.1:9: No route"),
        (socket.timeout("timed out"), "timed out connecting to 127.0.0.1:9"),
    ],
)
def test_connect_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: OSError,
    words: str,
) -> None:
    def fail(*args: object, **kwargs: object) -> socket.socket:
        raise error

    monkeypatch.setattr(socket, "create_connection", fail)
    assert_one_line_error(capsys, ["http://127.0.0.1:9/"], 1, words)


def test_port_that_speaks_no_http(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def ssh_banner(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        conn.recv(1024)

    srv = raw_server(ssh_banner)
    assert_one_line_error(capsys, [srv.url], 1, "did not answer with HTTP/1.x")


def test_port_that_never_answers(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    srv = raw_server(lambda conn: conn.recv(1024) and time.sleep(0.6))
    args = [srv.url, "--timeout", "0.3"]
    assert_one_line_error(capsys, args, 1, "no response from 127.0.0.1:")


def test_server_that_hangs_up(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    srv = raw_server(lambda conn: None)
    assert_one_line_error(capsys, [srv.url], 1, "without sending a response")


def test_tls_to_a_plain_port(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = server_factory()
    url = srv.url.replace("http://", "https://")
    assert_one_line_error(capsys, [url, "--insecure"], 1, "TLS handshake")


def test_parse_target() -> None:
    target = parse_target("http://[::1]:8080/a?b=c")
    assert (target.host, target.port, target.path) == ("::1", 8080, "/a?b=c")
    assert target.host_header == "[::1]:8080"
    assert parse_target("https://example.test").host_header == "example.test"
    with pytest.raises(ProbeError) as info:
        parse_target("http://h/a b")
    assert info.value.usage


# -- bad command-line input with --json -------------------------------------


@pytest.mark.parametrize(
    ("args", "url", "words"),
    [
        (
            ["http://127.0.0.1:1/", "--max-wait", "abc"],
            "http://127.0.0.1:1/",
            "--max-wait",
        ),
        (
            ["http://127.0.0.1:1/", "--max-requests", "0"],
            "http://127.0.0.1:1/",
            "--max-requests",
        ),
        (
            ["http://127.0.0.1:1/", "--no-such-option"],
            "http://127.0.0.1:1/",
            "unrecognized",
        ),
        ([], None, "url"),
    ],
)
def test_bad_option_with_json_prints_a_json_error(
    capsys: pytest.CaptureFixture[str], args: list[str], url: str | None, words: str
) -> None:
    assert main(["probe", "--json", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err == ""
    report = json.loads(captured.out)
    assert report["ok"] is False
    assert report["url"] == url
    assert words in report["error"]


def test_bad_option_without_json_is_argparse_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", "http://127.0.0.1:1/", "--max-wait", "abc"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "hintpool probe: error: argument --max-wait" in captured.err


# -- the note on max says what the server did --------------------------------


def max_note(requests: RequestCount) -> str:
    idle = IdleCloseTime(None, "open", 5.0)
    rec = recommend(None, reusable=True, idle=idle, round_trip=0.001, requests=requests)
    [note] = [n for n in rec.notes if "max=" in n or "max down" in n]
    return note


def test_max_note_for_a_countdown_to_zero() -> None:
    note = max_note(RequestCount(3, "close", 100, [2, 1, 0]))
    assert note.startswith("It counts max down from 2 to 0")
    assert "the response that says max=0 (here the 3rd)" in note


def test_max_note_for_a_close_that_never_said_max_zero() -> None:
    note = max_note(RequestCount(2, "close", 100, [1, None]))
    assert "max=0" in note and "never saying max=0" in note
    assert "Connection: close on the 2nd response" in note
    assert "after the response that says max=0" not in note


def test_max_note_for_a_silent_close_and_the_probe_limit() -> None:
    assert "without saying so" in max_note(RequestCount(2, "silent", 100, [5, 4]))
    note = max_note(RequestCount(3, "limit", 3, [100, 100, 100]))
    assert note.startswith("It announces max=100 on every response, not counting")
    assert "still took requests" in note


def test_no_max_note_when_no_max_was_announced() -> None:
    idle = IdleCloseTime(None, "open", 5.0)
    requests = RequestCount(3, "close", 100, [None, None, None])
    rec = recommend(None, reusable=True, idle=idle, round_trip=0.0, requests=requests)
    assert not [n for n in rec.notes if "announces max" in n or "max down" in n]


def test_server_saying_max_1_then_connection_close(
    server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = server_factory(
        keep_alive="timeout=1, max=1", idle_timeout=0.5, max_requests=2
    )
    code, report = probe_json(capsys, srv.url + "/", "--max-wait", "2")
    assert code == 0
    assert report["requests"]["max_values"] == [1, 1]
    notes = " ".join(report["recommendation"]["notes"])
    assert "never saying max=0" in notes
    assert "after the response that says max=0" not in notes
