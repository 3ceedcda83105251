"""Security properties: nothing crosses origins, nothing is sent twice.

* A request's headers and credentials only ever reach its own origin: the
  pool never puts a request on a connection opened for another origin --
  not another host name of the same server, not another port, not when the
  pool must evict one origin's idle connection to serve another. (Redirects,
  and the headers they carry, are httpx's business.)
* The one stale-connection retry never re-sends a request that is not
  idempotent and has no ``Idempotency-Key``: the server counts what it got,
  including a request it processed before dropping the connection.
* TLS sessions are only offered to the exact (context, host, port, SNI) key
  they were stored under (a Hypothesis model of the cache; the end-to-end
  checks with real handshakes are in ``tests/_async/test_tls.py``).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hintpool
from hintpool._tls import TLSSessionCache

from .clock import FakeClock
from .fixtures_server import ServerFactory
from .server import TestServer

SECRETS = {
    "Authorization": "Bearer origin-a-secret",
    "Cookie": "session=origin-a-cookie",
    "X-Api-Key": "origin-a-key",
}


def sent_headers(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in json.loads(response.content)}


@pytest.fixture
def same_server_two_names() -> Iterator[TestServer]:
    """One server reachable as 127.0.0.1 and as localhost: two origins."""
    with TestServer(host="127.0.0.1", extra_hosts=["localhost"]) as srv:
        yield srv


@pytest.mark.parametrize("max_connections", [1, 10])
def test_credentials_never_reach_another_origin(
    server_factory: ServerFactory, max_connections: int
) -> None:
    a = server_factory(host="127.0.0.1", keep_alive="timeout=30")
    b = server_factory(host="127.0.0.2", keep_alive="timeout=30")
    c = server_factory(host="127.0.0.1", keep_alive="timeout=30")  # other port
    transport = hintpool.HTTPTransport(
        limits=httpx.Limits(max_connections=max_connections)
    )
    with httpx.Client(transport=transport) as client:
        for _ in range(5):
            r = client.get(a.url + "/headers", headers=SECRETS)
            assert sent_headers(r)["authorization"] == SECRETS["Authorization"]
            for other in (b, c):
                seen = sent_headers(client.get(other.url + "/headers"))
                assert not {"authorization", "cookie", "x-api-key"} & set(seen)
                assert seen["host"] == other.url.split("//")[1]
        stats = transport.statistics()
    # Every request reached the server its URL named, on its own connections.
    assert (a.requests_served, b.requests_served, c.requests_served) == (5, 5, 5)
    if max_connections == 10:
        assert stats.reused == 12  # each origin: 1 connection, 4 reuses
    else:
        assert stats.evicted == 14  # one slot: each switch evicts the other


def test_two_names_of_one_server_never_share_a_connection(
    same_server_two_names: TestServer,
) -> None:
    srv = same_server_two_names
    urls = {
        "127.0.0.1": f"http://127.0.0.1:{srv.port}",
        "localhost": f"http://localhost:{srv.port}",
    }
    connections: dict[str, set[bytes]] = {name: set() for name in urls}
    transport = hintpool.HTTPTransport()
    with httpx.Client(transport=transport) as client:
        for _ in range(4):
            for name, url in urls.items():
                r = client.get(url + "/conn", headers={"X-Origin": name})
                connections[name].add(r.content)
    assert connections["127.0.0.1"].isdisjoint(connections["localhost"])
    assert all(len(conns) == 1 for conns in connections.values())  # reused


# -- the stale retry never sends a POST twice ------------------------------------


def race_transport(**kwargs: object) -> hintpool.HTTPTransport:
    transport = hintpool.HTTPTransport(**kwargs)  # type: ignore[arg-type]
    # As if the server's FIN had not arrived yet: the keep-alive race.
    transport.pool._state.server_closed = lambda conn: False
    return transport


@pytest.mark.parametrize(
    ("method", "headers", "times_sent"),
    [
        ("GET", {}, 2),
        ("PUT", {}, 2),
        ("DELETE", {}, 2),
        ("POST", {}, 1),
        ("PATCH", {}, 1),
        ("LOCK", {}, 1),  # unknown methods are not idempotent
        ("POST", {"Idempotency-Key": "8e03978e"}, 2),
        ("PATCH", {"idempotency-key": "k"}, 2),
    ],
)
def test_request_processed_then_dropped_is_resent_only_if_idempotent(
    server: TestServer, method: str, headers: dict[str, str], times_sent: int
) -> None:
    # The server reads (and counts) the request on a reused connection, then
    # drops the connection without a response: it may have done the work.
    transport = race_transport()
    with httpx.Client(transport=transport) as client:
        assert client.get(server.url + "/").status_code == 200
        server.reset_counts()
        with pytest.raises(httpx.RemoteProtocolError):
            client.request(
                method, server.url + "/fault/close-no-response", headers=headers
            )
        stats = transport.statistics()
    assert server.requests_served == times_sent
    # At most once more, and on a new connection.
    assert stats.retries == times_sent - 1
    assert server.connections_opened == times_sent - 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_request_on_a_stale_connection_is_sent_once(
    server_factory: ServerFactory, method: str
) -> None:
    srv = server_factory(max_requests=1, close_on_last=False)
    transport = race_transport()
    with httpx.Client(transport=transport) as client:
        client.get(srv.url + "/")
        srv.wait_closed(1)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.request(method, srv.url + "/echo", content=b"charge the card")
        assert transport.statistics().retries == 0
    # Only the first GET was served; the POST reached a closed connection.
    assert srv.requests_served == 1


# -- TLS sessions never cross keys -------------------------------------------------


class FakeSession:
    def __init__(self, n: int) -> None:
        self.n = n
        self.time = 1_000
        self.timeout = 7_200


_contexts = [ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) for _ in range(2)]
_keys = st.tuples(
    st.sampled_from(_contexts),
    st.sampled_from(["example.org", "EXAMPLE.org", "127.0.0.1", "other.test"]),
    st.sampled_from([443, 8443]),
    st.sampled_from(["example.org", "other.test", "127.0.0.1"]),
)
_ops = st.lists(
    st.tuples(st.sampled_from(["put", "get", "discard", "tick"]), _keys),
    max_size=60,
)


@given(ops=_ops, maxsize=st.integers(1, 4))
def test_a_session_is_only_offered_to_its_own_key(
    ops: list[tuple[str, tuple[ssl.SSLContext, str, int, str]]], maxsize: int
) -> None:
    clock = FakeClock(1_000.0)
    cache = TLSSessionCache(maxsize=maxsize, ttl=100, clock=clock)
    stored: dict[int, tuple[ssl.SSLContext, str, int, str]] = {}
    for i, (op, key) in enumerate(ops):
        if op == "put":
            session = FakeSession(i)
            cache.put(key, session)  # type: ignore[arg-type]
            stored[i] = key
        elif op == "get":
            got = cache.get(key)
            if got is not None:
                # Offered only under the exact key it was stored with.
                assert stored[got.n] == key  # type: ignore[attr-defined]
        elif op == "discard":
            got = cache.get(key)
            if got is not None:
                cache.discard(key, got)
                assert cache.get(key) is None
        else:
            clock.advance(40)
        assert len(cache) <= maxsize
