"""Render ``hintpool bench`` results: a rich (or plain) table, and a PNG plot.

Every row shows its ratio to httpx's default transport and to the mode's
peer: aiohttp for async rows, urllib3 for sync rows (the other peer's column
shows a dash); then the peer's CPU time per request over the row's, which
holds steady where the rates swing with the server's share of the cores.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ._bench_report_extra import extra_tables

__all__ = ["can_plot", "plot", "print_table", "race_rows", "rows"]

NOT_MEASURED = "\u2013"
TIMES = "\u00d7"
COLORS = {
    "hintpool pool": "#1f4e9c",
    "hintpool pool (httpcore wire)": "#9fb8e0",
    "hintpool pool (uvloop)": "#6a3d9a",
    "hintpool+httpx": "#4f83d1",
    "hintpool pool sync": "#1f4e9c",
    "hintpool pool sync (httpcore wire)": "#9fb8e0",
    "hintpool+httpx sync": "#4f83d1",
    "httpx default": "#8c8c8c",
    "httpx default sync": "#8c8c8c",
    "aiohttp": "#e08a1e",
    "urllib3": "#3c9a5f",
    "asyncio floor": "#333333",
}
PEERS = ("aiohttp", "urllib3")
HEADERS = (
    "workload",
    "client",
    "req/s",
    "vs httpx",
    *(f"vs {peer}" for peer in PEERS),
    "CPU vs peer",
    "CPU µs/req",
    "errors",
)


def _ratio(result: dict[str, Any], key: str) -> str:
    ratio = result.get(f"ratio_vs_{key}")
    return NOT_MEASURED if ratio is None else f"{ratio:.2f}x"


def _cpu_ratio(result: dict[str, Any]) -> str:
    """The peer's CPU µs per request over the row's (one peer per mode)."""
    for peer in PEERS:
        ratio = result.get(f"cpu_ratio_vs_{peer}")
        if ratio is not None:
            return f"{ratio:.2f}x"
    return NOT_MEASURED


def rows(document: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per (workload, contender), then the race rows."""
    out: list[tuple[str, ...]] = []
    for workload in document["workloads"]:
        title = workload["title"]
        for name, result in workload["results"].items():
            out.append(
                (
                    title,
                    name,
                    f"{result['req_per_s']:,.0f}",
                    _ratio(result, "httpx_default"),
                    *(_ratio(result, peer) for peer in PEERS),
                    _cpu_ratio(result),
                    f"{result['cpu_us_per_request']:,.0f}",
                    str(result["errors"]),
                )
            )
            title = ""
    return out


RACE_HEADERS = (
    "client",
    "requests",
    "failed",
    "GET failed",
    "POST failed",
    "p99 ms",
    "errors",
)


def _method_cell(result: dict[str, Any], method: str) -> str:
    counts = result.get("by_method", {}).get(method)
    return (
        NOT_MEASURED if counts is None else f"{counts['failed']}/{counts['requests']}"
    )


def race_rows(document: dict[str, Any], key: str = "race") -> list[tuple[str, ...]]:
    race = document.get(key) or {"results": {}}
    out: list[tuple[str, ...]] = []
    for name, result in race["results"].items():
        p99 = result["p99_ms"]
        errors = "; ".join(
            f"{count} {TIMES} {message}"
            for message, count in result["error_types"].items()
        )
        out.append(
            (
                name,
                str(result["requests"]),
                str(result["failed"]),
                _method_cell(result, "GET"),
                _method_cell(result, "POST"),
                NOT_MEASURED if p99 is None else f"{p99:g}",
                errors,
            )
        )
    return out


RACE_TITLE = (
    "race: the same bursts after idle gaps of 1.97-2.005 s, against servers "
    "sending Keep-Alive: timeout=2 behind a 25 ms RTT ({seconds:g} s); bursts "
    "alternate GET and POST, and a POST cannot be retried"
)


def _describe(document: dict[str, Any]) -> str:
    config, machine = document["config"], document["machine"]
    versions = ", ".join(
        f"{name} {version}" for name, version in machine["versions"].items() if version
    )
    return (
        f"Server: {config.get('server', 'none')}. {config['requests']} requests "
        f"per run (half for reconnects and many origins), median of "
        f"{config['rounds']} rounds, contenders alternating; "
        f"async rows compare with aiohttp, sync rows with urllib3. "
        f"{machine['cpus']} CPUs, {machine['platform']}; "
        f"{versions}."
    )


def print_table(document: dict[str, Any]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(document)
        return
    table = Table(
        title="hintpool bench", caption=_describe(document), caption_justify="left"
    )
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in rows(document):
        table.add_row(*row, end_section=False)
    console = Console()
    if not console.is_terminal and console.width < 140:
        console = Console(width=140)  # piped: no cell wraps
    if document["workloads"]:
        console.print(table)
    for key, title in _races(document):
        race = Table(title=title)
        for i, header in enumerate(RACE_HEADERS):
            race.add_column(header, justify="right" if 0 < i < 6 else "left")
        for row in race_rows(document, key):
            race.add_row(*row)
        console.print(race)
    for title, headers, rows_ in extra_tables(document):
        extra = Table(title=title)
        for i, header in enumerate(headers):
            extra.add_column(header, justify="left" if i == 0 else "right")
        for row in rows_:
            extra.add_row(*row)
        console.print(extra)


def _races(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, title) of each race that ran: the race, the race through squid."""
    out = []
    if document.get("race"):
        out.append(("race", RACE_TITLE.format(seconds=document["race"]["seconds"])))
    if document.get("proxy_race"):
        out.append(("proxy_race", document["proxy_race"]["title"]))
    return out


def _print_plain(document: dict[str, Any]) -> None:
    table = [HEADERS, *rows(document)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADERS))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(_describe(document))
    for key, title in _races(document):
        print()
        print(title)
        for row in [RACE_HEADERS, *race_rows(document, key)]:
            print("  ".join(row))
    for title, headers, rows_ in extra_tables(document):
        print()
        print(title)
        for row in [headers, *rows_]:
            print("  ".join(row))


def can_plot() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot(document: dict[str, Any], path: str) -> None:
    """One panel per workload: req/s bars with the ratio to httpx; race failures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [w for w in document["workloads"] if w["results"]]
    races = [document[key] for key, _ in _races(document)]
    heights = [len(w["results"]) for w in panels]
    heights += [len(race["results"]) for race in races]
    if not heights:
        heights = [1]
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(9, 0.9 + 0.42 * sum(heights) + 0.55 * len(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, workload in zip(axes[:, 0], panels):
        _panel(ax, workload)
    for ax, race in zip(axes[len(panels) :, 0], races):
        _race_panel(ax, race)
    fig.suptitle(
        "hintpool bench: " + document["config"].get("server", ""), x=0.01, ha="left"
    )
    fig.text(0.01, 0.005, _describe(document), fontsize=6.5, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _panel(ax: Any, workload: dict[str, Any]) -> None:
    names = list(workload["results"])
    rates = [workload["results"][n]["req_per_s"] for n in names]
    ax.barh(names, rates, color=[COLORS.get(n, "#555555") for n in names])
    ax.invert_yaxis()
    ax.set_title(workload["title"], loc="left", fontsize=10)
    ax.set_xlabel("requests per second (median)", fontsize=8)
    ax.tick_params(labelsize=8)
    top = max(rates, default=0) or 1
    ax.set_xlim(0, top * 1.5)  # room for the ratio labels
    for i, name in enumerate(names):
        label = f"{rates[i]:,.0f}" + _ratio_note(workload["results"][name])
        ax.text(rates[i] + top * 0.01, i, label, va="center", fontsize=7.5)


def _ratio_note(result: dict[str, Any]) -> str:
    """``  (2.10x httpx, 0.85x aiohttp)``: the ratios that were measured."""
    parts = [
        f"{result[f'ratio_vs_{key}']:.2f}x {label}"
        for key, label in (("httpx_default", "httpx"), *((p, p) for p in PEERS))
        if result.get(f"ratio_vs_{key}") is not None
    ]
    return f"  ({', '.join(parts)})" if parts else ""


def _race_panel(ax: Any, race: dict[str, Any]) -> None:
    names = list(race["results"])
    failed = [race["results"][n]["failed"] for n in names]
    posts = [
        race["results"][n].get("by_method", {}).get("POST", {}).get("failed", 0)
        for n in names
    ]
    colors = [COLORS.get(n, "#555555") for n in names]
    ax.barh(names, failed, color=colors, alpha=0.45, label="GET failed")
    ax.barh(names, posts, color=colors, label="POST failed")
    ax.legend(fontsize=7, loc="lower right")
    ax.invert_yaxis()
    where = " through squid (CONNECT + TLS)" if "title" in race else ""
    ax.set_title(
        f"race{where}: failed requests, server timeout=2 s behind 25 ms RTT"
        " (lower is better)",
        loc="left",
        fontsize=10,
    )
    ax.set_xlabel("failed requests", fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(labelsize=8)
    top = max(failed, default=0) or 1
    ax.set_xlim(0, top * 1.25)
    for i, name in enumerate(names):
        requests = race["results"][name]["requests"]
        ax.text(
            failed[i] + top * 0.01,
            i,
            f"{failed[i]} of {requests} ({posts[i]} POST)",
            va="center",
            fontsize=7.5,
        )
