"""The ``hintpool`` command: ``demo``, ``bench`` and ``probe``.

Each subcommand lives in its own module, imported only when it runs, so
``import hintpool`` never pays for the CLI's dependencies (rich, trustme,
matplotlib). Each module exposes ``add_arguments(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = {
    "demo": "run a local server and show what hintpool changes against httpx",
    "bench": "measure hintpool against the alternatives on local servers",
    "probe": "tell what a server really does with keep-alive",
}


def _module(name: str) -> object:
    return importlib.import_module(f"hintpool.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    from hintpool import __version__

    parser = argparse.ArgumentParser(
        prog="hintpool",
        description="An HTTP/1.1 connection pool that honours Keep-Alive hints.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        try:
            module = _module(name)
        except ImportError:
            continue  # not written yet, or its extra is not installed
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = _module(args.command).run(args)  # type: ignore[attr-defined]
    return code


if __name__ == "__main__":
    sys.exit(main())
