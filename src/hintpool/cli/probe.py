"""``hintpool probe URL``: tell what a server really does with keep-alive.

It reports the ``Keep-Alive`` header (or its absence), ``Server`` and the
HTTP version, measures after how long the server closes an idle connection
and how many requests one connection accepts, for https the TLS version,
cipher and whether a session resumes, and recommends ``keepalive_margin`` /
``keepalive_expiry`` for that server. It only ever talks to the URL given.
The measurements are in ``_probe_measure``, the wire in ``_probe_wire``.

Exit status: 0 when the probe ran (a server that never closes is a result,
not an error), 1 when it failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from typing import Any, NoReturn

from ._probe_measure import ProbeOptions, ProbeReport, probe
from ._probe_wire import ProbeError, parse_target

__all__ = ["add_arguments", "render_text", "run", "usage_error"]

MAX_WAIT_CAP = 600.0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= MAX_WAIT_CAP:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_WAIT_CAP:g} seconds"
        )
    return value


def _request_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, strict: bool = True) -> None:
    """The probe's options; ``strict=False`` takes every value as text (to
    find ``--json`` and the URL in input that has a bad value)."""
    seconds: Any = _positive_seconds if strict else str
    parser.add_argument("url", help="the http:// or https:// URL to probe")
    parser.add_argument(
        "--max-wait",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="longest idle time to wait for the server to close (default: 30)",
    )
    parser.add_argument(
        "--max-requests",
        type=_request_count if strict else str,
        default=100,
        metavar="N",
        help="most requests to send on one connection (default: 100)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="bound on connecting and on waiting for each response (default: 10)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON, for scripts"
    )
    parser.add_argument(
        "--cafile", metavar="FILE", help="trust the CA certificates in FILE (https)"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's TLS certificate",
    )


class _Lenient(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def usage_error(argv: list[str], message: str) -> int | None:
    """Bad command-line input: with ``--json``, the JSON error that
    docs/probe.md promises (exit status 2); else None (argparse's usage)."""
    lenient = _Lenient(prog="hintpool probe", add_help=False)
    add_arguments(lenient, strict=False)
    try:
        args, _ = lenient.parse_known_args(argv)
    except ValueError:  # not even the URL is there
        args = argparse.Namespace(url=None, json="--json" in argv)
    if not args.json:
        return None
    print(json.dumps({"ok": False, "url": args.url, "error": message}))
    return 2


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as exc:
        message = f"cannot load --cafile {args.cafile!r}: {exc}"
        raise ProbeError(message, usage=True) from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def run(args: argparse.Namespace) -> int:
    def progress(message: str) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"... {message}", file=sys.stderr, flush=True)

    try:
        target = parse_target(args.url)
        options = ProbeOptions(
            max_wait=args.max_wait,
            max_requests=args.max_requests,
            timeout=args.timeout,
            ssl_context=_ssl_context(args) if target.scheme == "https" else None,
        )
        report = probe(target, options, progress)
    except ProbeError as exc:
        return _fail(args, str(exc), 2 if exc.usage else 1)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", 130)
    except Exception as exc:  # never a traceback: say what broke in one line
        return _fail(args, f"unexpected {type(exc).__name__}: {exc}", 1)
    if args.json:
        print(json.dumps({"ok": True, **report.to_json()}, indent=2))
    else:
        _print_report(report)
    return 0


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"ok": False, "url": args.url, "error": message}))
    else:
        print(f"hintpool probe: error: {message}", file=sys.stderr)
    return code


# -- the human report ----------------------------------------------------------


def _requests_text(report: ProbeReport) -> str:
    r = report.requests
    if r.ended_by == "limit":
        text = f"at least {r.count} (probe limit: --max-requests {r.max_requests})"
    elif r.ended_by == "silent":
        text = f"{r.count}, then it closed without saying Connection: close"
    elif report.response.http_version == "1.0":
        text = f"{r.count} (HTTP/1.0: it closes after each response)"
    else:
        text = f"{r.count}, the last with Connection: close"
    announced = [m for m in r.max_values if m is not None]
    if announced:
        if len(set(announced)) == 1:
            text += f"; max={announced[0]}, not counted down"
        else:
            text += f"; max counted {announced[0]} -> {announced[-1]}"
    return text


def _idle_text(report: ProbeReport) -> str:
    idle = report.idle_close
    if idle.method == "not-applicable":
        return "n/a: the server does not keep connections open"
    if idle.method == "open":
        text = f"did not close within {idle.max_wait:g} s"
    elif idle.method == "bisection":
        text = (
            f"about {idle.seconds:.2f} s (between {idle.low:.2f} and "
            f"{idle.high:.2f} s; no FIN, the connection was dropped silently)"
        )
    else:
        how = "reset" if idle.method == "reset" else "FIN"
        text = f"{idle.seconds:.2f} s after the response ({how})"
    if idle.unsolicited:
        text += f"; it first sent {idle.unsolicited.splitlines()[0]!r}"
    return text


def _tls_rows(report: ProbeReport) -> list[tuple[str, str]]:
    tls = report.tls
    if tls is None:
        return []
    rows = [("TLS", f"{tls.version}, {tls.cipher}, ALPN {tls.alpn or 'none'}")]
    if tls.resumed:
        handshake = (
            f"full {tls.full_handshake_ms} ms, resumed {tls.second_handshake_ms} ms"
        )
    elif tls.session_offered:
        handshake = (
            f"session not resumed (full {tls.full_handshake_ms} ms, "
            f"then {tls.second_handshake_ms} ms)"
        )
    else:
        handshake = f"full {tls.full_handshake_ms} ms; the server issued no session"
    rows.append(("TLS handshake", handshake))
    return rows


def report_rows(report: ProbeReport) -> list[tuple[str, str]]:
    resp = report.response
    rows = [
        ("URL", report.url),
        ("Response", f"{resp.status} {resp.reason}, HTTP/{resp.http_version}"),
        ("Server", resp.server or "(not sent)"),
        ("Keep-Alive", resp.keep_alive or "(not sent)"),
        ("Connection", resp.connection or "(not sent)"),
        ("Requests per connection", _requests_text(report)),
        ("Idle close", _idle_text(report)),
        ("TCP connect", f"{report.connect_ms} ms"),
    ]
    return rows + _tls_rows(report)


def _snippet(report: ProbeReport) -> str:
    rec = report.recommendation
    return (
        f"hintpool.HTTPTransport(keepalive_margin={rec.keepalive_margin:.1f}, "
        f"limits=httpx.Limits(keepalive_expiry={rec.keepalive_expiry:.1f}))"
    )


def render_text(report: ProbeReport) -> str:
    """The report as plain text (what is printed when rich is missing)."""
    rows = report_rows(report)
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    lines += ["", "Recommended settings:", f"  {_snippet(report)}"]
    lines += [f"  - {note}" for note in report.recommendation.notes]
    return "\n".join(lines)


def _print_report(report: ProbeReport) -> None:
    try:
        from rich.console import Console
        from rich.padding import Padding
        from rich.table import Table
        from rich.text import Text
    except ImportError:  # the cli extra is not installed
        print(render_text(report))
        return
    table: Any = Table(title="hintpool probe", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in report_rows(report):
        table.add_row(Text(label), Text(value))
    console = Console()
    console.print(table)
    console.print(Text("Recommended settings:", style="bold"))
    console.print(Text(f"  {_snippet(report)}"), soft_wrap=True)
    for note in report.recommendation.notes:
        console.print(Padding(Text(f"- {note}"), (0, 0, 0, 2)))
