"""Shared by the HTTP/2 interop tests (test_http2*.py): server specs,
clients, and counting what the servers logged."""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Awaitable, Callable

import anyio
import httpx

import hintpool

from .servers import HTTP2_KINDS, RunningServer, ServerSpec, TLSFiles

__all__ = [
    "CONCURRENT",
    "HTTP2_KINDS",
    "async_h2_client",
    "connections_needed",
    "h2_spec",
    "logged_paths",
    "ports",
    "run_concurrently",
    "sync_h2_client",
]

CONCURRENT = 100
LOG_WAIT = 5.0
#: SETTINGS_MAX_CONCURRENT_STREAMS as each server sends it (docs/servers.md;
#: Node sends none: no limit).
SERVER_STREAM_LIMITS = {"nginx": 128, "hypercorn": 100, "node": None}
#: httpcore's HTTP/2 connection allows 100 streams at once of its own.
CLIENT_STREAM_LIMIT = 100


def h2_spec(kind: str, tls: TLSFiles, **overrides: object) -> ServerSpec:
    options: dict[str, object] = {"idle_timeout": 2.0, "tls": tls, "http2": True}
    options.update(overrides)
    return ServerSpec(kind, **options)  # type: ignore[arg-type]


def connections_needed(kind: str, requests: int) -> int:
    limit = SERVER_STREAM_LIMITS[kind]
    streams = CLIENT_STREAM_LIMIT if limit is None else min(limit, CLIENT_STREAM_LIMIT)
    return math.ceil(requests / streams)


def sync_h2_client(
    verify: ssl.SSLContext, **options: object
) -> tuple[httpx.Client, hintpool.HTTPTransport]:
    options.setdefault("http2", True)
    transport = hintpool.HTTPTransport(verify=verify, **options)  # type: ignore[arg-type]
    return httpx.Client(transport=transport, timeout=10.0), transport


def async_h2_client(
    verify: ssl.SSLContext, **options: object
) -> tuple[httpx.AsyncClient, hintpool.AsyncHTTPTransport]:
    options.setdefault("http2", True)
    transport = hintpool.AsyncHTTPTransport(verify=verify, **options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, timeout=10.0), transport


async def run_concurrently(
    get: Callable[[str], Awaitable[httpx.Response]],
    urls: list[str],
    after: Callable[[int], None] | None = None,
) -> tuple[list[httpx.Response], list[BaseException]]:
    """GET every URL at once; ``after(done)`` runs as each one finishes."""
    responses: list[httpx.Response] = []
    failures: list[BaseException] = []

    async def one(url: str) -> None:
        try:
            response = await get(url)
            response.raise_for_status()
            responses.append(response)
        except httpx.HTTPError as exc:
            failures.append(exc)
        if after is not None:
            after(len(responses) + len(failures))

    async with anyio.create_task_group() as tg:
        for url in urls:
            tg.start_soon(one, url)
    return responses, failures


def logged_paths(
    server: RunningServer, since: int, prefix: str, expect: int = 0
) -> list[str]:
    """The request paths under ``prefix`` the server logged since a mark,
    once there are ``expect`` of them (bounded: servers log a little after
    the response went out)."""
    deadline = time.monotonic() + LOG_WAIT
    while True:
        paths = [
            field
            for record in server.records(since)
            for field in record.fields
            if field.startswith(prefix)
        ]
        if len(paths) >= expect or time.monotonic() > deadline:
            return paths
        time.sleep(0.02)


def ports(server: RunningServer, since: int, prefix: str) -> set[int]:
    """The client ports (so the connections) that carried those requests."""
    return {
        record.port
        for record in server.records(since)
        if any(field.startswith(prefix) for field in record.fields)
    }
