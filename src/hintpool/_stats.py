"""Statistics: counters kept per origin and in total, and their snapshots.

Theory of operation
-------------------
Every counter is kept twice: on its origin and in the pool's totals, both
incremented at the same place. So ``statistics()`` copies a dozen numbers
whatever the number of origins (a crawler polling it once a second does not
stall its event loop), and totals survive origins forgotten by the
``max_origins`` bound without any bookkeeping of their own.

Per-origin figures are built on demand: ``PoolStatistics.origins`` is a
read-only mapping over the live origin table. Looking one origin up costs
O(1); iterating costs O(origins), only for who asks for it.
"""

from __future__ import annotations

import operator
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpcore

from ._hints import KeepAlive

if TYPE_CHECKING:
    from ._state import OriginState

__all__ = [
    "COUNTER_FIELDS",
    "Counters",
    "OriginStatistics",
    "OriginsView",
    "PoolStatistics",
    "ProxyStatistics",
    "failure_counter",
    "origin_label",
]

OriginKey = tuple[bytes, bytes, int]

COUNTER_FIELDS: Final = (
    "connections_opened",
    "requests",
    "reused",
    "retired_by_max",
    "retired_by_close",
    "expired",
    "evicted",
    "closed_by_server",
    "retries",
    "tls_handshakes_full",
    "tls_handshakes_resumed",
    "tls_handshake_seconds",
    "connect_errors",
    "connect_timeouts",
    "read_timeouts",
    "write_timeouts",
    "protocol_errors",
    "network_errors",
    "proxy_errors",
    "goaways_received",
    "goaway_retries",
    "waited",
    "prewarmed",
    "prewarm_used",
    "prewarm_wasted",
    "prewarm_failed",
)


class Counters:
    """The counters of one origin, or of the whole pool."""

    __slots__ = COUNTER_FIELDS

    def __init__(self) -> None:
        for name in COUNTER_FIELDS:
            setattr(self, name, 0)
        self.tls_handshake_seconds = 0.0

    connections_opened: int
    requests: int
    reused: int
    retired_by_max: int
    retired_by_close: int
    expired: int
    evicted: int
    closed_by_server: int
    retries: int
    tls_handshakes_full: int
    tls_handshakes_resumed: int
    tls_handshake_seconds: float
    connect_errors: int
    connect_timeouts: int
    read_timeouts: int
    write_timeouts: int
    protocol_errors: int
    network_errors: int
    proxy_errors: int
    goaways_received: int
    goaway_retries: int
    waited: int
    prewarmed: int
    prewarm_used: int
    prewarm_wasted: int
    prewarm_failed: int

    def values(self) -> dict[str, Any]:
        return dict(zip(COUNTER_FIELDS, _read_counters(self)))


_read_counters: Final = operator.attrgetter(*COUNTER_FIELDS)


# Most specific first: ConnectTimeout is a TimeoutException, ConnectError a
# NetworkError.
_FAILURES: Final = (
    (httpcore.ConnectTimeout, "connect_timeouts"),
    (httpcore.ReadTimeout, "read_timeouts"),
    (httpcore.WriteTimeout, "write_timeouts"),
    (httpcore.ConnectError, "connect_errors"),
    (httpcore.ProtocolError, "protocol_errors"),
    (httpcore.NetworkError, "network_errors"),
    (httpcore.ProxyError, "proxy_errors"),
)


def failure_counter(exc: BaseException) -> str | None:
    """The counter a failure of this (hintpool or httpcore) class goes to.

    Cancellations, pool timeouts and bugs are not the origin's failures.
    """
    for cls, name in _FAILURES:
        if isinstance(exc, cls):
            return name
    return None


def origin_label(key: OriginKey) -> str:
    scheme, host, port = key
    host_text = host.decode("ascii", "replace")
    if ":" in host_text:  # IPv6 literal
        host_text = f"[{host_text}]"
    return f"{scheme.decode('ascii')}://{host_text}:{port}"


def _label_key(label: str) -> OriginKey | None:
    scheme, sep, rest = label.partition("://")
    host, colon, port = rest.rpartition(":")
    if not (sep and colon and port.isdigit()):
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return (scheme.encode("ascii"), host.encode("ascii"), int(port))
    except UnicodeEncodeError:
        return None


@dataclass(frozen=True)
class OriginStatistics:
    """Counters for one origin, as of the moment it was read."""

    connections_opened: int
    requests: int
    reused: int
    retired_by_max: int
    retired_by_close: int
    expired: int
    evicted: int
    closed_by_server: int
    retries: int
    last_hint: KeepAlive | None
    learned_timeout: float | None
    open: int
    idle: int
    active: int
    tls_handshakes_full: int = 0
    tls_handshakes_resumed: int = 0
    #: Seconds spent in TLS handshakes, all of this origin's connections.
    tls_handshake_seconds: float = 0.0
    #: Connection attempts refused, reset or failing the TLS handshake.
    connect_errors: int = 0
    connect_timeouts: int = 0
    read_timeouts: int = 0
    write_timeouts: int = 0
    #: Responses that broke HTTP/1.1 (or requests that could not be sent).
    protocol_errors: int = 0
    #: Reads or writes that failed on an open connection (a reset, say).
    network_errors: int = 0
    #: Tunnels the proxy refused or broke (see :class:`hintpool.ProxyError`).
    proxy_errors: int = 0
    #: The proxy this origin is reached through (its URL without
    #: credentials), or None. For ``http://`` requests forwarded by an
    #: HTTP(S) proxy the entry is the proxy's own, as the connections are.
    proxy: str | None = None
    #: "HTTP/1.1" or "HTTP/2": what the latest connection speaks (None
    #: before the first one).
    http_version: str | None = None
    #: The most requests one HTTP/2 connection carried at once.
    concurrent_streams_peak: int = 0
    #: HTTP/2 connections ended by the server's GOAWAY.
    goaways_received: int = 0
    #: Requests the server had not processed when it sent GOAWAY (or
    #: refused with REFUSED_STREAM), sent again on another connection.
    goaway_retries: int = 0
    #: Requests that found no free slot and queued (see
    #: ``max_connections_per_origin``).
    waited: int = 0
    #: Connections opened ahead of need (``prewarm=True``), and of those:
    #: used by a request, closed unused, and failed to open.
    prewarmed: int = 0
    prewarm_used: int = 0
    prewarm_wasted: int = 0
    prewarm_failed: int = 0
    #: ``learned_timeout`` is only an upper bound, from a close noticed long
    #: after the connection was last seen open: it shortens
    #: ``keepalive_expiry``, never lengthens it, and the pool goes on
    #: watching for a close that teaches the timeout itself.
    learned_provisional: bool = False


def origin_statistics(state: OriginState) -> OriginStatistics:
    idle = len(state.idle)
    return OriginStatistics(
        http_version=state.http_version,
        concurrent_streams_peak=state.streams_peak,
        last_hint=state.last_hint,
        learned_timeout=state.learned_timeout,
        learned_provisional=state.learned_upper,
        open=state.open,
        idle=idle,
        active=state.open - idle,
        proxy=state.proxy,
        **state.values(),
    )


@dataclass(frozen=True)
class ProxyStatistics:
    """One proxy, as of the moment it was read.

    Every connection of a pool with a proxy goes through it, so the
    connection counts are the pool's; ``forward_*``, ``last_hint`` and
    ``learned_timeout`` are those of the connections *to* the proxy that
    carry forwarded ``http://`` requests (the proxy's own Keep-Alive hint).
    """

    url: str
    connections_opened: int
    requests: int
    reused: int
    #: CONNECT or SOCKS5 tunnels opened (one per new tunnelled connection).
    tunnels_opened: int
    #: Connections to the proxy that forward ``http://`` requests.
    forward_connections_opened: int
    forward_open: int
    forward_idle: int
    proxy_errors: int
    last_hint: KeepAlive | None
    learned_timeout: float | None


def proxy_statistics(
    url: str, totals: Counters, forward: OriginState | None
) -> ProxyStatistics:
    forward_opened = 0 if forward is None else forward.connections_opened
    return ProxyStatistics(
        url=url,
        connections_opened=totals.connections_opened,
        requests=totals.requests,
        reused=totals.reused,
        tunnels_opened=totals.connections_opened - forward_opened,
        forward_connections_opened=forward_opened,
        forward_open=0 if forward is None else forward.open,
        forward_idle=0 if forward is None else len(forward.idle),
        proxy_errors=totals.proxy_errors,
        last_hint=None if forward is None else forward.last_hint,
        learned_timeout=None if forward is None else forward.learned_timeout,
    )


class OriginsView(Mapping[str, OriginStatistics]):
    """``"scheme://host:port"`` -> :class:`OriginStatistics`, built on read.

    Each entry reflects the origin when it is looked up, not when
    ``statistics()`` was called. ``len()`` and one lookup are O(1);
    iterating is O(origins).
    """

    __slots__ = ("_lock", "_origins")

    def __init__(
        self,
        origins: dict[OriginKey, OriginState],
        lock: AbstractContextManager[Any],
    ) -> None:
        self._origins = origins
        self._lock = lock

    def __getitem__(self, label: str) -> OriginStatistics:
        key = _label_key(label) if isinstance(label, str) else None
        with self._lock:
            state = self._origins.get(key) if key is not None else None
            if state is None:
                raise KeyError(label)
            return origin_statistics(state)

    def __len__(self) -> int:
        return len(self._origins)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            keys = list(self._origins)
        return map(origin_label, keys)

    def snapshot(self) -> dict[str, OriginStatistics]:
        """Every origin's entry, built now: O(origins)."""
        with self._lock:
            states = list(self._origins.items())
        return {origin_label(key): origin_statistics(s) for key, s in states}

    # Built from the states directly, without parsing each label back.
    def items(self) -> ItemsView[str, OriginStatistics]:
        return self.snapshot().items()

    def values(self) -> ValuesView[OriginStatistics]:
        return self.snapshot().values()

    def __repr__(self) -> str:
        # Printed as the dict it used to be (builds every entry).
        return repr(self.snapshot())


@dataclass(frozen=True)
class PoolStatistics:
    """Totals over the pool's life, current counts, and the per-origin view.

    The totals are a snapshot; ``origins`` is keyed ``"scheme://host:port"``
    and built entry by entry when read (see :class:`OriginsView`).
    """

    connections_opened: int
    requests: int
    reused: int
    retired_by_max: int
    retired_by_close: int
    expired: int
    evicted: int
    closed_by_server: int
    retries: int
    open: int
    idle: int
    active: int
    waiting: int
    tls_handshakes_full: int = 0
    tls_handshakes_resumed: int = 0
    tls_handshake_seconds: float = 0.0
    connect_errors: int = 0
    connect_timeouts: int = 0
    read_timeouts: int = 0
    write_timeouts: int = 0
    protocol_errors: int = 0
    network_errors: int = 0
    proxy_errors: int = 0
    goaways_received: int = 0
    goaway_retries: int = 0
    waited: int = 0
    prewarmed: int = 0
    prewarm_used: int = 0
    prewarm_wasted: int = 0
    prewarm_failed: int = 0
    origins: Mapping[str, OriginStatistics] = field(default_factory=dict)
    #: The pool's proxy by URL (without credentials): at most one entry.
    proxies: Mapping[str, ProxyStatistics] = field(default_factory=dict)
