#!/usr/bin/env python
"""The HTTP/2 measurement of issue #14: runs ``hintpool bench --workloads
http2`` with the same options.

    python benchmarks/bench_h2.py [--requests N] [--rounds R]

The workload itself lives in ``hintpool.cli._bench_h2``; see
benchmarks/README.md.
"""

from __future__ import annotations

import sys

from hintpool.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--workloads", "http2", *sys.argv[1:]]))
