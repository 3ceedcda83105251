"""``hintpool serve``: the server the documentation's examples talk to."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import hintpool
from hintpool.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def served() -> Iterator[str]:
    """``hintpool serve --port 0`` in a child process; yields its URL."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "hintpool", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), child.stderr
        yield url
        child.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert child.wait(10) == 0
        assert child.stderr is not None
        assert "Traceback" not in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_serve_answers_the_docs_routes_with_keep_alive(served: str) -> None:
    transport = hintpool.HTTPTransport()
    with httpx.Client(transport=transport) as client:
        echo = client.post(served + "/echo", content=b"hello")
        assert echo.content == b"hello"
        assert echo.headers["Keep-Alive"] == "timeout=5, max=99"
        assert len(client.get(served + "/bytes/100000").content) == 100_000
        assert client.get(served + "/").status_code == 200
    assert transport.statistics().reused == 2


def test_serve_on_a_busy_port_fails_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith("hintpool serve: ")
    assert str(port) in line
