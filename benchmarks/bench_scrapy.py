#!/usr/bin/env python
"""Scrapy's default HTTP handler against hintpool's, on one local site.

    python benchmarks/bench_scrapy.py [--origins 20] [--groups 50]
        [--per-origin 2] [--rounds 1] [--json out.json] [--plot out.png]

Crawls origins x groups x per-origin pages (2,000 by default over 20
origins, half over TLS) with each handler in a real Scrapy process, on
local servers announcing ``Keep-Alive: timeout=2, max=5`` behind a 25 ms
round-trip delay, with idle gaps between page groups (most around the 2 s
timeout); every fifth page is a POST. See benchmarks/scrapy_site.py.

Reports per handler: pages fetched, requests that failed for good, retries
Scrapy's RetryMiddleware made, requests the servers received on a connection
they had already closed (the keep-alive race), connections opened and TLS
handshakes (counted by the servers), crawl wall time, pages per second
outside the idle gaps, and the crawl process's CPU time per page. Rounds
alternate the handlers' order.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import scrapy_site

COLUMNS = [
    ("pages", "pages"),
    ("failed", "failed"),
    ("retries", "Scrapy retries"),
    ("after_close", "requests after server close"),
    ("connections", "connections opened"),
    ("tls_full", "TLS full handshakes"),
    ("tls_resumed", "TLS resumed"),
    ("crawl_s", "crawl s"),
    ("pages_per_s", "pages/s (gaps excluded)"),
    ("cpu_ms_per_page", "CPU ms/page"),
]


def summarize(report: dict[str, Any], gaps: float) -> dict[str, Any]:
    stats = report["stats"]
    busy = max(report["crawl_seconds"] - gaps, 1e-9)
    return {
        "pages": report["pages"],
        "failed": report["failed"],
        "retries": stats.get("retry/count", 0),
        "after_close": report["server_requests_after_close"],
        "connections": report["server_connections"],
        "tls_full": report["server_tls_full"],
        "tls_resumed": report["server_tls_resumed"],
        "crawl_s": round(report["crawl_seconds"], 2),
        "pages_per_s": round(report["pages"] / busy, 1),
        "cpu_ms_per_page": round(
            1000 * report["process_cpu_seconds"] / max(report["pages"], 1), 2
        ),
        "errors": report["errors"],
        "retry_reasons": {
            k.split("/", 2)[2]: v
            for k, v in stats.items()
            if k.startswith("retry/reason_count/")
        },
    }


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _ in COLUMNS:
        out[key] = statistics.median(row[key] for row in rows)
    out["errors"] = rows[-1]["errors"]
    out["retry_reasons"] = rows[-1]["retry_reasons"]
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    head = "| handler | " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [head, rule]
    for handler, row in results.items():
        cells = " | ".join(str(row[key]) for key, _ in COLUMNS)
        lines.append(f"| {handler} | {cells} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [
        ("retries", "Scrapy retries"),
        ("connections", "connections opened"),
        ("tls_full", "TLS full handshakes"),
        ("pages_per_s", "pages/s (gaps excluded)"),
    ]
    fig, axes = plt.subplots(1, len(shown), figsize=(12, 3.2))
    names = list(results)
    for ax, (key, title) in zip(axes, shown):
        values = [results[name][key] for name in names]
        ax.bar(names, values, color=["#999999", "#2b7bba"][: len(names)])
        ax.set_title(title, fontsize=10)
        for i, value in enumerate(values):
            ax.annotate(str(value), (i, value), ha="center", va="bottom", fontsize=9)
    fig.suptitle("Scrapy crawl, 25 ms RTT, Keep-Alive: timeout=2, max=5")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=20)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--per-origin", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--plot", help="draw the comparison into this PNG")
    args = parser.parse_args()

    plan = scrapy_site.make_plan(args.origins, args.groups, args.per_origin)
    gaps = sum(plan.gaps)
    print(
        f"{plan.pages()} pages over {args.origins} origins, {args.groups} groups, "
        f"{gaps:.1f} s of idle gaps"
    )
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in scrapy_site.HANDLERS}
    for round_no in range(args.rounds):
        order = list(scrapy_site.HANDLERS)
        if round_no % 2:
            order.reverse()
        for handler in order:
            site = scrapy_site.start_site(args.origins)
            try:
                report = scrapy_site.run_crawl(handler, site, plan, timeout=900)
            finally:
                site.origins.stop()
            row = summarize(report, gaps)
            rows[handler].append(row)
            print(f"round {round_no + 1} {handler}: {json.dumps(row)}")
    results = {name: median_row(r) for name, r in rows.items()}
    print(table(results))
    for name, row in results.items():
        print(f"{name}: errors {row['errors']}, retry reasons {row['retry_reasons']}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"plan_pages": plan.pages(), "results": rows}, out, indent=1)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
