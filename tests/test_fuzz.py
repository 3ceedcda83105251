"""Fuzzing the header handling beyond ``tests/test_hints.py``.

``test_hints.py`` checks that ``parse_keep_alive`` never raises on arbitrary
text/bytes and round-trips generated valid headers. Here:

* a differential oracle: an independent, slow restatement of the documented
  rules, compared with the parser on header-like text (any case, quoting,
  separators, duplicates, junk numbers);
* ``response_keep_alive`` over arbitrary raw header lists (several
  ``Keep-Alive`` and ``Connection`` headers, odd names, huge values);
* the memo cache: interleaved and repeated inputs always give what an
  uncached parse gives;
* hostile sizes: thousands of parameters, megabyte values;
* through the real pool: arbitrary header values h11 accepts end up as the
  origin's ``last_hint`` and an idle window within the policy's bounds --
  never an exception, never a negative or unbounded deadline.

``scripts/fuzz_hints.py`` runs the same properties for ≥ 1M inputs.
"""

from __future__ import annotations

import math
import re

import anyio
import httpcore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hintpool import AsyncConnectionPool, KeepAlive, parse_keep_alive
from hintpool._hints import connection_tokens, response_keep_alive

from .clock import FakeClock

_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_INTEGER = re.compile(r"[0-9]+\Z")


def oracle(text: str) -> KeepAlive | None:
    """The documented rules, restated as plainly as possible."""
    timeout = max_ = None
    for param in re.split("[,;]", text):
        if "=" not in param:
            continue
        name, value = param.split("=", 1)
        name = name.strip(" \t").lower()
        value = value.strip(" \t")
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1].strip(" \t")
        if len(value) > 32:
            continue
        if name == "timeout" and _DECIMAL.match(value):
            timeout = float(value)
        elif name == "max" and _INTEGER.match(value):
            max_ = int(value)
    if timeout is None and max_ is None:
        return None
    return KeepAlive(timeout, max_)


def check_value(hint: KeepAlive | None) -> None:
    if hint is None:
        return
    assert hint.timeout is not None or hint.max is not None
    if hint.timeout is not None:
        assert type(hint.timeout) is float
        assert math.isfinite(hint.timeout) and hint.timeout >= 0
    if hint.max is not None:
        assert type(hint.max) is int and hint.max >= 0


# Header-like text: the parser's own vocabulary plus its traps.
_words = st.sampled_from(
    [
        "timeout",
        "TimeOut",
        "max",
        "MAX",
        "maximum",
        "x-timeout",
        "=",
        "==",
        ",",
        ";",
        '"',
        " ",
        "\t",
        "0",
        "5",
        "007",
        ".",
        "5.",
        ".5",
        "1e3",
        "-1",
        "+5",
        "inf",
        "nan",
        "5_0",
        "0x10",
        "\u0665",
        "\uff15",
        "\u00a0",
        "9" * 32,
        "9" * 33,
    ]
)
header_like = st.lists(_words, max_size=30).map("".join)


@given(header_like)
def test_parser_agrees_with_the_oracle(text: str) -> None:
    expected = oracle(text)
    assert parse_keep_alive(text) == expected
    check_value(expected)


@given(st.text(alphabet=st.characters(codec="latin-1")))
def test_bytes_and_latin1_text_agree(text: str) -> None:
    raw = text.encode("latin-1")
    assert parse_keep_alive(raw) == parse_keep_alive(text) == oracle(text)
    assert parse_keep_alive(bytearray(raw)) == parse_keep_alive(text)


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=600))
def test_memo_cache_never_changes_an_answer(values: list[bytes]) -> None:
    # Enough distinct values to clear the cache (256 entries) mid-way.
    for value in values + values[::-1]:
        assert parse_keep_alive(value) == parse_keep_alive(value.decode("latin-1"))


_names = st.sampled_from(
    [b"Keep-Alive", b"keep-alive", b"KEEP-ALIVE", b"Connection", b"connection"]
) | st.binary(max_size=12)
_values = header_like.map(lambda s: s.encode("utf-8")) | st.binary(max_size=64)


@given(st.lists(st.tuples(_names, _values), max_size=12))
def test_response_keep_alive_over_arbitrary_header_lists(
    headers: list[tuple[bytes, bytes]],
) -> None:
    hint, close = response_keep_alive(headers)
    check_value(hint)
    joined = b", ".join(v for n, v in headers if n.lower() == b"keep-alive")
    keep_alive = [n for n, _ in headers if n.lower() == b"keep-alive"]
    assert hint == (parse_keep_alive(joined) if keep_alive else None)
    assert close == any(
        n.lower() == b"connection" and "close" in connection_tokens(v)
        for n, v in headers
    )


def test_thousands_of_parameters_last_valid_wins() -> None:
    params = [f"timeout={i}, max={i}, junk{i}=x" for i in range(5_000)]
    params.append("timeout=oops, max=-1")
    assert parse_keep_alive(", ".join(params)) == KeepAlive(4999.0, 4999)


def test_megabyte_values_are_ignored_not_converted() -> None:
    huge = "9" * 1_000_000
    assert parse_keep_alive(f"timeout={huge}, max={huge}") is None
    assert parse_keep_alive(f"timeout=5, max={huge}".encode()) == KeepAlive(5.0)
    assert parse_keep_alive("," * 1_000_000) is None
    assert parse_keep_alive("timeout=" + "=" * 100_000) is None


# -- through the real pool -----------------------------------------------------

# What h11 accepts as a header value: visible ASCII, obs-text, inner spaces.
_field_value = (
    st.binary(min_size=1, max_size=80)
    .map(
        lambda b: bytes(
            c for c in b if c == 0x20 or c == 0x09 or (c > 0x20 and c != 0x7F)
        )
    )
    .map(lambda b: b.strip(b" \t"))
    .filter(bool)
)
_hint_values = (
    header_like.map(lambda s: s.encode("utf-8").strip(b" \t")).filter(bool)
    | _field_value
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(_hint_values, min_size=1, max_size=3),
    margin=st.sampled_from([0.0, 1.0, 2.5]),
    expiry=st.sampled_from([None, 0.0, 5.0]),
)
def test_any_hint_through_the_pool_gives_a_bounded_deadline(
    values: list[bytes], margin: float, expiry: float | None
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
    head += b"".join(b"Keep-Alive: " + v + b"\r\n" for v in values)
    clock = FakeClock()
    pool = AsyncConnectionPool(
        network_backend=httpcore.AsyncMockBackend([head + b"\r\nok"]),
        clock=clock,
        keepalive_margin=margin,
        keepalive_expiry=expiry,
        max_keepalive_timeout=600.0,
    )

    async def one_request() -> None:
        response = await pool.request("GET", "http://fuzz.test/")
        assert response.content == b"ok"

    anyio.run(one_request)
    stats = pool.statistics()
    expected = parse_keep_alive(b", ".join(values))
    assert stats.origins["http://fuzz.test:80"].last_hint == expected
    (origin,) = pool._state.origins.values()
    for conn in origin.idle:
        window = conn.lifetime.idle_deadline - clock.now
        assert window > 0
        if expected is not None and expected.timeout is not None:
            assert window <= max(0.0, 600.0 - margin)
        elif expiry is not None:
            assert window == expiry
    if expected is not None and expected.max == 0:
        assert stats.idle == 0 and stats.retired_by_max == 1
    anyio.run(pool.aclose)
