"""hintpool._tls: the session cache's rules, with fake sessions and a fake clock."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from hintpool._tls import (
    DEFAULT_TLS_SESSION_CACHE_SIZE,
    DEFAULT_TLS_SESSION_TTL,
    TLSConnectionInfo,
    TLSSessionCache,
    make_session_cache,
)

from .clock import FakeClock

_ids = iter(range(1, 1_000_000))


@dataclass(eq=False)
class FakeSession:
    """The SSLSession attributes the cache reads."""

    time: float = 1_000.0
    timeout: float = 7_200.0
    has_ticket: bool = True
    id: bytes = field(default_factory=lambda: next(_ids).to_bytes(4, "big"))


@dataclass
class FakeSSLObject:
    session: Any
    session_reused: bool = False
    tls_version: str = "TLSv1.3"

    def version(self) -> str:
        return self.tls_version


CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
KEY = (CTX, "example.org", 443, "example.org")


def key(host: str = "example.org", port: int = 443, sni: str | None = None) -> Any:
    return (CTX, host, port, sni or host)


def cache_at(now: float = 1_000.0, **kwargs: Any) -> tuple[TLSSessionCache, FakeClock]:
    clock = FakeClock(now)
    return TLSSessionCache(clock=clock, **kwargs), clock


def connection(
    session: Any,
    offered: Any = None,
    resumed: bool = False,
    version: str = "TLSv1.3",
    k: Any = KEY,
) -> TLSConnectionInfo:
    ssl_object = FakeSSLObject(session, resumed, version)
    return TLSConnectionInfo(k, offered, ssl_object, 0.001)  # type: ignore[arg-type]


# -- keying --------------------------------------------------------------------


def test_get_returns_only_the_exact_key() -> None:
    cache, _ = cache_at()
    session = FakeSession()
    cache.put(key(), session)  # type: ignore[arg-type]
    assert cache.get(key()) is session
    assert cache.get(key(port=8443)) is None
    assert cache.get(key(sni="other.example.org")) is None
    assert cache.get(key(host="other.example.org", sni="example.org")) is None
    # Same settings, another context object: another key.
    twin = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert cache.get((twin, "example.org", 443, "example.org")) is None


# -- expiry ----------------------------------------------------------------------


def test_ttl_expires_entries() -> None:
    cache, clock = cache_at(ttl=60)
    cache.put(KEY, FakeSession(time=1_000))  # type: ignore[arg-type]
    clock.advance(59.9)
    assert cache.get(KEY) is not None
    clock.advance(0.1)
    assert cache.get(KEY) is None
    assert len(cache) == 0


def test_session_lifetime_hint_bounds_the_ttl() -> None:
    cache, clock = cache_at(ttl=7_200)
    # Made 250 s ago with a 300 s lifetime: 50 s left, whatever the TTL.
    cache.put(KEY, FakeSession(time=750, timeout=300))  # type: ignore[arg-type]
    clock.advance(49)
    assert cache.get(KEY) is not None
    clock.advance(1)
    assert cache.get(KEY) is None


def test_an_already_expired_session_is_not_stored() -> None:
    cache, _ = cache_at()
    cache.put(KEY, FakeSession(time=0, timeout=300))  # type: ignore[arg-type]
    assert len(cache) == 0


# -- LRU ---------------------------------------------------------------------------


def test_lru_drops_the_least_recently_used_key() -> None:
    cache, _ = cache_at(maxsize=2)
    a, b, c = FakeSession(), FakeSession(), FakeSession()
    cache.put(key("a"), a)  # type: ignore[arg-type]
    cache.put(key("b"), b)  # type: ignore[arg-type]
    assert cache.get(key("a")) is a  # "a" is now the most recent
    cache.put(key("c"), c)  # type: ignore[arg-type]
    assert cache.get(key("b")) is None
    assert cache.get(key("a")) is a
    assert cache.get(key("c")) is c
    assert len(cache) == 2


def test_one_entry_per_key_the_newest_wins() -> None:
    cache, _ = cache_at()
    old, new = FakeSession(), FakeSession()
    cache.put(KEY, old)  # type: ignore[arg-type]
    cache.put(KEY, new)  # type: ignore[arg-type]
    assert cache.get(KEY) is new
    assert len(cache) == 1


def test_discard_only_removes_the_session_it_names() -> None:
    cache, _ = cache_at()
    old, new = FakeSession(), FakeSession()
    cache.put(KEY, new)  # type: ignore[arg-type]
    cache.discard(KEY, old)  # type: ignore[arg-type]
    assert cache.get(KEY) is new
    cache.discard(KEY, new)  # type: ignore[arg-type]
    assert cache.get(KEY) is None
    cache.discard(KEY, new)  # type: ignore[arg-type] # absent: no error


# -- what a connection may store -----------------------------------------------------


def test_tls13_stores_only_a_session_with_a_ticket() -> None:
    cache, _ = cache_at()
    no_ticket = connection(FakeSession(has_ticket=False))
    cache.response_read(no_ticket)
    assert len(cache) == 0
    assert not no_ticket.stored
    # The ticket arrives with a later response on the same connection.
    no_ticket.ssl_object.session = FakeSession()  # type: ignore[union-attr]
    cache.response_read(no_ticket)
    assert no_ticket.stored
    assert len(cache) == 1


def test_tls12_session_id_sessions_are_stored_without_a_ticket() -> None:
    cache, _ = cache_at()
    session = FakeSession(has_ticket=False)
    cache.response_read(connection(session, version="TLSv1.2"))
    assert cache.get(KEY) is session


def test_tls13_resumed_connection_stores_only_a_new_ticket() -> None:
    cache, _ = cache_at()
    offered = FakeSession()
    cache.put(KEY, offered)  # type: ignore[arg-type]
    # Resumed; the new ticket has not been read yet: the session object
    # still is the offered one (same id).
    same = FakeSession(id=offered.id)
    info = connection(same, offered=offered, resumed=True)
    cache.handshake_done(info)
    cache.response_read(info)
    assert cache.get(KEY) is offered
    assert not info.stored
    fresh = FakeSession()
    info.ssl_object.session = fresh  # type: ignore[union-attr]
    cache.response_read(info)
    assert cache.get(KEY) is fresh


def test_tls12_resumed_connection_refreshes_the_same_session() -> None:
    cache, _ = cache_at()
    offered = FakeSession(has_ticket=False)
    cache.put(KEY, offered)  # type: ignore[arg-type]
    info = connection(offered, offered=offered, resumed=True, version="TLSv1.2")
    cache.handshake_done(info)
    cache.response_read(info)
    assert cache.get(KEY) is offered


def test_refused_resumption_drops_the_entry_at_once() -> None:
    cache, _ = cache_at()
    offered = FakeSession()
    cache.put(KEY, offered)  # type: ignore[arg-type]
    info = connection(FakeSession(has_ticket=False), offered=offered, resumed=False)
    cache.handshake_done(info)
    assert cache.get(KEY) is None  # the request may still fail: no retry of it
    new = FakeSession()
    info.ssl_object.session = new  # type: ignore[union-attr]
    cache.response_read(info)
    assert cache.get(KEY) is new


def test_refusal_does_not_drop_a_newer_entry() -> None:
    cache, _ = cache_at()
    offered, newer = FakeSession(), FakeSession()
    cache.put(KEY, offered)  # type: ignore[arg-type]
    info = connection(FakeSession(), offered=offered, resumed=False)
    cache.put(KEY, newer)  # type: ignore[arg-type] # another connection stored meanwhile
    cache.handshake_done(info)
    assert cache.get(KEY) is newer


def test_nothing_is_stored_before_a_response_was_read() -> None:
    cache, _ = cache_at()
    info = connection(FakeSession())
    cache.handshake_done(info)
    assert len(cache) == 0


def test_no_session_at_all_is_not_stored() -> None:
    cache, _ = cache_at()
    cache.response_read(connection(None, version="TLSv1.2"))
    assert len(cache) == 0


# -- settings ---------------------------------------------------------------------


def test_make_session_cache_settings() -> None:
    default = make_session_cache(True)
    assert default is not None
    assert default.maxsize == DEFAULT_TLS_SESSION_CACHE_SIZE
    assert default.ttl == DEFAULT_TLS_SESSION_TTL
    sized = make_session_cache(5, ttl=60)
    assert sized is not None
    assert (sized.maxsize, sized.ttl) == (5, 60)
    assert make_session_cache(False) is None
    assert make_session_cache(0) is None
    for bad in (-1, 1.5, "yes", None):
        with pytest.raises(ValueError):
            make_session_cache(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TLSSessionCache(ttl=0)
    with pytest.raises(ValueError):
        TLSSessionCache(maxsize=0)


def test_repr() -> None:
    cache, _ = cache_at(maxsize=10, ttl=60)
    assert repr(cache) == "<TLSSessionCache 0/10 ttl=60s>"
    info = connection(FakeSession(), resumed=True)
    assert repr(info) == "<TLSConnectionInfo example.org:443 resumed>"


# -- threads -------------------------------------------------------------------------


def test_concurrent_use_keeps_the_bounds() -> None:
    cache, _ = cache_at(maxsize=50)
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        try:
            for i in range(2_000):
                k = key(f"h{(n * 7 + i) % 120}")
                session = FakeSession()
                cache.put(k, session)  # type: ignore[arg-type]
                cache.get(k)
                cache.discard(k, session)  # type: ignore[arg-type]
                cache.put(k, session)  # type: ignore[arg-type]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache) == 50
