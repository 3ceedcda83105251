"""``hintpool demo`` and ``hintpool bench``: output shape and failures, not speed."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from hintpool._local.origins import loopback_hosts
from hintpool._local.race import make_schedule, percentile
from hintpool.cli import _bench_contenders, main

RESULT_KEYS = {
    "requests",
    "failed",
    "errors",
    "retries",
    "connections_opened",
    "retired_by_max",
    "expired_before_server_timeout",
    "tls_handshakes_full",
    "tls_handshakes_resumed",
    "latency_ms",
    "server",
}


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # one JSON document and nothing else on stdout


def test_demo_quick_json_shows_no_failure_for_hintpool(
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = run_json(capsys, "demo", "--quick", "--json")
    assert set(document) == {"config", "results"}
    assert document["config"]["quick"] is True
    assert set(document["results"]) == {"httpx", "hintpool"}
    for result in document["results"].values():
        assert set(result) >= RESULT_KEYS
        assert result["requests"] == document["config"]["requests_per_contender"]
        assert set(result["latency_ms"]) == {"p50", "p95", "p99"}
    hintpool = document["results"]["hintpool"]
    assert hintpool["failed"] == 0, hintpool["errors"]
    assert hintpool["errors"] == {}


def test_demo_reports_a_busy_port_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = loopback_hosts(2)[0]  # where the demo's first origin listens
    with socket.socket() as busy:
        busy.bind((host, 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["demo", "--quick", "--origins", "1", "--port", str(port)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hintpool demo: cannot start the local servers:")
    assert f"{host}:{port}" in lines[0]


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_unknown_option_exits_2_with_a_one_line_error(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--no-such-option"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("error: unrecognized arguments: --no-such-option")
    )


def test_bench_rejects_an_unknown_workload(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--workloads", "sync,warp-speed"])
    assert info.value.code == 2
    assert "unknown workload 'warp-speed'" in capsys.readouterr().err


def test_bench_smoke_json_shape(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["bench", "--requests", "20", "--rounds", "1", "--origins", "3"]
    argv += ["--workloads", "sync,async-10,many-origins,race", "--race-seconds", "1"]
    plot = tmp_path / "bench.png"
    plotting = _bench_report_can_plot()
    if plotting:
        argv += ["--plot", str(plot)]
    document = run_json(capsys, *argv, "--json")
    assert {"config", "machine", "skipped", "workloads", "race"} <= set(document)
    assert [w["key"] for w in document["workloads"]] == [
        "sync",
        "async-10",
        "many-origins",
    ]
    for workload in document["workloads"]:
        assert workload["baseline"] in workload["results"]
        for result in workload["results"].values():
            assert result["requests"] > 0
            assert {"req_per_s", "ratio_vs_httpx_default", "errors"} <= set(result)
    race = document["race"]["results"]
    assert {"hintpool pool", "hintpool+httpx", "httpx default"} <= set(race)
    assert all({"requests", "failed", "error_types"} <= set(r) for r in race.values())
    if plotting:
        assert plot.read_bytes().startswith(b"\x89PNG")


def test_bench_skips_a_missing_contender_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bench_contenders, "missing", lambda: ["aiohttp"])
    argv = ["bench", "--requests", "10", "--rounds", "1", "--workloads", "async-1"]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert "aiohttp not installed: skipped" in captured.err.splitlines()
    document = json.loads(captured.out)
    assert "aiohttp" not in document["workloads"][0]["results"]
    assert "hintpool pool" in document["workloads"][0]["results"]


def test_schedule_is_seeded_and_bounded() -> None:
    first = make_schedule(3, 10.0)
    assert first == make_schedule(3, 10.0)
    assert first != make_schedule(4, 10.0)
    assert 0 < sum(b.gap for b in first) < 10.0 + 2.1
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def _bench_report_can_plot() -> bool:
    from hintpool.cli import _bench_report

    return _bench_report.can_plot()
