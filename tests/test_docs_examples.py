"""Run every Python code block of docs/*.md and README.md.

Each ```python block runs on its own (fresh globals, ``__name__ ==
"__main__"``) against a local TestServer that announces
``Keep-Alive: timeout=5, max=...``:

* ``http://127.0.0.1:8000`` in a block is the placeholder for the server:
  it is replaced by the test server's URL.
* ``<!-- test-url: URL -->`` on the line before a block replaces ``URL``
  as well, for examples that read better with a real-looking host.
* ``<!-- no-test: reason -->`` on the line before a block skips it, with
  the reason shown by pytest.

While a block runs, only loopback addresses can be resolved or connected to,
so an example that would really reach another host fails here instead of
quietly depending on the network (mocked requests, e.g. with respx, never
get that far).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .fixtures_server import ServerFactory

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "http://127.0.0.1:8000"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"<!--\s*(?P<kind>no-test|test-url)\s*:\s*(?P<value>.*?)\s*-->")
PYTHON = {"python", "py", "python3"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    source: str
    marker: str | None  # "no-test" / "test-url"
    marker_value: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def python_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, fence = i, match["fence"]
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if match["lang"].lower() not in PYTHON:
            continue
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = MARKER.search(previous)
        yield Block(
            path=path,
            line=start + 1,
            source=textwrap.dedent("\n".join(body)),
            marker=None if marker is None else marker["kind"],
            marker_value="" if marker is None else marker["value"],
        )


BLOCKS = [block for path in markdown_files() for block in python_blocks(path)]


def test_the_docs_have_examples() -> None:
    # Guards the parser: if it stopped finding blocks, nothing would run.
    assert len(BLOCKS) >= 15
    files = {block.path.name for block in BLOCKS}
    assert {"README.md", "quickstart.md", "httpx.md"} <= files


def test_pages_say_how_to_start_the_examples_server() -> None:
    # A reader meets 127.0.0.1:8000 in the first example of these pages:
    # above it, each says how to start that server.
    pages = 0
    for path in markdown_files():
        first = next((b for b in python_blocks(path) if PLACEHOLDER in b.source), None)
        if first is None:
            continue
        pages += 1
        above = "\n".join(path.read_text(encoding="utf-8").splitlines()[: first.line])
        assert "hintpool serve" in above, first.name
    assert pages >= 3


LOG_LINE = "# hintpool DEBUG "


class _Lines(logging.Handler):
    """The messages as a handler prints them: formatted when logged (a
    connection's repr changes afterwards)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.usefixtures("restore_hintpool_logger")
def test_logging_examples_show_the_real_log_lines(
    server_factory: ServerFactory,
) -> None:
    # The "# hintpool DEBUG ..." comments of an example are what it logs.
    blocks = [b for b in BLOCKS if LOG_LINE in b.source]
    assert blocks
    for block in blocks:
        srv = server_factory(keep_alive="timeout=5, max={left}", max_requests=100)
        expected = [
            line[len(LOG_LINE) :].replace(PLACEHOLDER, srv.url)
            for line in block.source.splitlines()
            if line.startswith(LOG_LINE)
        ]
        handler = _Lines()
        logging.getLogger("hintpool").addHandler(handler)
        source = block.source.replace(PLACEHOLDER, srv.url)
        exec(compile(source, block.name, "exec"), {"__name__": "__main__"})
        assert handler.lines == expected, block.name


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host):
            raise OSError(f"docs examples may only reach loopback, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise OSError(f"docs examples may only reach loopback, not {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def restore_hintpool_logger() -> Iterator[None]:
    """Examples may turn on hintpool's DEBUG logging; undo it afterwards."""
    logger = logging.getLogger("hintpool")
    level, handlers = logger.level, list(logger.handlers)
    root_handlers = list(logging.getLogger().handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logging.getLogger().handlers[:] = root_handlers


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
@pytest.mark.usefixtures("restore_hintpool_logger")
def test_example(
    block: Block, server_factory: ServerFactory, request: pytest.FixtureRequest
) -> None:
    if block.marker == "no-test":
        pytest.skip(block.marker_value or "marked no-test")
    srv = server_factory(keep_alive="timeout=5, max={left}", max_requests=100)
    source = block.source.replace(PLACEHOLDER, srv.url)
    if block.marker == "test-url":
        assert block.marker_value, f"{block.name}: test-url needs a URL"
        assert block.marker_value in block.source, (
            f"{block.name}: {block.marker_value!r} does not occur in the block"
        )
        source = source.replace(block.marker_value.rstrip("/"), srv.url)
    request.getfixturevalue("loopback_only")
    code = compile(source, block.name, "exec")
    exec(code, {"__name__": "__main__"})
