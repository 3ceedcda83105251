"""``server_table.py --check``: compare the committed docs/servers.md with a
fresh probe.  Behaviour must match exactly; times only within a tolerance,
since idle closes jitter from run to run; a different server version is
only reported.
"""

from __future__ import annotations

import re

import proxy_table
import server_table_h2

TIME_TOLERANCE = 0.3
#: squid's and Dante's idle timers tick in whole seconds: their closes spread
#: over two seconds and the extremes of a few probes move from run to run.
PROXY_TIME_TOLERANCE = 1.0
#: The HTTP/1.1 servers' columns that hold times.
TIME_COLUMNS = (4, 5, 6)


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith(("| server ", "| proxy ")):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def _times(cell: str) -> list[float]:
    return [float(m) for m in re.findall(r"(\d+(?:\.\d+)?) s\b", cell)]


def compare(current: str, fresh: str, header_main: list[str]) -> list[str]:
    """Differences that matter between the committed and a fresh table
    (*header_main*: the HTTP/1.1 servers' column titles)."""
    problems = []
    old, new = _rows(current), _rows(fresh)
    proxies = set(proxy_table.NAMES.values())
    h2_rows = set(server_table_h2.NAMES.values())
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            problems.append(f"{name}: row missing on one side")
            continue
        header = proxy_table.HEADER if name in proxies else header_main
        if name in h2_rows:
            header = server_table_h2.HEADER_H2
        for index, (was, now) in enumerate(zip(old[name], new[name])):
            if index == 1:
                if was != now:
                    print(f"note: {name} version {was} here is {now}")
            elif name in proxies or name in h2_rows or index in TIME_COLUMNS:
                tolerance = PROXY_TIME_TOLERANCE if name in proxies else TIME_TOLERANCE
                if not _same_times(was, now, tolerance):
                    problems.append(f"{name}: {header[index]}: {was!r} -> {now!r}")
            elif was != now:
                problems.append(f"{name}: {header[index]}: {was!r} -> {now!r}")
    return problems


def _same_times(was: str, now: str, tolerance: float) -> bool:
    a, b = _times(was), _times(now)
    return (
        len(a) == len(b)
        and all(abs(x - y) <= tolerance for x, y in zip(a, b))
        and _strip_times(was) == _strip_times(now)
    )


def _strip_times(cell: str) -> str:
    return re.sub(r"\d+(?:\.\d+)? s\b", "N s", cell)
