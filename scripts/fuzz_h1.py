#!/usr/bin/env python
"""Throw a million (or more) inputs at the HTTP/1.1 codec (``hintpool._h1``).

    python scripts/fuzz_h1.py                         # 1,000,000 inputs
    python scripts/fuzz_h1.py --count 5000000 --seconds 600 --seed 7
    python scripts/fuzz_h1.py --record                # keep the figures

Not part of the test run (``tests/test_h1.py`` runs the same properties for a
few hundred examples each). Inputs come from six generators, in turn:

* ``bytes``: random bytes after a GET or HEAD request, in random pieces,
  sometimes followed by EOF;
* ``soup``: the protocol's own vocabulary and traps (status lines, framing
  headers, chunk sizes, CR/LF, huge numbers) glued at random;
* ``mutation``: responses of ``tests/h1_corpus.py`` with bytes flipped,
  inserted, deleted or ranges duplicated;
* ``split``: valid corpus responses cut at random points must give exactly
  what they give in one piece;
* ``cycles``: several corpus responses on one codec, reused while
  ``reusable()``, with random garbage in between;
* ``request``: random methods, targets and headers for ``start_request``;
  only ``LocalProtocolError`` may come out, and an accepted head must parse
  back (llhttp's request parser) to the same method, target and headers.

Receiving may raise ``RemoteProtocolError`` and nothing else; a complete
response always has a head, and ``reusable()`` implies ``complete``. Stops
after ``--count`` inputs or ``--seconds``, whichever comes first; prints the
findings (the first few inputs of each kind) and exits 1 if there were any.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import httptools

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from hintpool._exceptions import LocalProtocolError, RemoteProtocolError  # noqa: E402
from hintpool._h1 import H1Codec  # noqa: E402
from tests.h1_corpus import CORPUS, run_codec  # noqa: E402

HOST = [(b"Host", b"example.com")]
SOUP = [
    b"HTTP/1.1 ", b"HTTP/1.0 ", b"HTTP/2.0 ", b"HTTP/1.1 200 OK", b"HTTP/1.1 100 ",
    b"HTTP/1.1 101 ", b"HTTP/1.1 204 ", b"HTTP/1.1 304 ", b"200", b"099", b" ", b"\t",
    b"\r\n", b"\r\n\r\n", b"\n", b"\r", b"\x00", b":", b": ", b"Content-Length: ",
    b"content-length:", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
    b"Connection: close", b"Connection: keep-alive", b"Upgrade: h2c", b"0", b"5",
    b"ffff", b"f" * 20, b"9" * 25, b"-1", b";ext=1", b"abc", b"\xff", b"\x7f",
    b"X-A: b", b"0\r\n\r\n", b"5\r\nhello\r\n", b"Trailer: x",
]  # fmt: skip
TOKENS = [
    b"GET", b"HEAD", b"POST", b"X-A", b"Host", b"Content-Length",
    b"Transfer-Encoding", b"Connection", b"chunked", b"close", b"/", b"/a?b",
]  # fmt: skip
METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]
VALUE = b'aZ09 \t!~,;="\x80\xc3\xa9'
SPECIAL = b"\r\n\x00\t :\x7f\x80\xff;,/"


def pieces(rng: random.Random, data: bytes) -> list[bytes]:
    if not data or rng.random() < 0.3:
        return [data]
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 8)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


Finding = tuple[str, str]  # (what went wrong, the input)
OUTCOMES: Counter[str] = Counter()  # how far inputs got: coverage, not findings


def receive(method: bytes, chunks: list[bytes], eof: bool) -> Finding | None:
    """Feed ``chunks`` (then EOF); the problem found, if any."""
    problem = _receive(method, chunks, eof)
    return None if problem is None else (problem, repr((method, chunks, eof)))


def _receive(method: bytes, chunks: list[bytes], eof: bool) -> str | None:
    codec = H1Codec()
    codec.start_request(method, b"/", HOST)
    try:
        for chunk in chunks:
            codec.feed(chunk)
        if eof:
            codec.feed_eof()
    except RemoteProtocolError:
        OUTCOMES["response: RemoteProtocolError"] += 1
    except Exception as exc:  # the finding this script exists for
        return f"raised {type(exc).__name__}: {exc}"
    else:
        OUTCOMES["response: complete" if codec.complete else "response: partial"] += 1
    return check_state(codec)


def check_state(codec: H1Codec) -> str | None:
    if codec.complete and codec.head is None:
        return "complete without a head"
    if codec.reusable() and not codec.complete:
        return "reusable before complete"
    if codec.body and codec.head is None:
        return "body before the head"
    return None


def gen_bytes(rng: random.Random) -> Finding | None:
    data = rng.randbytes(rng.randrange(0, 96))
    if rng.random() < 0.5:
        data = b"HTTP/1.1 200 OK\r\n"[: rng.randrange(18)] + data
    method = rng.choice([b"GET", b"HEAD"])
    return receive(method, pieces(rng, data), rng.random() < 0.5)


def gen_soup(rng: random.Random) -> Finding | None:
    data = b"".join(rng.choice(SOUP) for _ in range(rng.randrange(1, 24)))
    method = rng.choice([b"GET", b"HEAD"])
    return receive(method, pieces(rng, data), rng.random() < 0.5)


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(5)
        if kind == 0 and out:
            out[at % len(out)] = rng.randrange(256)
        elif kind == 1:
            out[at:at] = bytes([rng.choice(SPECIAL)])
        elif kind == 2:
            del out[at : at + rng.randrange(1, 6)]
        elif kind == 3:
            out[at:at] = out[rng.randrange(len(out) + 1) :][: rng.randrange(1, 40)]
        else:
            out[at:at] = rng.choice(SOUP)
    return bytes(out)


def gen_mutation(rng: random.Random) -> Finding | None:
    entry = rng.choice(SMALL_CORPUS)
    data = mutate(rng, entry.response)
    return receive(entry.method, pieces(rng, data), rng.random() < 0.5)


def gen_split(rng: random.Random) -> Finding | None:
    entry = rng.choice(SMALL_CORPUS)
    try:
        whole = EXPECTED[entry]
        split = run_codec(entry, pieces(rng, entry.response))
    except Exception as exc:
        return (f"valid response raised {type(exc).__name__}: {exc}", repr(entry))
    return None if split == whole else ("split points changed the result", repr(entry))


def gen_cycles(rng: random.Random) -> Finding | None:
    seen: list[bytes] = []
    problem = _cycles(rng, seen)
    return None if problem is None else (problem, repr(seen))


def _cycles(rng: random.Random, seen: list[bytes]) -> str | None:
    codec = H1Codec()
    try:
        for _ in range(rng.randrange(1, 6)):
            entry = rng.choice(SMALL_CORPUS)
            codec.start_request(entry.method, b"/", HOST)
            data = entry.response
            garbage = rng.random() < 0.2
            if garbage:
                data += rng.choice(SOUP)
            seen.append(data)
            for chunk in pieces(rng, data):
                codec.feed(chunk)
            if not codec.complete:
                codec.feed_eof()
            body = b"".join(codec.body)
            if codec.complete and not garbage and EXPECTED[entry].body != body:
                return "body differs on a reused codec"
            if not codec.reusable():
                break
            codec.next_cycle()
    except RemoteProtocolError:
        pass
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    return check_state(codec)


def random_field(rng: random.Random, usual: list[bytes], chars: bytes) -> bytes:
    """Mostly a usual value, else a few characters, rarely special ones."""
    if rng.random() < 0.5:
        return rng.choice(usual)
    pool = chars + SPECIAL if rng.random() < 0.3 else chars
    return bytes(rng.choice(pool) for _ in range(rng.randrange(0, 8)))


class _Request:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.done = True


def gen_request(rng: random.Random) -> Finding | None:
    method = random_field(rng, METHODS, b"GETPOSXaz")
    target = b"/" + random_field(rng, [b"", b"a?b=c"], b"az09-._~%?=&/")
    if rng.random() < 0.1:
        target = random_field(rng, TOKENS, b"az/")
    headers = [
        (random_field(rng, TOKENS, b"aZ09-!#"), random_field(rng, TOKENS, VALUE))
        for _ in range(rng.randrange(5))
    ]
    problem = _request(method, target, headers)
    return None if problem is None else (problem, repr((method, target, headers)))


def _request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> str | None:
    codec = H1Codec()
    try:
        head = codec.start_request(method, target, headers)
        head += codec.end_request()
    except LocalProtocolError:
        OUTCOMES["request: LocalProtocolError"] += 1
        return None
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    parsed = _Request()
    try:
        parser = httptools.HttpRequestParser(parsed)
        parser.feed_data(head)
        got_method = parser.get_method()
    except httptools.HttpParserError:
        # llhttp knows only registered methods and is stricter about values.
        OUTCOMES["request: accepted, llhttp refuses"] += 1
        return None
    OUTCOMES["request: accepted, parsed back"] += 1
    want = [(name, value.lstrip(b" \t")) for name, value in headers]  # as llhttp
    if not parsed.done or got_method != method or parsed.url != target:
        return "request line does not parse back"
    return None if parsed.headers == want else "headers do not parse back"


SMALL_CORPUS = [entry for entry in CORPUS if len(entry.response) < 4096]
EXPECTED = {entry: run_codec(entry) for entry in SMALL_CORPUS}
GENERATORS: list[tuple[str, Callable[[random.Random], Finding | None]]] = [
    ("bytes", gen_bytes),
    ("soup", gen_soup),
    ("mutation", gen_mutation),
    ("split", gen_split),
    ("cycles", gen_cycles),
    ("request", gen_request),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=int, default=200_000)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    findings: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    started = last = time.perf_counter()
    deadline = started + args.seconds
    done = 0
    for done in range(1, args.count + 1):
        name, generate = GENERATORS[done % len(GENERATORS)]
        finding = generate(rng)
        counts[name] += 1
        if finding is not None:
            problem, example = finding
            findings.setdefault(f"{name}: {problem}", []).append(example[:300])
        if done % args.report == 0:
            now = time.perf_counter()
            print(f"{done:>10,} inputs  {args.report / (now - last):>8,.0f}/s  "
                  f"findings={len(findings)}")  # fmt: skip
            last = now
        if done % 1000 == 0 and time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    print(f"\n{done:,} inputs in {elapsed:.1f} s ({done / elapsed:,.0f}/s); "
          f"by generator: {dict(counts)}")  # fmt: skip
    print("outcomes:", dict(sorted(OUTCOMES.items())))
    if findings:
        print(f"\n{len(findings)} kind(s) of finding:")
        for kind, examples in findings.items():
            print(f"  {kind}: {len(examples)}, e.g. {examples[:3]}")
    else:
        print("no findings")
    if args.record:
        from fuzz_hints import record  # the same figures file

        record(
            "fuzz_h1",
            {
                "inputs": done,
                "seed": args.seed,
                "seconds": round(elapsed, 1),
                "inputs_per_second": round(done / elapsed),
                "findings": sum(len(v) for v in findings.values()),
                "by_generator": dict(counts),
                "outcomes": dict(OUTCOMES),
                "python": platform.python_version(),
                "httptools": httptools.__version__,
                "date": time.strftime("%Y-%m-%d"),
            },
        )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
