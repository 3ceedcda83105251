"""Real servers for the interop suite and ``scripts/server_table.py``.

``launch`` starts them, ``configs`` writes their configs, ``probe`` talks to
them over raw sockets, ``tls`` makes their certificates. The apps they serve
live next to this file (``asgi_app.py``, ``wsgi_app.py``, ``node_server.js``).
"""

from __future__ import annotations

from .launch import (
    KINDS,
    AccessRecord,
    RunningServer,
    ServerSpec,
    ServerStartError,
    ServerUnavailable,
    TLSFiles,
    server_version,
    start_server,
)

__all__ = [
    "KINDS",
    "AccessRecord",
    "RunningServer",
    "ServerSpec",
    "ServerStartError",
    "ServerUnavailable",
    "TLSFiles",
    "connections",
    "server_version",
    "ssl_session_reused",
    "start_server",
]


def connections(records: list[AccessRecord]) -> dict[int, int]:
    """Requests served per connection (keyed by client port), in log order."""
    counts: dict[int, int] = {}
    for record in records:
        counts[record.port] = counts.get(record.port, 0) + 1
    return counts


def ssl_session_reused(records: list[AccessRecord]) -> list[bool]:
    """nginx's ``$ssl_session_reused`` per logged request (for issue #4)."""
    flags = []
    for record in records:
        for field in record.fields:
            if field.startswith("r="):
                flags.append(field == "r=r")
    return flags
