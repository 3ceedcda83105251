"""Tables of the crawler and api-client workloads of ``hintpool bench``."""

from __future__ import annotations

from typing import Any

__all__ = ["Table", "extra_tables"]

#: (title, headers, rows)
Table = tuple[str, tuple[str, ...], list[tuple[str, ...]]]
NOT_MEASURED = "\u2013"


def _cell(value: Any, suffix: str = "") -> str:
    if value is None:
        return NOT_MEASURED
    if isinstance(value, float):
        return f"{value:,.1f}{suffix}"
    return f"{value}{suffix}"


def _errors(*runs: dict[str, Any]) -> str:
    total: dict[str, int] = {}
    for run in runs:
        for name, count in run["errors"].items():
            total[name] = total.get(name, 0) + count
    return ", ".join(f"{n} {name}" for name, n in total.items()) or "0"


def crawler_table(crawler: dict[str, Any]) -> Table:
    title = (
        f"crawler: {crawler['origins'] - 1} fast origins and 1 slow one "
        f"({crawler['slow_seconds']} s per response), max_connections="
        f"{crawler['max_connections']}, per-origin cap {crawler['per_origin_cap']}; "
        f"{crawler['fast_tasks']} tasks on the fast origins, "
        f"{crawler['slow_tasks']} on the slow one ({crawler['seconds']:g} s per run)"
    )
    headers: tuple[str, ...] = (
        "client",
        "fast req/s alone",
        "fast req/s beside slow",
        "ratio",
        "fast p99 ms beside slow",
        "slow responses",
        "errors",
    )
    rows: list[tuple[str, ...]] = []
    for name, result in crawler["results"].items():
        alone, mixed = result["without_slow"], result["with_slow"]
        ratio = result["fast_throughput_ratio"]
        rows.append(
            (
                name,
                _cell(alone["fast_req_per_s"]),
                _cell(mixed["fast_req_per_s"]),
                NOT_MEASURED if ratio is None else f"{ratio:.2f}x",
                _cell(mixed["fast_p99_ms"]),
                str(mixed["slow_responses"]),
                _errors(alone, mixed),
            )
        )
    return title, headers, rows


def api_table(api: dict[str, Any]) -> Table:
    title = (
        f"api-client: {api['rate']} req/s for {api['seconds']:g} s over TLS "
        "per client, one client after another, "
        f"Keep-Alive: {api['keep_alive']}, {api['rtt_ms']:g} ms RTT; a request "
        "waited for a handshake when the server read it within "
        f"{api.get('joined_ms', 5):g} ms of its connection's handshake"
    )
    headers: tuple[str, ...] = (
        "client",
        "requests",
        "waited for a handshake (all; after the first)",
        "opened a connection",
        f"took >= 2 RTT ({api['handshake_wait_ms']:g} ms)",
        "p50 ms",
        "p99 ms",
        "p99 / p50",
        "connections (TLS full / resumed)",
        "pre-warmed (used / wasted)",
        "errors",
    )
    rows: list[tuple[str, ...]] = []
    for name, result in api["results"].items():
        share = result["waited_share"]
        slow = f"{result['waited_for_handshake']}" + (
            "" if share is None else f" ({share * 100:.1f} %)"
        )
        opened = _share(result["opened_by_a_request"], result["opened_share"])
        waited = _share(
            result.get("waited_for_connection"),
            result.get("waited_for_connection_share"),
        )
        after_first = _share(
            result.get("waited_after_first"), result.get("waited_after_first_share")
        )
        rows.append(
            (
                name,
                str(result["requests"]),
                f"{waited}; {after_first}",
                opened,
                slow,
                _cell(result["p50_ms"]),
                _cell(result["p99_ms"]),
                _cell(result["p99_over_p50"], "x"),
                f"{result['server_connections']} "
                f"({result['tls_full']} / {result['tls_resumed']})",
                _prewarm_cell(result.get("pool")),
                _errors(result),
            )
        )
    return title, headers, rows


def _share(count: int | None, share: float | None) -> str:
    # Documents written before the column existed have neither.
    if count is None or share is None:
        return NOT_MEASURED
    return f"{count} ({share * 100:.1f} %)"


def _prewarm_cell(pool: dict[str, int] | None) -> str:
    if not pool or not pool.get("prewarmed"):
        return NOT_MEASURED if not pool else "0"
    return f"{pool['prewarmed']} ({pool['prewarm_used']} / {pool['prewarm_wasted']})"


def extra_tables(document: dict[str, Any]) -> list[Table]:
    tables = []
    if document.get("crawler"):
        tables.append(crawler_table(document["crawler"]))
    if document.get("api_client"):
        tables.append(api_table(document["api_client"]))
    if (document.get("http2") or {}).get("results"):
        from ._bench_h2 import http2_table

        tables.append(http2_table(document["http2"]))
    return tables
