#!/usr/bin/env python
"""Per-response cost of the HTTP/1.1 codec (``hintpool._h1``) against h11.

    PYTHONPATH=src python benchmarks/bench_h1.py [--cycles N] [--rounds R]

One cycle is what a keep-alive connection does per request: serialise the
request head (five headers, no body), feed a typical ~150-byte response with
Content-Length and a small body in one piece, take the head and body, and get
ready for the next request. h11 does the same (send Request + EndOfMessage,
receive_data, next_event until EndOfMessage, start_next_cycle). Prints the
best of ``--rounds`` in µs of CPU time (``time.process_time``, so that other
processes on a busy machine distort it less) per cycle. A benchmark, not a
test: never assert on its figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import h11
import httptools

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from hintpool._h1 import H1Codec

REQUEST_HEADERS = [
    (b"Host", b"127.0.0.1:8000"),
    (b"Accept", b"*/*"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"Connection", b"keep-alive"),
    (b"User-Agent", b"python-httpx/0.28.1"),
]
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Date: Sat, 09 May 2026 07:35:25 GMT\r\n"
    b"Connection: keep-alive\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b"Hello, world!"
)


def codec_cycles(n: int) -> float:
    codec = H1Codec()
    start = time.process_time()
    for _ in range(n):
        codec.start_request(b"GET", b"/", REQUEST_HEADERS)
        codec.end_request()
        codec.feed(RESPONSE)
        head = codec.head
        body = codec.body
        assert head is not None and body and codec.complete
        codec.next_cycle()
    return time.process_time() - start


def h11_cycles(n: int) -> float:
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request  # built per cycle, as httpcore does
    end = h11.EndOfMessage()
    start = time.process_time()
    for _ in range(n):
        conn.send(request(method=b"GET", target=b"/", headers=REQUEST_HEADERS))
        conn.send(end)
        conn.receive_data(RESPONSE)
        response = conn.next_event()
        data = conn.next_event()
        done = conn.next_event()
        assert type(response) is h11.Response and type(data) is h11.Data
        assert type(done) is h11.EndOfMessage
        conn.start_next_cycle()
    return time.process_time() - start


def parser_creations(n: int) -> float:
    # What creating an llhttp parser per response would add (the codec only
    # does so after a HEAD, 101 or 1xx response).
    codec = H1Codec()
    start = time.process_time()
    for _ in range(n):
        httptools.HttpResponseParser(codec)
    return time.process_time() - start


def best(run: Callable[[int], float], cycles: int, rounds: int) -> float:
    run(cycles // 10)  # warm up
    return min(run(cycles) for _ in range(rounds)) / cycles * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"response: {len(RESPONSE)} bytes; best of {args.rounds} x {args.cycles}")
    ours = best(codec_cycles, args.cycles, args.rounds)
    theirs = best(h11_cycles, args.cycles, args.rounds)
    print(f"hintpool._h1 : {ours:6.2f} µs/cycle")
    print(f"h11          : {theirs:6.2f} µs/cycle ({theirs / ours:.1f}x)")
    creation = best(parser_creations, args.cycles, args.rounds)
    print(f"(a new llhttp parser would add {creation:.2f} µs/cycle)")


if __name__ == "__main__":
    main()
