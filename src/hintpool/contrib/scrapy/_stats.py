"""hintpool's pool statistics, written into Scrapy's stats collector.

Written when the spider closes (before Scrapy dumps its stats) and when the
handler closes, summed over the handler's pools (one per bind address).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..._state import PoolStatistics

__all__ = ["STAT_FIELDS", "write_stats"]

#: pool statistics field -> Scrapy stats key (under ``hintpool/``).
STAT_FIELDS = {
    "connections_opened": "connections_opened",
    "requests": "requests",
    "reused": "reused",
    "retired_by_max": "retired_by_max",
    "retired_by_close": "retired_by_close",
    "expired": "expired",
    "evicted": "evicted",
    "closed_by_server": "closed_by_server",
    "retries": "stale_retries",
    "tls_handshakes_full": "tls_full",
    "tls_handshakes_resumed": "tls_resumed",
    "connect_errors": "connect_errors",
    "connect_timeouts": "connect_timeouts",
    "read_timeouts": "read_timeouts",
    "write_timeouts": "write_timeouts",
    "protocol_errors": "protocol_errors",
    "network_errors": "network_errors",
    # Requests that queued for max_connections_per_origin (newer pools).
    "waited": "waited",
}


def write_stats(stats: Any, snapshots: Iterable[PoolStatistics]) -> dict[str, int]:
    """Set ``hintpool/<name>`` in Scrapy's stats; returns what was set.

    ``hintpool/learned_timeouts`` counts the origins whose idle timeout the
    pool learned (they sent no ``Keep-Alive`` hint).
    """
    totals = dict.fromkeys(STAT_FIELDS.values(), 0)
    learned = 0
    for snapshot in snapshots:
        for field, key in STAT_FIELDS.items():
            totals[key] += int(getattr(snapshot, field, 0))
        learned += sum(
            1 for o in snapshot.origins.values() if o.learned_timeout is not None
        )
    totals["learned_timeouts"] = learned
    for key, value in totals.items():
        stats.set_value(f"hintpool/{key}", value)
    return totals
