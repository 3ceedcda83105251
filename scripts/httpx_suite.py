#!/usr/bin/env python
"""Run httpx's own test suite with hintpool's transports swapped in.

    python scripts/httpx_suite.py                     # test_verbose + test_auth
    python scripts/httpx_suite.py tests/test_main.py tests/client
    python scripts/httpx_suite.py --all --compare     # whole suite, both ways
    python scripts/httpx_suite.py --workdir DIR ...   # reuse a download

On demand only, never in CI: it needs the package registry. Steps:

1. ``pip download --no-deps --no-binary :all: httpx==VERSION`` into a
   temporary directory (or ``--workdir``) and unpack it: the sdist holds
   httpx's ``tests/``. Nothing of httpx's is written into this repository.
2. ``pip install --target`` the test dependencies httpx's own CI pins
   (uvicorn, click, rich, chardet, socksio, brotli, zstandard) into that
   directory, ahead of the venv's on ``sys.path``: newer uvicorn, click and
   rich change the output that ``tests/test_main.py`` compares line by line.
3. Write two pytest plugins there. ``httpx_env`` pins the environment the
   way httpx's CI has it: uvicorn's h11 server rather than httptools (which
   hintpool installs; it sends ``transfer-encoding`` in lower case), and
   uvicorn's access log silenced (pytest >= 8 captures non-propagating
   loggers, which breaks ``test_utils.py::test_logging_*``).
   ``hintpool_swap`` replaces ``httpx.HTTPTransport`` /
   ``httpx.AsyncHTTPTransport`` and the names ``httpx.Client`` uses
   internally (``httpx._client.*``) by hintpool's classes, imported from this
   tree's ``src/``.
4. Run pytest in the unpacked sdist with hintpool swapped in (and, with
   ``--compare``, once more with httpx's own transport), then print each
   selected test's outcome. With ``--compare`` only tests whose outcome
   differs are listed, with the first line of hintpool's error.

Exit status: 0 when every selected test passes with hintpool (with
``--compare``: when none fails with hintpool that passes with httpx's own
transport), else 1. httpx's test server listens on 127.0.0.1:8000: that port
must be free.

Known, expected failures with hintpool (httpx 0.28.1, ``--all --compare``):
in ``client/test_proxies.py``, ``test_socks_proxy`` and the
``test_transport_for_request`` cases with a proxy, which assert that the
transport's private ``_pool`` is an instance of httpcore's ``HTTPProxy`` /
``SOCKSProxy`` (the proxy URL they also check, ``_pool._proxy_url``,
matches; the environment-proxy tests pass); and
``test_api.py::test_httpcore_lazy_loading``,
which unloads httpx and asserts that httpcore is imported only on the first
request, while importing hintpool imports httpcore.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SELECTION = [
    "tests/test_main.py::test_verbose",
    "tests/test_main.py::test_auth",
]
# httpx 0.28.1's requirements.txt pins these for its tests (uvicorn 0.32.1).
TEST_DEPENDENCIES = [
    "uvicorn==0.32.1",
    "click==8.1.8",
    "rich==13.9.4",
    "chardet==5.2.0",
    "socksio==1.0.0",
    "brotli",
    "zstandard",
]

# {test id: (outcome, first line of the error)}
Outcomes = dict[str, tuple[str, str]]

ENV_PLUGIN = """\
import logging

import pytest
import uvicorn.config

# httpx's CI has no httptools: uvicorn serves with h11, whose spelling of
# header names tests/test_main.py expects.
uvicorn.config.HTTP_PROTOCOLS["auto"] = uvicorn.config.HTTP_PROTOCOLS["h11"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    # After the session's server configured logging: its access log would
    # land in caplog (pytest >= 8 also captures non-propagating loggers).
    logging.getLogger("uvicorn.access").disabled = True
"""

SWAP_PLUGIN = """\
import os

import httpx
import httpx._client

import hintpool

httpx.HTTPTransport = hintpool.HTTPTransport
httpx.AsyncHTTPTransport = hintpool.AsyncHTTPTransport
httpx._client.HTTPTransport = hintpool.HTTPTransport
httpx._client.AsyncHTTPTransport = hintpool.AsyncHTTPTransport

# Counted, so that the report shows the swap took effect.
created = []
for cls in (hintpool.HTTPTransport, hintpool.AsyncHTTPTransport):
    def counting_init(self, *args, _init=cls.__init__, **kwargs):
        created.append(1)
        _init(self, *args, **kwargs)
    cls.__init__ = counting_init


def pytest_sessionfinish(session):
    with open(os.environ["HINTPOOL_SWAP_COUNT"], "w") as out:
        out.write(str(len(created)))
"""


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def prepare(workdir: Path, version: str, install_deps: bool) -> Path:
    """Download and unpack the sdist, install test deps, write the plugins."""
    source = workdir / f"httpx-{version}"
    if not (source / "tests").is_dir():
        spec = f"httpx=={version}"
        pip(
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-q",
            "-d",
            str(workdir),
            spec,
        )
        with tarfile.open(workdir / f"httpx-{version}.tar.gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(workdir, filter="data")
            else:  # Python < 3.9.17 has no extraction filters
                tar.extractall(workdir)
    deps = workdir / "deps"
    if install_deps and not deps.is_dir():
        pip("install", "-q", "--target", str(deps), *TEST_DEPENDENCIES)
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "httpx_env.py").write_text(ENV_PLUGIN)
    (plugins / "hintpool_swap.py").write_text(SWAP_PLUGIN)
    return source


def run_pytest(
    source: Path, workdir: Path, selection: list[str], swap: bool, extra: list[str]
) -> Outcomes:
    """Run httpx's tests (hintpool's transports swapped in or not)."""
    report = workdir / ("hintpool.xml" if swap else "httpx.xml")
    path = [str(workdir / "deps"), str(workdir / "plugins")]
    if swap:
        path.insert(0, str(ROOT / "src"))
    count = workdir / "transports-created"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env["HINTPOOL_SWAP_COUNT"] = str(count)
    plugins = ["-p", "httpx_env"] + (["-p", "hintpool_swap"] if swap else [])
    command = [sys.executable, "-m", "pytest", *plugins, "-p", "no:cacheprovider"]
    command += ["-q", "--junitxml", str(report), *extra, *selection]
    label = "hintpool's transports" if swap else "httpx's own transports"
    print(f"--- httpx's tests with {label}:", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=source, env=env, stdout=subprocess.DEVNULL)
    if swap:
        created = count.read_text() if count.exists() else "unknown (pytest crashed?)"
        print("hintpool transports created:", created, flush=True)
    return outcomes(report)


def outcomes(report: Path) -> Outcomes:
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        test_id = f"{module}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
                lines = (child.get("message") or "").splitlines()
                message = lines[0][:160] if lines else ""
                break
        results[test_id] = (outcome, message)
    return results


def report(ours: Outcomes, theirs: Outcomes | None) -> int:
    failing = 0
    for test_id, (outcome, message) in sorted(ours.items()):
        if theirs is not None:
            baseline = theirs.get(test_id, ("missing", ""))[0]
            if baseline == outcome:
                continue
            print(f"{test_id}: httpx {baseline}, hintpool {outcome}  {message}")
            failing += outcome in ("failed", "error") and baseline == "passed"
        else:
            print(f"{outcome.upper():8} {test_id}  {message}".rstrip())
            failing += outcome in ("failed", "error")
    counts = {k: sum(v[0] == k for v in ours.values()) for k in ("passed", "failed")}
    errors = sum(v[0] == "error" for v in ours.values())
    print(
        f"with hintpool: {counts['passed']} passed, {counts['failed']} failed", end=""
    )
    print(f", {errors} errors" if errors else "")
    if theirs is not None:
        print(f"fail only with hintpool: {failing}")
        base = sum(v[0] in ("failed", "error") for v in theirs.values())
        print(f"fail with httpx's own transport too: {base}")
    return 1 if failing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="*", help="pytest node ids in httpx's tree")
    parser.add_argument("--all", action="store_true", help="run httpx's whole suite")
    parser.add_argument("--compare", action="store_true", help="also run unswapped")
    parser.add_argument("--version", default="0.28.1", help="httpx version")
    parser.add_argument("--workdir", type=Path, help="reuse this directory")
    parser.add_argument("--no-deps", action="store_true", help="skip pinned deps")
    parser.add_argument("--pytest-arg", action="append", default=[], help="extra")
    args = parser.parse_args()
    selection = ["tests"] if args.all else (args.tests or DEFAULT_SELECTION)
    with tempfile.TemporaryDirectory(prefix="httpx-suite-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        source = prepare(workdir.resolve(), args.version, not args.no_deps)
        extra = args.pytest_arg
        ours = run_pytest(source, workdir, selection, swap=True, extra=extra)
        theirs = None
        if args.compare:
            theirs = run_pytest(source, workdir, selection, swap=False, extra=extra)
        return report(ours, theirs)


if __name__ == "__main__":
    sys.exit(main())
