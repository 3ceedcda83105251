"""The ``hintpool demo`` table: rows from the two contenders' results,
rendered with rich, and the heading that ``--json`` users can rebuild."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CONTENDERS", "heading", "print_table"]

CONTENDERS = ("httpx", "hintpool")
LABELS = {"httpx": "httpx (default transport)", "hintpool": "hintpool"}
#: Shown for a count that was not measured.
NOT_COUNTED = "\u2013"
TIMES = "\u00d7"


def _cell(value: Any) -> str:
    return NOT_COUNTED if value is None else str(value)


def _rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    sides = [results[name] for name in CONTENDERS]

    def row(
        label: str, render: Callable[[dict[str, Any]], str]
    ) -> tuple[str, list[str]]:
        return label, [render(side) for side in sides]

    def errors(side: dict[str, Any]) -> str:
        items = sorted(side["errors"].items(), key=lambda kv: -kv[1])
        return "\n".join(f"{n} {TIMES} {message}" for message, n in items) or "0"

    def failed(side: dict[str, Any]) -> str:
        style = "bold red" if side["failed"] else "bold green"
        return f"[{style}]{side['failed']}[/]"

    def failed_of(method: str) -> Callable[[dict[str, Any]], str]:
        def render(side: dict[str, Any]) -> str:
            counts = side["by_method"][method]
            style = "red" if counts["failed"] else "green"
            return f"[{style}]{counts['failed']}[/] of {counts['requests']}"

        return render

    def tls(side: dict[str, Any]) -> str:
        full, resumed = side["tls_handshakes_full"], side["tls_handshakes_resumed"]
        return f"{_cell(full)} / {_cell(resumed)}"

    def latency(side: dict[str, Any]) -> str:
        ms = side["latency_ms"]
        return " / ".join(_cell(ms[p]) for p in ("p50", "p95", "p99")) + " ms"

    return [
        row("requests", lambda s: str(s["requests"])),
        row("failed requests", failed),
        row("failed GET", failed_of("GET")),
        row("failed POST (never retried)", failed_of("POST")),
        row("errors", errors),
        row("retries", lambda s: _cell(s["retries"])),
        row("connections opened", lambda s: _cell(s["connections_opened"])),
        row("retired by max", lambda s: _cell(s["retired_by_max"])),
        row(
            "expired before the server's timeout",
            lambda s: _cell(s["expired_before_server_timeout"]),
        ),
        row("TLS handshakes full / resumed", tls),
        row("latency p50 / p95 / p99", latency),
        row(
            "requests written after the server closed (server-side, plain HTTP)",
            lambda s: str(s["server"]["requests_after_close"]),
        ),
    ]


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def heading(config: dict[str, Any]) -> str:
    """The table's title: what each origin got, then how many origins, so
    that the total adds up at a glance."""
    return (
        f"The same {config['requests_per_contender']} requests through each "
        f"client: {_span(config['requests_per_origin'])} requests per origin "
        f"in {_span(config['bursts_per_origin'])} bursts after idle gaps, "
        f"x {config['origins']} origins ({config['tls_origins']} TLS, "
        f"{config['rtt_ms']:g} ms RTT); servers sending Keep-Alive: "
        f"{config['keep_alive']}"
    )


def print_table(config: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    rtt, timeout = config["rtt_ms"], config["server_idle_timeout_s"]
    table = Table(
        title=heading(config),
        caption=(
            "Idle gaps fall close to the servers' 2 s timeout. httpx keeps idle "
            "connections 5 s and ignores the header, so a request it writes less "
            f"than one RTT ({rtt:g} ms) before the server's {timeout} s timeout "
            "meets the server's FIN: 'Server disconnected without sending a "
            "response'. hintpool stops reusing a connection 1 s (keepalive_margin) "
            "before the announced timeout and retires it when max runs out. "
            "Bursts alternate GET and POST: a client may retry a GET that met "
            "the FIN (aiohttp and urllib3 do, silently), never a POST. "
            f"httpx's counts are what its servers saw; '{NOT_COUNTED}': not counted."
        ),
        caption_justify="left",
        show_lines=True,
    )
    table.add_column("")
    for name in CONTENDERS:
        table.add_column(LABELS[name], justify="right")
    for label, cells in _rows(results):
        table.add_row(label, *cells)
    console = Console()
    console.print(table)
    console.print(
        f"Ran in {config['elapsed_s']} s (seed {config['seed']}; Python "
        f"{config['versions']['python']}, httpx {config['versions']['httpx']}, "
        f"hintpool {config['versions']['hintpool']})."
    )
