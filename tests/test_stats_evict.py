"""Statistics cost and the eviction choice (``hintpool._stats``, ``_evict``).

Pure bookkeeping, as in tests/test_state.py: no sockets, no clock.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hintpool._evict import GHOST_SLACK
from hintpool._hints import KeepAlive
from hintpool._policy import LifetimePolicy
from hintpool._state import OriginKey, PooledConnection, PoolState, origin_label
from hintpool._stats import OriginsView, failure_counter


def make_state(max_connections: float = 1000, max_idle: float = 1000) -> PoolState:
    return PoolState(
        max_connections=max_connections,
        max_idle=max_idle,
        policy=LifetimePolicy(margin=1.0, keepalive_expiry=5.0),
        server_closed=lambda conn: False,
    )


def key(i: int) -> OriginKey:
    return (b"http", f"h{i}.example".encode(), 80)


def request(state: PoolState, k: OriginKey, now: float = 0.0) -> list[Any]:
    """One request on origin ``k``, reusing or opening; returns closed ones."""
    to_close: list[PooledConnection] = []
    origin = state.origin(k)
    result = state.checkout(origin, now, to_close)
    if not isinstance(result, PooledConnection):
        result = PooledConnection(origin, object())
        state.connection_opened(result)
    result.lifetime.response_headers(KeepAlive(60.0, None), False)
    state.release(result, now, True, to_close)
    return to_close


class NoScan(dict):  # type: ignore[type-arg]
    """An origin table that fails the test when walked."""

    def _walked(self, *args: Any) -> Any:
        raise AssertionError("statistics() walked the origin table")

    __iter__ = items = values = keys = _walked  # type: ignore[assignment]


# -- statistics ---------------------------------------------------------------


def test_totals_do_not_walk_the_origins() -> None:
    state = make_state(max_idle=10)
    for i in range(5000):
        request(state, key(i))
    request(state, key(1))  # one reuse
    state.origins = NoScan(state.origins)
    stats = state.statistics()
    assert (stats.requests, stats.connections_opened, stats.reused) == (5001, 5000, 1)
    assert stats.evicted == 4990  # 10 idle kept
    assert (stats.open, stats.idle) == (10, 10)
    assert len(stats.origins) == 5000
    one = stats.origins["http://h1.example:80"]  # a lookup is O(1) too
    assert (one.requests, one.reused) == (2, 1)


def test_totals_survive_forgotten_origins() -> None:
    state = make_state(max_idle=0)
    state.max_origins = 3
    for i in range(50):
        request(state, key(i))
    stats = state.statistics()
    assert len(state.origins) <= 3
    assert (stats.requests, stats.connections_opened, stats.evicted) == (50, 50, 50)


def test_origins_view_is_a_mapping() -> None:
    state = make_state()
    request(state, key(1))
    request(state, (b"http", b"::1", 8000))
    view = state.statistics().origins
    assert isinstance(view, OriginsView)
    assert sorted(view) == ["http://[::1]:8000", "http://h1.example:80"]
    assert view["http://[::1]:8000"].idle == 1
    assert "http://h2.example:80" not in view
    assert "no-scheme" not in view
    assert view.get("http://h1.example:notaport") is None
    assert dict(view.items())["http://h1.example:80"].requests == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ConnectTimeout", "connect_timeouts"),
        ("ReadTimeout", "read_timeouts"),
        ("WriteTimeout", "write_timeouts"),
        ("ConnectError", "connect_errors"),
        ("RemoteProtocolError", "protocol_errors"),
        ("LocalProtocolError", "protocol_errors"),
        ("ReadError", "network_errors"),
        ("WriteError", "network_errors"),
        ("PoolTimeout", None),
    ],
)
def test_failure_counter(name: str, expected: str | None) -> None:
    import httpcore

    import hintpool

    assert failure_counter(getattr(hintpool, name)("x")) == expected
    assert failure_counter(getattr(httpcore, name)("x")) == expected
    assert failure_counter(ValueError("x")) is None


# -- eviction -------------------------------------------------------------------


def test_a_cycling_crawl_keeps_a_stable_set_of_connections() -> None:
    """10 origins in turn, 3 idle kept: the old rule (nearest deadline)
    closed the connection needed next and never reused one."""
    state = make_state(max_idle=3)
    for now in range(5):
        for i in range(10):
            request(state, key(i), now + i / 100)
    stats = state.statistics()
    assert stats.reused == 3 * 4  # the same three origins, every later cycle
    assert stats.idle == 3


def test_the_old_rule_reuses_nothing_on_that_crawl() -> None:
    state = make_state(max_idle=3)
    state.eviction = "deadline"
    for now in range(5):
        for i in range(10):
            request(state, key(i), now + i / 100)
    assert state.statistics().reused == 0


def crawl(state: PoolState, queues: list[list[int]]) -> None:
    """Workers, one request in flight each, taking turns: each releases its
    connection and sends its next request."""
    active: list[Any] = [None] * len(queues)
    iters = [iter(q) for q in queues]
    now = 0.0
    while True:
        busy = False
        for w, it in enumerate(iters):
            now += 0.001
            if active[w] is not None:
                state.release(active[w], now, True, [])
                active[w] = None
            i = next(it, None)
            if i is None:
                continue
            busy = True
            origin = state.origin(key(i))
            conn = state.checkout(origin, now, [])
            if not isinstance(conn, PooledConnection):
                conn = PooledConnection(origin, object())
                state.connection_opened(conn)
            conn.lifetime.response_headers(KeepAlive(60.0, None), False)
            active[w] = conn
        if not busy:
            return


def test_a_depth_first_crawl_reuses_connections() -> None:
    """20 workers, each crawling its 10 origins one after another, 20 GETs
    each, 20 idle kept: the finished origins' connections go first. Without
    the ghosts, each new origin's first connection was the newest unproven
    one, closed at once, and so on for its every request (380 reused)."""
    state = make_state(max_connections=100, max_idle=20)
    crawl(state, [[o for o in range(w, 200, 20) for _ in range(20)] for w in range(20)])
    stats = state.statistics()
    assert stats.requests == 4000
    assert stats.reused >= 3600  # 3,800 at best: one connection per origin


def test_a_cycling_crawl_with_workers_keeps_a_stable_set() -> None:
    state = make_state(max_connections=100, max_idle=20)
    urls = [i for _ in range(20) for i in range(200)]
    crawl(state, [urls[w::20] for w in range(20)])
    assert state.statistics().reused >= 360  # the old rule: 0


def test_ghosts_stay_few() -> None:
    state = make_state(max_connections=100, max_idle=2)
    for i in range(1000):
        request(state, key(i))
    assert len(state.ghosts) <= GHOST_SLACK + 1


def test_origins_that_reuse_keep_their_connections() -> None:
    """A busy origin (it reused a connection) is not pushed out by one-off
    origins, however recently those went idle."""
    state = make_state(max_idle=2)
    request(state, key(0), 0.0)
    request(state, key(0), 0.1)  # origin 0 is proven
    for i in range(1, 20):
        closed = request(state, key(i), 0.1 + i)
        assert all(c.origin.key != key(0) for c in closed)
    request(state, key(0), 30.0)
    assert state.origins[key(0)].reused == 2


def test_proven_origins_give_way_nearest_deadline_first() -> None:
    state = make_state(max_idle=2)
    conns = []
    for i in range(3):
        origin = state.origin(key(i))
        origin.reused = 1  # as if it had reused a connection before
        state.checkout(origin, 0.0, [])
        conn = PooledConnection(origin, object())
        state.connection_opened(conn)
        conns.append(conn)
    closed: list[PooledConnection] = []
    for conn, timeout in zip(conns, (30.0, 10.0, 60.0)):
        conn.lifetime.response_headers(KeepAlive(timeout, None), False)
        state.release(conn, 0.0, True, closed)
    assert closed == [conns[1]]


def test_stale_unproven_entries_are_compacted() -> None:
    state = make_state(max_idle=5)
    for n in range(2000):
        request(state, key(n % 3), n / 1000)  # the same three: reused
        request(state, key(10 + n), n / 1000)  # one-offs
    assert len(state.unproven) <= 2 * state.idle_count + 65


def test_one_info_line_when_limit_evictions_dominate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = make_state(max_idle=20)
    with caplog.at_level(logging.INFO, logger="hintpool"):
        for i in range(1000):
            request(state, key(i))
    lines = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 1
    message = lines[0].getMessage()
    assert "max_keepalive_connections=20" in message
    assert "raise max_keepalive_connections" in message


def test_no_info_line_when_connections_are_reused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = make_state(max_idle=20)
    with caplog.at_level(logging.INFO, logger="hintpool"):
        for n in range(2000):
            request(state, key(n % 30))
    assert not [r for r in caplog.records if r.levelno == logging.INFO]


def test_the_info_line_names_max_connections_for_make_way_evictions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = make_state(max_connections=5, max_idle=5)
    with caplog.at_level(logging.INFO, logger="hintpool"):
        for i in range(500):
            request(state, key(i))
    (line,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert "max_connections=5" in line.getMessage()


class Waiter:
    def __init__(self, k: OriginKey) -> None:
        self.key, self.cancelled, self.assigned, self.result = k, False, False, None

    def assign(self, result: Any) -> None:
        self.assigned, self.result = True, result


def test_making_way_for_other_origins_names_max_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """More workers than max_connections, one origin each: every released
    connection is closed for the request at the head of the queue."""
    state = make_state(max_connections=1, max_idle=20)
    conn = PooledConnection(state.origin(key(0)), object())
    state.checkout(conn.origin, 0.0, [])
    state.connection_opened(conn)
    with caplog.at_level(logging.INFO, logger="hintpool"):
        for i in range(1, 300):
            waiter = Waiter(key(i))
            state.waiters.append(waiter)
            closed: list[PooledConnection] = []
            conn.lifetime.response_headers(KeepAlive(60.0, None), False)
            state.release(conn, 0.0, True, closed)
            assert closed == [conn] and waiter.result is not None
            conn = PooledConnection(state.origin(key(i)), object())
            state.connection_opened(conn)
    assert state.statistics().evicted == 299
    (line,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert "max_connections=1: raise max_connections" in line.getMessage()


def test_origin_label_round_trip() -> None:
    state = make_state()
    for k in (key(3), (b"https", b"::1", 443), (b"http", b"127.0.0.1", 1)):
        request(state, k)
        assert state.statistics().origins[origin_label(k)].requests == 1
