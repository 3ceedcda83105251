#!/usr/bin/env python
"""Kept for old habits: runs ``hintpool bench`` with the same options.

    python benchmarks/bench_core.py [--requests N] [--rounds R] [--origins K] ...

The benchmark itself lives in ``hintpool.cli.bench``; see benchmarks/README.md.
"""

from __future__ import annotations

import sys

from hintpool.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
