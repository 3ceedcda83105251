"""The ``hintpool`` command: ``demo``, ``bench``, ``probe`` and ``serve``.

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
from typing import NoReturn

SUBCOMMANDS = {
    "demo": "run a local server and show what hintpool changes against httpx",
    "bench": "measure hintpool against the alternatives on local servers",
    "probe": "tell what a server really does with keep-alive",
    "serve": "run the local server the documentation's examples use",
}


def _module(name: str) -> object:
    return importlib.import_module(f"hintpool.cli.{name}")


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Hands bad input to ``main`` instead of exiting, so that a subcommand
    can report it its own way (``probe --json`` prints JSON)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def build_parser() -> argparse.ArgumentParser:
    from hintpool import __version__

    parser = _Parser(
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
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        return _usage_error(exc, argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = _module(args.command).run(args)  # type: ignore[attr-defined]
    return code


def _usage_error(exc: _UsageError, argv: list[str]) -> int:
    """A subcommand's ``usage_error(argv, message)`` may report bad input
    itself (and return the exit status); else argparse's usual message and
    exit status 2."""
    command = next((arg for arg in argv if arg in SUBCOMMANDS), None)
    if command is not None:
        handler = getattr(_module(command), "usage_error", None)
        if handler is not None:
            code: int | None = handler(argv[argv.index(command) + 1 :], exc.message)
            if code is not None:
                return code
    argparse.ArgumentParser.error(exc.parser, exc.message)


if __name__ == "__main__":
    sys.exit(main())
