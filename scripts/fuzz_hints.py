#!/usr/bin/env python
"""Throw a million (or more) inputs at the Keep-Alive header parser.

    python scripts/fuzz_hints.py                      # 1,000,000 inputs
    python scripts/fuzz_hints.py --inputs 5000000 --seed 7
    python scripts/fuzz_hints.py --no-record          # don't update the figures

Not part of the test run (``tests/test_fuzz.py`` and ``tests/test_hints.py``
run the same properties for a few hundred examples each). Inputs come from
five generators, in turn: random bytes, random unicode text, a soup of the
parser's own vocabulary and traps, mutated valid headers (bytes flipped,
inserted, deleted, duplicated), and raw response header lists for
``response_keep_alive``. Every input is checked:

* ``parse_keep_alive`` never raises and returns ``None`` or a ``KeepAlive``
  whose ``timeout`` is a finite float >= 0 and ``max`` an int >= 0;
* it agrees with an independent restatement of the documented rules (the
  oracle below), for ``str`` and ``bytes`` (cached and uncached) alike;
* ``response_keep_alive`` agrees with parsing the joined ``Keep-Alive``
  values, and its ``close`` flag with ``connection_tokens``.

Prints throughput every ``--report`` inputs and the findings (the first few
failing inputs of each kind) at the end; exits 1 if there were any. The
figures go to ``scripts/reliability_figures.json`` for
``scripts/reliability_table.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from hintpool import KeepAlive, parse_keep_alive  # noqa: E402
from hintpool._hints import connection_tokens, response_keep_alive  # noqa: E402

FIGURES = ROOT / "scripts" / "reliability_figures.json"

_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_INTEGER = re.compile(r"[0-9]+\Z")


def oracle(text: str) -> KeepAlive | None:
    """The documented rules, restated as plainly as possible."""
    timeout = max_ = None
    for param in re.split("[,;]", text):
        if "=" not in param:
            continue
        name, value = param.split("=", 1)
        name = name.strip(" \t").lower()
        value = value.strip(" \t")
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1].strip(" \t")
        if len(value) > 32:
            continue
        if name == "timeout" and _DECIMAL.match(value):
            timeout = float(value)
        elif name == "max" and _INTEGER.match(value):
            max_ = int(value)
    if timeout is None and max_ is None:
        return None
    return KeepAlive(timeout, max_)


VOCABULARY = [
    "timeout", "TimeOut", "TIMEOUT", "max", "Max", "maximum", "x-timeout",
    "=", "==", ",", ";", '"', " ", "\t", "0", "1", "5", "007", "100", ".",
    "5.", ".5", "2.5", "1e3", "-1", "+5", "inf", "nan", "5_0", "0x10",
    "\u0665", "\uff15", "\u00a0", "\u00b2", "\x00", "\r\n", "9" * 32, "9" * 33,
]  # fmt: skip
VALID = [
    "timeout=5, max=100", "timeout=5", "max=3, timeout=2", 'timeout="5"',
    "timeout=5; max=100", "Timeout=15, Max=1000", "timeout = 5 , max = 3",
]  # fmt: skip


def gen_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(0, 48))


def gen_text(rng: random.Random) -> str:
    return "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(0, 24)))


def gen_soup(rng: random.Random) -> str:
    return "".join(rng.choice(VOCABULARY) for _ in range(rng.randrange(0, 16)))


def gen_mutation(rng: random.Random) -> bytes:
    data = bytearray(rng.choice(VALID).encode())
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[pos % len(data)] = rng.randrange(256)
        elif kind == 1:
            data[pos:pos] = bytes([rng.randrange(256)])
        elif kind == 2 and data:
            del data[pos % len(data)]
        else:
            data += b"," + data[: rng.randrange(len(data) + 1)]
    return bytes(data)


HEADER_NAMES = [b"Keep-Alive", b"keep-alive", b"KEEP-ALIVE", b"Connection", b"X-A"]


def gen_headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    headers = []
    for _ in range(rng.randrange(0, 6)):
        name = rng.choice(HEADER_NAMES)
        value = rng.choice(
            [gen_mutation(rng), gen_soup(rng).encode(), b"close", b"Keep-Alive, close"]
        )
        headers.append((name, value))
    return headers


def check_value(hint: Any) -> str | None:
    if hint is None:
        return None
    if not isinstance(hint, KeepAlive):
        return "not a KeepAlive"
    if hint.timeout is None and hint.max is None:
        return "empty KeepAlive"
    if hint.timeout is not None and not (
        type(hint.timeout) is float
        and math.isfinite(hint.timeout)
        and hint.timeout >= 0
    ):
        return "bad timeout"
    if hint.max is not None and not (type(hint.max) is int and hint.max >= 0):
        return "bad max"
    return None


def check_text(text: str) -> str | None:
    try:
        result = parse_keep_alive(text)
    except Exception as exc:  # the finding this script exists for
        return f"raised {exc!r}"
    return check_value(result) or (None if result == oracle(text) else "oracle")


def check_raw(raw: bytes) -> str | None:
    try:
        result = parse_keep_alive(raw)
        again = parse_keep_alive(raw)  # from the memo cache
        uncached = parse_keep_alive(bytearray(raw))
    except Exception as exc:
        return f"raised {exc!r}"
    if not (result == again == uncached):
        return "cache disagrees"
    return check_value(result) or (
        None if result == oracle(raw.decode("latin-1")) else "oracle"
    )


def check_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    try:
        hint, close = response_keep_alive(headers)
    except Exception as exc:
        return f"raised {exc!r}"
    values = [v for n, v in headers if n.lower() == b"keep-alive"]
    expected = parse_keep_alive(b", ".join(values)) if values else None
    if hint != expected:
        return "joined headers"
    want_close = any(
        n.lower() == b"connection" and "close" in connection_tokens(v)
        for n, v in headers
    )
    return None if close == want_close else "close flag"


GENERATORS: list[tuple[str, Callable[[random.Random], Any], Callable[[Any], Any]]] = [
    ("bytes", gen_bytes, check_raw),
    ("text", gen_text, check_text),
    ("soup", gen_soup, check_text),
    ("mutation", gen_mutation, check_raw),
    ("headers", gen_headers, check_headers),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=int, default=200_000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    findings: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    hints = 0
    started = last = time.perf_counter()
    for i in range(1, args.inputs + 1):
        name, generate, check = GENERATORS[i % len(GENERATORS)]
        value = generate(rng)
        problem = check(value)
        counts[name] += 1
        if problem is not None:
            findings.setdefault(f"{name}: {problem}", []).append(repr(value)[:200])
        elif name != "headers" and parse_keep_alive(value) is not None:
            hints += 1
        if i % args.report == 0:
            now = time.perf_counter()
            rate = args.report / (now - last)
            print(f"{i:>10,} inputs  {rate:>9,.0f}/s  findings={len(findings)}")
            last = now
    elapsed = time.perf_counter() - started
    total_rate = args.inputs / elapsed
    print(
        f"\n{args.inputs:,} inputs in {elapsed:.1f} s ({total_rate:,.0f}/s), "
        f"{hints:,} gave a hint; by generator: {dict(counts)}"
    )
    if findings:
        print(f"\n{len(findings)} kind(s) of finding:")
        for kind, examples in findings.items():
            print(f"  {kind}: {len(examples)}, e.g. {examples[:3]}")
    else:
        print("no findings")
    if not args.no_record:
        record(
            "fuzz",
            {
                "inputs": args.inputs,
                "seed": args.seed,
                "seconds": round(elapsed, 1),
                "inputs_per_second": round(total_rate),
                "gave_a_hint": hints,
                "findings": sum(len(v) for v in findings.values()),
                "by_generator": dict(counts),
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d"),
            },
        )
    return 1 if findings else 0


def record(section: str, figures: dict[str, Any]) -> None:
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[section] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"figures written to {FIGURES.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
