"""The process-wide caches keep no credentials, and nothing once every
pool is closed.

Request heads and response heads seen before are remembered process-wide
(``_h1_request._REQUESTS``, ``_h1_response.KNOWN_HEADS``), and so are URLs
(``_requests._URL_CACHE``), shared by every pool. A head carrying
``Authorization``, ``Proxy-Authorization`` or ``Cookie``, a response
setting a cookie, or a URL with user info is still sent and parsed exactly,
but never kept: nothing of it is found in any cache afterwards. Anything
else is kept until the last pool is closed (``hintpool._shared_caches``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hintpool
from hintpool import _h1_request
from hintpool._h1 import H1Codec
from hintpool._h1_response import KNOWN_HEADS, KNOWN_HEADS_SIZE
from hintpool._requests import _URL_CACHE

from .scripted_server import ScriptedServer
from .server import TestServer

SECRET = b"Zq7secretVALUEx9"
HOST = (b"Host", b"example.com")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SETS_COOKIE = (
    b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=" + SECRET + b"; HttpOnly\r\n"
    b"Content-Length: 2\r\n\r\nok"
)
CREDENTIALS = [
    (b"Authorization", b"Bearer " + SECRET),
    (b"authorization", b"Basic " + SECRET),
    (b"PROXY-AUTHORIZATION", b"Basic " + SECRET),
    (b"Proxy-Authorization", b"Basic " + SECRET),
    (b"Cookie", b"sid=" + SECRET),
    (b"cOOkie", b"sid=" + SECRET),
]


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    for cache in (_h1_request._REQUESTS, KNOWN_HEADS, _URL_CACHE):
        cache.clear()
    yield
    for cache in (_h1_request._REQUESTS, KNOWN_HEADS, _URL_CACHE):
        cache.clear()


def cached() -> str:
    """Everything the caches hold, keys and values, as text to search."""
    return repr(_h1_request._REQUESTS) + repr(KNOWN_HEADS) + repr(_URL_CACHE)


def all_empty() -> bool:
    return not (_h1_request._REQUESTS or KNOWN_HEADS or _URL_CACHE)


def exchange(
    codec: H1Codec, headers: list[tuple[bytes, bytes]], response: bytes = OK
) -> bytes:
    head = codec.start_request(b"GET", b"/", headers)
    codec.feed(response)
    assert codec.complete and codec.body == [b"ok"]
    codec.next_cycle()
    return head


@pytest.mark.parametrize("credential", CREDENTIALS, ids=lambda c: c[0].decode())
def test_a_head_with_credentials_is_sent_but_not_kept(
    credential: tuple[bytes, bytes],
) -> None:
    codec = H1Codec()
    headers = [HOST, credential, (b"Accept", b"*/*")]
    expected = (
        b"GET / HTTP/1.1\r\nHost: example.com\r\n%s: %s\r\nAccept: */*\r\n\r\n"
        % credential
    )
    for _ in range(3):  # the same request again: built anew each time
        assert exchange(codec, headers) == expected
    assert SECRET.decode() not in cached()
    assert _h1_request._REQUESTS == {}
    assert len(KNOWN_HEADS) == 1  # the response head, which holds no secret


def test_a_name_merely_like_a_credential_is_still_kept() -> None:
    codec = H1Codec()
    for name in (b"X-Authorization", b"Cookies", b"Authorization-Hint"):
        exchange(codec, [HOST, (name, b"v")])
    assert len(_h1_request._REQUESTS) == 3


def test_a_plain_request_head_is_kept_and_reused() -> None:
    codec = H1Codec()
    first = exchange(codec, [HOST, (b"Accept", b"*/*")])
    assert len(_h1_request._REQUESTS) == 1
    (remembered,) = _h1_request._REQUESTS.values()
    again = exchange(codec, [HOST, (b"Accept", b"*/*")])
    assert again == first and again is remembered[0]


def test_framing_still_holds_beside_credentials() -> None:
    codec = H1Codec()
    headers = [HOST, (b"Cookie", SECRET), (b"Content-Length", b"3")]
    codec.start_request(b"POST", b"/", headers)
    assert codec.body_chunk(b"abc") == b"abc"
    assert codec.end_request() == b""
    codec.feed(OK)
    assert codec.complete and codec.reusable()
    assert SECRET.decode() not in cached()


def test_a_response_that_sets_a_cookie_is_parsed_but_not_kept() -> None:
    codec = H1Codec()
    for _ in range(3):  # a head kept would be taken from the cache here
        codec.start_request(b"GET", b"/", [HOST])
        codec.feed(SETS_COOKIE)
        head = codec.head
        assert head is not None and codec.complete and codec.body == [b"ok"]
        assert head.headers == [
            (b"Set-Cookie", b"sid=" + SECRET + b"; HttpOnly"),
            (b"Content-Length", b"2"),
        ]
        assert codec.reusable()
        codec.next_cycle()
    assert KNOWN_HEADS == {}
    assert SECRET.decode() not in cached()


def test_a_lowercase_set_cookie_is_not_kept_either() -> None:
    codec = H1Codec()
    exchange(codec, [HOST], SETS_COOKIE.replace(b"Set-Cookie", b"set-cookie"))
    assert KNOWN_HEADS == {}


def test_the_caches_stay_bounded() -> None:
    codec = H1Codec()
    for i in range(_h1_request._CACHE_LIMIT + 10):
        codec.start_request(b"GET", b"/%d" % i, [HOST])
        # A fresh codec per response: one connection stops remembering
        # after a few heads in a row that never repeat.
        fresh = H1Codec()
        fresh.start_request(b"GET", b"/", [HOST])
        fresh.feed(OK.replace(b"OK", b"OK %d" % i))
        assert fresh.complete
        codec.feed(OK)
        codec.next_cycle()
        assert len(_h1_request._REQUESTS) <= _h1_request._CACHE_LIMIT
        assert len(KNOWN_HEADS) <= KNOWN_HEADS_SIZE
    assert _h1_request._REQUESTS and KNOWN_HEADS


def test_through_a_pool_nothing_secret_stays_cached() -> None:
    """End to end on the sync pool's own connection: the server gets the
    credentials and the client the cookie, and neither is cached."""
    with ScriptedServer([SETS_COOKIE, SETS_COOKIE, OK], after="hold") as srv:
        url = f"http://127.0.0.1:{srv.port}/"
        cookies = []
        with hintpool.ConnectionPool() as pool:
            for name in ("Authorization", "Cookie", "Proxy-Authorization"):
                headers = {name: SECRET.decode(), "Accept": "*/*"}
                response = pool.request("GET", url, headers=headers)
                assert response.status == 200 and response.content == b"ok"
                cookies.append(dict(response.headers).get(b"Set-Cookie"))
            # hintpool's own connection: its codec kept the plain response.
            assert list(KNOWN_HEADS) == [OK[:-2]]
        assert cookies == [b"sid=" + SECRET + b"; HttpOnly"] * 2 + [None]
        assert len(srv.requests) == 3
        assert all(SECRET in request for request in srv.requests)
    assert SECRET.decode() not in cached()


def fetch(pool: hintpool.ConnectionPool, url: str, **headers: str) -> None:
    assert pool.request("GET", url, headers=headers).status == 200
    # The local server's heads are not all kept (its body is a write of its
    # own): a response head known, to see both caches emptied.
    exchange(H1Codec(), [HOST])


def test_the_caches_are_emptied_when_the_last_pool_is_closed(
    server: TestServer,
) -> None:
    """A secret the codec cannot recognise (here in X-Api-Key) stays in the
    caches only while a pool that could have sent it is open."""
    url = server.url + "/"
    first = hintpool.ConnectionPool()
    second = hintpool.ConnectionPool()
    unused = hintpool.ConnectionPool()
    fetch(first, url, **{"X-Api-Key": SECRET.decode()})
    fetch(second, url)
    assert SECRET.decode() in cached() and KNOWN_HEADS
    unused.close()
    first.close()
    assert SECRET.decode() in cached(), "second pool still open: kept warm"
    second.close()
    assert all_empty()
    # A closed pool stays usable, and holds the caches again.
    fetch(second, url)
    assert _h1_request._REQUESTS and KNOWN_HEADS
    second.close()
    assert all_empty()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_async_pool_empties_the_caches_on_close(
    anyio_backend: str, server: TestServer
) -> None:
    async with hintpool.AsyncConnectionPool() as pool:
        response = await pool.request("GET", server.url + "/")
        assert response.status == 200
        exchange(H1Codec(), [HOST])
        assert _h1_request._REQUESTS and KNOWN_HEADS
    assert all_empty()


def test_a_pool_on_httpcore_connections_holds_the_caches_too(
    server: TestServer,
) -> None:
    """It fills the URL cache, and perhaps the heads through another pool."""
    url = server.url + "/"
    with hintpool.ConnectionPool(wire="httpcore") as other:
        fetch(other, url + "?other")
        with hintpool.ConnectionPool() as pool:
            fetch(pool, url)
        assert _h1_request._REQUESTS and KNOWN_HEADS and _URL_CACHE
    assert all_empty()


def test_a_url_with_user_info_is_not_kept(server: TestServer) -> None:
    url = server.url.replace("://", f"://user:{SECRET.decode()}@") + "/"
    with hintpool.ConnectionPool() as pool:
        for _ in range(2):
            assert pool.request("GET", url).status == 200
        assert SECRET.decode() not in cached()
        assert pool.request("GET", server.url + "/").status == 200
        assert list(_URL_CACHE) == [server.url + "/"]
