"""``hintpool demo`` and ``hintpool bench``: output shape and failures, not speed."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import inspect
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import hintpool
from hintpool._local.origins import loopback_hosts
from hintpool._local.race import make_schedule, percentile
from hintpool.cli import (
    _bench_contenders,
    _bench_h2,
    _bench_report,
    _bench_report_extra,
    main,
)
from hintpool.cli._bench_measure import add_cpu_ratios, run_on_loop

FLOOR = "asyncio floor"
UVLOOP_ROW = "hintpool pool (uvloop)"
WIRE_ROWS = {"hintpool pool (httpcore wire)", "hintpool pool sync (httpcore wire)"}

RESULT_KEYS = {
    "requests",
    "failed",
    "by_method",
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


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect what each test left: a transport a bench run did not close
    then warns (and fails) in the test that ran it, not in a later one."""
    yield
    gc.collect()


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
    for result in document["results"].values():
        by_method = result["by_method"]
        assert set(by_method) == {"GET", "POST"}
        assert by_method["POST"]["requests"] > 0  # bursts alternate the methods
        assert sum(m["requests"] for m in by_method.values()) == result["requests"]
        assert sum(m["failed"] for m in by_method.values()) == result["failed"]
    hintpool = document["results"]["hintpool"]
    assert hintpool["failed"] == 0, hintpool["errors"]
    assert hintpool["errors"] == {}
    config = document["config"]
    assert sum(config["requests_per_origin"]) == config["requests_per_contender"]
    assert sum(config["bursts_per_origin"]) == config["bursts"]
    assert len(config["requests_per_origin"]) == config["origins"]


def test_demo_heading_says_what_is_per_origin() -> None:
    from hintpool.cli.demo import heading

    config = {
        "requests_per_contender": 344,
        "requests_per_origin": [86, 86, 86, 86],
        "bursts_per_origin": [22, 22, 22, 22],
        "origins": 4,
        "tls_origins": 2,
        "rtt_ms": 25.0,
        "keep_alive": "timeout=2, max=5",
    }
    title = heading(config)
    assert title.startswith(
        "The same 344 requests through each client: 86 requests per origin "
        "in 22 bursts after idle gaps, x 4 origins (2 TLS, 25 ms RTT)"
    )
    config["requests_per_origin"] = [80, 90, 86, 88]
    config["bursts_per_origin"] = [21, 22, 22, 23]
    assert "80-90 requests per origin in 21-23 bursts" in heading(config)


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
        results = workload["results"]
        assert workload["baseline"] in results
        peer = "urllib3" if workload["mode"] == "sync" else "aiohttp"
        assert workload["peer"] == peer
        for result in results.values():
            assert result["requests"] > 0
            assert {"req_per_s", "ratio_vs_httpx_default", "errors"} <= set(result)
            assert (result[f"ratio_vs_{peer}"] is None) is (peer not in results)
            cpu_ratio = result[f"cpu_ratio_vs_{peer}"]
            assert (cpu_ratio is None) is (peer not in results)
        if workload["mode"] == "async":
            assert (FLOOR in results) is _installed("httptools")
            assert (UVLOOP_ROW in results) is _installed("uvloop")
        assert bool(WIRE_ROWS & set(results)) is document["wire_keyword"]
    race = document["race"]["results"]
    assert {"hintpool pool", "hintpool+httpx", "httpx default"} <= set(race)
    assert not {FLOOR, UVLOOP_ROW} & set(race)  # no client / not on the race loop
    for result in race.values():
        assert {"requests", "failed", "error_types", "by_method"} <= set(result)
        assert set(result["by_method"]) <= {"GET", "POST"}
        sent = sum(m["requests"] for m in result["by_method"].values())
        assert sent == result["requests"]
    if plotting:
        assert plot.read_bytes().startswith(b"\x89PNG")


def test_bench_crawler_and_api_client_json_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "--workloads", "crawler,api-client"]
    argv += ["--crawler-seconds", "1", "--api-seconds", "1", "--json"]
    document = run_json(capsys, *argv)
    assert document["workloads"] == [] and document["race"] is None
    crawler = document["crawler"]
    assert (crawler["max_connections"], crawler["per_origin_cap"]) == (20, 4)
    assert {"httpx default"} <= set(crawler["results"])
    hintpool_rows = [n for n in crawler["results"] if n.startswith("hintpool")]
    assert len(hintpool_rows) == 1
    capped = (
        "max_connections_per_origin"
        in inspect.signature(hintpool.AsyncConnectionPool).parameters
    )
    assert ("per-origin cap 4" in hintpool_rows[0]) is capped
    for result in crawler["results"].values():
        assert result["without_slow"]["fast_requests"] > 0
        assert result["without_slow"]["slow_responses"] == 0
        assert {"fast_req_per_s", "fast_p99_ms", "errors"} <= set(result["with_slow"])
    api = document["api_client"]
    assert (api["rate"], api["keep_alive"]) == (20, "timeout=3, max=10")
    assert api["schedule"].startswith("one contender after another")
    prewarm = "prewarm" in inspect.signature(hintpool.AsyncConnectionPool).parameters
    names = set(api["results"])
    assert ("hintpool pool (pre-warm)" in names) is prewarm
    assert ("hintpool pool" in names) is not prewarm
    for result in api["results"].values():
        assert result["requests"] == 20
        assert 0 <= result["waited_for_handshake"] <= result["requests"]
        assert 1 <= result["opened_by_a_request"] <= result["server_connections"]
        waited = result["waited_for_connection"]
        assert 0 <= waited <= result["server_connections"]
        # The first request's connection is the one no pool can avoid.
        assert result["waited_after_first"] == max(0, waited - 1)
        assert 0 <= result["waited_after_first_share"] <= 1
        assert result["server_connections"] >= 1
        assert (
            result["tls_full"] + result["tls_resumed"] == result["server_connections"]
        )
    tables = _bench_report_extra.extra_tables(document)
    assert [len(rows) for _, _, rows in tables] == [
        len(crawler["results"]),
        len(api["results"]),
    ]
    _, headers, rows = tables[1]
    assert all(len(row) == len(headers) for row in rows)
    assert any("after the first" in header for header in headers)


def test_bench_skips_a_missing_contender_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bench_contenders, "missing", lambda: ["aiohttp"])
    argv = ["bench", "--requests", "10", "--rounds", "1", "--workloads", "async-1"]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert "aiohttp not installed: skipped" in captured.err.splitlines()
    document = json.loads(captured.out)
    results = document["workloads"][0]["results"]
    assert "aiohttp" not in results
    assert results["hintpool pool"]["ratio_vs_aiohttp"] is None


def test_wire_rows_follow_the_installed_pool(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = "wire" in inspect.signature(hintpool.AsyncConnectionPool).parameters
    assert _bench_contenders.supports_wire() is wire
    names = {c.name for c in _bench_contenders.contenders()}
    assert (names >= WIRE_ROWS) is wire
    monkeypatch.setattr(_bench_contenders, "supports_wire", lambda: False)
    assert not WIRE_ROWS & {c.name for c in _bench_contenders.contenders()}
    assert any("no wire=" in note for note in _bench_contenders.skip_notes())
    monkeypatch.setattr(_bench_contenders, "supports_wire", lambda: True)
    assert {c.name for c in _bench_contenders.contenders()} >= WIRE_ROWS
    assert not any("no wire=" in note for note in _bench_contenders.skip_notes())


def test_the_httpcore_wire_row_passes_wire_and_the_default_row_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []

    class Pool:  # stands in for a pool that takes wire=
        def __init__(self, **options: Any) -> None:
            seen.append(options)

        async def __aenter__(self) -> Pool:
            return self

        async def __aexit__(self, *exc_info: object) -> None:
            pass

    monkeypatch.setattr(hintpool, "AsyncConnectionPool", Pool)

    async def open_both() -> None:
        for wire in (None, "httpcore"):
            async with _bench_contenders._hintpool_pool_async(wire)(7, False):
                pass

    asyncio.run(open_both())
    assert [o.get("wire") for o in seen] == [None, "httpcore"]
    assert "wire" not in seen[0]  # a pool without the keyword still works
    assert all(o["max_connections"] == 7 for o in seen)


def test_run_on_loop_uses_the_factory_and_closes_its_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        loops.append(asyncio.new_event_loop())
        return loops[-1]

    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert run_on_loop(running(), factory) is loops[0]
    assert loops[0].is_closed()


def test_floor_keeps_one_connection_and_reports_failures() -> None:
    pytest.importorskip("httptools")
    from hintpool.cli._bench_floor import FloorError, floor_session

    async def scenario() -> tuple[int, int]:
        async with _canned_server() as (url, accepted):
            async with floor_session(4, False) as get:
                for _ in range(3):
                    await get(url + "/")
                with pytest.raises(FloorError, match="status 404"):
                    await get(url + "/missing")
                with pytest.raises(FloorError, match="closed"):
                    await get(url + "/cut")
            kept_alive = len(accepted)
            async with floor_session(4, True) as get:
                await get(url + "/")
                await get(url + "/")
            return kept_alive, len(accepted)

    kept_alive, total = asyncio.run(scenario())
    assert kept_alive == 1  # five requests, one connection
    assert total == 3  # Connection: close: one connection per request


@asynccontextmanager
async def _canned_server() -> AsyncIterator[tuple[str, list[None]]]:
    """200 hello; 404 for /missing; /cut closes halfway through the body."""
    accepted: list[None] = []

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        accepted.append(None)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /cut "):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
                    break
                status = b"404 Not Found" if b"/missing" in head else b"200 OK"
                close = b"Connection: close" in head
                writer.write(b"HTTP/1.1 %s\r\nContent-Length: 5\r\n\r\nhello" % status)
                if close:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", accepted


def test_report_rows_compare_async_with_aiohttp_and_sync_with_urllib3() -> None:
    def result(rate: float, **ratios: float | None) -> dict[str, Any]:
        ratios = {f"ratio_vs_{k}": v for k, v in ratios.items()}
        return {"req_per_s": rate, "cpu_us_per_request": 10, "errors": 0, **ratios}

    document = {
        "workloads": [
            {
                "title": "async",
                "results": {FLOOR: result(900, httpx_default=9.0, aiohttp=3.0)},
            },
            {
                "title": "sync",
                "results": {"urllib3": result(200, httpx_default=2.0, urllib3=1.0)},
            },
        ]
    }
    floor, urllib3 = _bench_report.rows(document)
    column = {name: i for i, name in enumerate(_bench_report.HEADERS)}
    assert floor[column["vs aiohttp"]] == "3.00x"
    assert floor[column["vs urllib3"]] == _bench_report.NOT_MEASURED
    assert urllib3[column["vs urllib3"]] == "1.00x"
    assert urllib3[column["vs aiohttp"]] == _bench_report.NOT_MEASURED
    # No CPU ratio in these results: the column shows a dash.
    assert floor[column["CPU vs peer"]] == _bench_report.NOT_MEASURED


def test_cpu_ratio_is_the_peers_cpu_per_request_over_the_rows() -> None:
    def result(rate: float, cpu_us: float) -> dict[str, Any]:
        return {"req_per_s": rate, "cpu_us_per_request": cpu_us, "errors": 0}

    results = {
        "hintpool pool": result(900, 40),
        "aiohttp": result(400, 100),
        "stalled": result(0, 0),
    }
    add_cpu_ratios(results, "aiohttp")
    assert results["hintpool pool"]["cpu_ratio_vs_aiohttp"] == 2.5
    assert results["aiohttp"]["cpu_ratio_vs_aiohttp"] == 1.0
    assert results["stalled"]["cpu_ratio_vs_aiohttp"] is None  # no requests
    document = {"workloads": [{"title": "async", "results": results}]}
    ours = _bench_report.rows(document)[0]
    column = {name: i for i, name in enumerate(_bench_report.HEADERS)}
    assert ours[column["CPU vs peer"]] == "2.50x"
    assert ours[column["CPU µs/req"]] == "40"

    without_peer = {"urllib3": result(1, 9)}
    add_cpu_ratios(without_peer, "aiohttp")  # aiohttp not installed
    assert without_peer["urllib3"]["cpu_ratio_vs_aiohttp"] is None


def test_schedule_is_seeded_and_bounded() -> None:
    first = make_schedule(3, 10.0)
    assert first == make_schedule(3, 10.0)
    assert first != make_schedule(4, 10.0)
    assert 0 < sum(b.gap for b in first) < 10.0 + 2.1
    assert {b.method for b in first} == {"GET"}
    mixed = make_schedule(3, 10.0, methods=("GET", "POST"))
    assert [(b.gap, b.requests) for b in mixed] == [(b.gap, b.requests) for b in first]
    assert [b.method for b in mixed[:4]] == ["GET", "POST", "GET", "POST"]
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_race_rows_split_failures_by_method() -> None:
    result = {
        "requests": 5,
        "failed": 2,
        "by_method": {
            "GET": {"requests": 3, "failed": 0},
            "POST": {"requests": 2, "failed": 2},
        },
        "error_types": {"ServerDisconnectedError: Server disconnected": 2},
        "p99_ms": 50.0,
    }
    document = {"race": {"seconds": 1, "results": {"aiohttp": result}}}
    (row,) = _bench_report.race_rows(document)
    column = {name: i for i, name in enumerate(_bench_report.RACE_HEADERS)}
    assert row[column["GET failed"]] == "0/3"
    assert row[column["POST failed"]] == "2/2"
    del result["by_method"]  # a document from before the split
    (row,) = _bench_report.race_rows(document)
    assert row[column["POST failed"]] == _bench_report.NOT_MEASURED


def _bench_report_can_plot() -> bool:
    return _bench_report.can_plot()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_bench_h2.missing() is not None, reason="needs h2 and node")
def test_bench_http2_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--workloads", "http2", "--requests", "20", "--rounds", "1"]
    document = run_json(capsys, *argv, "--json")
    http2 = document["http2"]
    assert set(http2["results"]) == {"1", "10", "100"}
    for results in http2["results"].values():
        assert set(results) == {"hintpool h2", "httpx h2", "hintpool h1"}
        for result in results.values():
            assert result["errors"] == {}
            assert result["cpu_us_per_request"] > 0
        assert results["hintpool h2"]["ratio_vs_httpx_h2"] > 0
    [table] = _bench_report_extra.extra_tables(document)
    assert len(table[2]) == 9


def test_bench_http2_skipped_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bench_h2, "missing", lambda: "node not found on PATH")
    assert main(["bench", "--workloads", "http2", "--json"]) == 0
    captured = capsys.readouterr()
    line = "http2 workload skipped: node not found on PATH"
    assert line in captured.err.splitlines()
    document = json.loads(captured.out)
    assert document["http2"] == {"skipped": "node not found on PATH"}
    assert _bench_report_extra.extra_tables(document) == []
