"""``hintpool bench``'s proxied workloads (issue #13): shape and failures, not speed."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

import hintpool
from hintpool._local import squid
from hintpool.cli import _bench_proxy, main

WORKLOADS = "proxy-forward,proxy-tls"
ROWS = {"hintpool pool", "hintpool+httpx", "httpx default"}


def _squid_or_skip(proxy_support: bool = True) -> None:
    if proxy_support and not hasattr(hintpool, "ProxyError"):
        pytest.skip("this hintpool has no proxy support yet")
    try:
        squid.find_squid()
    except squid.SquidUnavailable as exc:
        if os.environ.get("HINTPOOL_REQUIRE_SERVERS") == "1":
            pytest.fail(f"{exc} (HINTPOOL_REQUIRE_SERVERS=1)", pytrace=False)
        pytest.skip(str(exc))


def test_proxied_workloads_run_every_contender_without_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _squid_or_skip()
    argv = ["bench", "--requests", "40", "--rounds", "1", "--workloads", WORKLOADS]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [w["key"] for w in document["workloads"]] == WORKLOADS.split(",")
    expected = ROWS | ({"aiohttp"} if importlib.util.find_spec("aiohttp") else set())
    for workload in document["workloads"]:
        assert (workload["mode"], workload["concurrency"]) == ("async", 10)
        results = workload["results"]
        assert set(results) == expected
        for name, result in results.items():
            assert result["requests"] > 0, name
            assert result["errors"] == 0, (name, result["error_types"])
        assert results["httpx default"]["ratio_vs_httpx_default"] == 1.0


def test_race_through_squid_counts_failures_per_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _squid_or_skip()
    argv = ["bench", "--workloads", "proxy-race", "--race-seconds", "1", "--json"]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["race"] is None and document["workloads"] == []
    race = document["proxy_race"]
    assert "squid" in race["title"]
    assert set(race["results"]) >= ROWS
    for result in race["results"].values():
        assert {"requests", "failed", "error_types", "p99_ms"} <= set(result)
        assert result["requests"] > 0
    assert race["results"]["hintpool pool"]["failed"] == 0


def test_proxied_workloads_are_skipped_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bench_proxy, "skip_reason", lambda: "squid not found on PATH")
    argv = ["bench", "--requests", "10", "--rounds", "1", "--race-seconds", "1"]
    argv += ["--workloads", f"{WORKLOADS},proxy-race"]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert "proxied workloads skipped: squid not found on PATH" in captured.err
    assert "proxy race skipped: squid not found on PATH" in captured.err
    document = json.loads(captured.out)
    assert (document["workloads"], document["proxy_race"]) == ([], None)


def test_squid_is_stopped_and_its_directory_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _squid_or_skip(proxy_support=False)
    made: list[str] = []
    real_mkdtemp = squid.tempfile.mkdtemp

    def mkdtemp(**kwargs: str) -> str:
        made.append(real_mkdtemp(**kwargs))
        return made[-1]

    monkeypatch.setattr(squid.tempfile, "mkdtemp", mkdtemp)
    with squid.start_squid() as url:
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        assert squid._answers(port)
    assert not squid._answers(port)
    assert len(made) == 1 and not os.path.exists(made[0])
