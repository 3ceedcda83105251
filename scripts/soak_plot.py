#!/usr/bin/env python
"""Plot the latest soak run: RSS, open FDs and CPU µs per request over time.

    python scripts/soak_plot.py                     # writes docs/soak.png
    python scripts/soak_plot.py --out /tmp/soak.png

Reads the samples ``scripts/soak.py`` recorded in
``scripts/reliability_figures.json`` (needs matplotlib). µs per request is
this process's CPU time (user + system) between two samples divided by the
requests sent between them: the server runs in another process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "scripts" / "reliability_figures.json"
OUT = ROOT / "docs" / "soak.png"


def cpu_per_request(samples: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(seconds, µs per request) for each interval between two samples."""
    points = []
    for before, after in zip(samples, samples[1:]):
        sent = after["requests"] - before["requests"]
        if sent > 0 and "cpu_seconds" in after and "cpu_seconds" in before:
            used = after["cpu_seconds"] - before["cpu_seconds"]
            points.append((after["seconds"], used / sent * 1e6))
    return points


def plot(soak: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = soak["samples"]
    seconds = [s["seconds"] for s in samples]
    cpu = cpu_per_request(samples)
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True)
    axes[0].plot(seconds, [s["rss_mib"] for s in samples], color="#1f77b4")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_ylim(0, max(s["rss_mib"] for s in samples) * 1.2)
    axes[1].plot(seconds, [s["fds"] for s in samples], color="#2ca02c")
    axes[1].set_ylabel("open FDs")
    axes[1].set_ylim(bottom=0)
    axes[2].plot([t for t, _ in cpu], [us for _, us in cpu], color="#d62728")
    axes[2].set_ylabel("CPU µs / request")
    axes[2].set_ylim(bottom=0)
    axes[2].set_xlabel("seconds")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"scripts/soak.py: {soak['requests']:,} requests to {soak['origins']:,} "
        f"origins ({soak['mode']}, {soak['date']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    soak = json.loads(FIGURES.read_text()).get("soak")
    if not soak:
        print("no soak run recorded: python scripts/soak.py", file=sys.stderr)
        return 1
    plot(soak, args.out)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
