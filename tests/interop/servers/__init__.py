"""Real servers for the interop suite and ``scripts/server_table.py``.

``launch`` starts them, ``configs`` writes their configs, ``probe`` talks to
them over raw sockets, ``tls`` makes their certificates. ``proxies``,
``proxy_configs`` and ``proxy_probe`` do the same for the real proxies
(squid, tinyproxy, microsocks, Dante). The apps they serve
live next to this file (``asgi_app.py``, ``wsgi_app.py``, ``node_server.js``).
"""

from __future__ import annotations

from .launch import (
    HTTP2_KINDS,
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
    "HTTP2_KINDS",
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
    """Requests served per connection, in log order.

    Keyed by client port, plus 65,536 for each earlier connection that had
    the same port: on a loaded machine the kernel hands a closed
    connection's port to the next one (seen through the delay proxy). The
    first field every server logs after the port is its count of requests
    on the connection (Apache's ``%k`` from 0, nginx's and Node's from 1):
    when it does not grow, a new connection took the port.
    """
    counts: dict[int, int] = {}
    last: dict[int, tuple[int, int]] = {}  # port -> (key, request counter)
    for record in records:
        key = record.port
        counter = _request_counter(record)
        seen = last.get(record.port)
        if seen is not None:
            key = seen[0]
            if counter is not None and counter <= seen[1]:
                key += 65_536  # the same port, a new connection
        counts[key] = counts.get(key, 0) + 1
        last[record.port] = (key, -1 if counter is None else counter)
    return counts


def _request_counter(record: AccessRecord) -> int | None:
    if record.fields and record.fields[0].isdigit():
        return int(record.fields[0])
    return None


def ssl_session_reused(records: list[AccessRecord]) -> list[bool]:
    """nginx's ``$ssl_session_reused`` per logged request (for issue #4)."""
    flags = []
    for record in records:
        for field in record.fields:
            if field.startswith("r="):
                flags.append(field == "r=r")
    return flags
