#!/usr/bin/env python
"""How far a learned idle timeout is from the server's real one.

    python scripts/learn_accuracy.py                    # 1 s server, 20 runs
    python scripts/learn_accuracy.py --starve 0.2       # a starved reaper

A hint-less test server in another process closes idle connections after
``--timeout`` seconds; each run makes one request through a fresh sync
pool, waits until its reaper saw the close, and prints the learned timeout
minus the connection's idle age at the server's close, on the pool's own
idle clock (both processes read CLOCK_MONOTONIC). Negative is safe: the
pool then retires connections before the server closes them. Provisional
estimates (upper bounds, ``learned_provisional``) are listed apart.

``--starve S`` runs a busy thread in the client with a GIL switch interval
of S seconds, so the reaper thread wakes up to S late, as on a loaded
machine. Not part of the test run; the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import sys
import threading
import time
from typing import Any

import httpx

import hintpool


def _serve(timeout: float, ports: Any, closes: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    ports.put(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(
            target=_handle, args=(conn, timeout, closes), daemon=True
        ).start()


def _handle(conn: socket.socket, timeout: float, closes: Any) -> None:
    conn.settimeout(timeout)
    buffer = b""
    while True:
        try:
            data = conn.recv(65536)
        except socket.timeout:
            closes.put(time.monotonic())
            conn.close()
            return
        if not data:
            conn.close()
            return
        buffer += data
        if b"\r\n\r\n" in buffer:
            buffer = b""
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def _spin() -> None:
    while True:
        pass


def _one_run(url: str, closes: Any, margin: float) -> tuple[float | None, bool] | None:
    transport = hintpool.HTTPTransport(keepalive_margin=margin)
    with httpx.Client(transport=transport) as client:
        try:
            client.get(url + "/")
        except httpx.TransportError:
            # Starved past the server's timeout between connecting and
            # sending: the server closed the new connection. Not a run.
            closes.get(timeout=30)
            return None
        [origin] = transport._pool._state.origins.values()
        idle_since = origin.idle[0].lifetime.idle_since
        closed_at = closes.get(timeout=30)
        deadline = time.monotonic() + 10.0
        while not origin.closed_by_server and time.monotonic() < deadline:
            time.sleep(0.01)
        learned = origin.learned_timeout
        if learned is None:
            return None, False
        # getattr: runs against versions that learned the noticed age too.
        upper = getattr(origin, "learned_upper", False)
        return learned - (closed_at - idle_since), upper


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--starve", type=float, default=None)
    args = parser.parse_args()
    ports: Any = multiprocessing.Queue()
    closes: Any = multiprocessing.Queue()
    server = multiprocessing.Process(
        target=_serve, args=(args.timeout, ports, closes), daemon=True
    )
    server.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=10)}"
        if args.starve is not None:
            sys.setswitchinterval(args.starve)
            threading.Thread(target=_spin, daemon=True).start()
        safe, provisional, unlearned, failed = [], [], 0, 0
        for _ in range(args.runs):
            result = _one_run(url, closes, args.margin)
            if result is None:
                failed += 1
                continue
            error, upper = result
            if error is None:
                unlearned += 1
            else:
                (provisional if upper else safe).append(round(error * 1000))
    finally:
        server.kill()
        server.join()
    print(f"server timeout {args.timeout} s, starve {args.starve}, {args.runs} runs")
    print(f"learned - idle age at the close (ms): {sorted(safe)}")
    print(f"provisional (upper bounds): {sorted(provisional)}")
    print(f"not learned (the close looked young): {unlearned}")
    print(f"first request failed (client starved past the timeout): {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
