from __future__ import annotations

import logging
import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hintpool._hints import (
    KeepAlive,
    connection_tokens,
    parse_keep_alive,
    response_keep_alive,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # What real servers send.
        ("timeout=5, max=100", KeepAlive(5.0, 100)),  # Apache
        ("timeout=5", KeepAlive(5.0, None)),  # Node.js
        ("max=3, timeout=2", KeepAlive(2.0, 3)),
        ("max=100", KeepAlive(None, 100)),
        # Case and whitespace.
        ("TIMEOUT=5", KeepAlive(5.0, None)),
        ("Timeout=5, Max=7", KeepAlive(5.0, 7)),
        ("timeout = 5 ,  max = 3", KeepAlive(5.0, 3)),
        ("\ttimeout=5,\tmax=3\t", KeepAlive(5.0, 3)),
        ("  timeout=5  ", KeepAlive(5.0, None)),
        # Quoting.
        ('timeout="5"', KeepAlive(5.0, None)),
        ('timeout="5", max="10"', KeepAlive(5.0, 10)),
        ('timeout = " 5 "', KeepAlive(5.0, None)),
        ('timeout="5', None),
        ('timeout=""', None),
        # Semicolons and mixed separators.
        ("timeout=5; max=100", KeepAlive(5.0, 100)),
        ("timeout=5;max=100,", KeepAlive(5.0, 100)),
        (",timeout=5,,;max=1;", KeepAlive(5.0, 1)),
        # Unknown parameters and parameters without "=".
        ("foo=bar, timeout=5, baz", KeepAlive(5.0, None)),
        ("timeout, max", None),
        ("timeout=5, max", KeepAlive(5.0, None)),
        ("timeouts=5, maximum=3, x-max=1", None),
        ("foo=bar", None),
        # Duplicates: the last valid one wins.
        ("timeout=5, timeout=7", KeepAlive(7.0, None)),
        ("timeout=5, timeout=abc", KeepAlive(5.0, None)),
        ("timeout=5, timeout=-1", KeepAlive(5.0, None)),
        ("max=3, max=4, max=", KeepAlive(None, 4)),
        ("max=3, max=1.5", KeepAlive(None, 3)),
        # Numbers.
        ("timeout=0.5", KeepAlive(0.5, None)),
        ("timeout=5.0", KeepAlive(5.0, None)),
        ("timeout=5.", KeepAlive(5.0, None)),
        ("timeout=.5", KeepAlive(0.5, None)),
        ("timeout=007", KeepAlive(7.0, None)),
        ("timeout=0", KeepAlive(0.0, None)),
        ("max=0", KeepAlive(None, 0)),
        ("timeout=0, max=0", KeepAlive(0.0, 0)),
        ("timeout=.", None),
        ("timeout=1.2.3", None),
        ("timeout=-1", None),
        ("timeout=-0", None),
        ("max=-1", None),
        ("max=1.5", None),
        ("max=1.0", None),
        ("timeout=1e3", None),
        ("timeout=1E3", None),
        ("max=1e3", None),
        ("timeout=inf", None),
        ("timeout=Infinity", None),
        ("timeout=nan", None),
        ("max=NaN", None),
        ("timeout=+5", None),
        ("max=+5", None),
        ("timeout=5_0", None),
        ("max=1_000", None),
        ("timeout=5 0", None),
        ("timeout=0x10", None),
        ("timeout=5s", None),
        ("timeout=\u0665", None),  # ARABIC-INDIC DIGIT FIVE
        ("max=\u0665", None),
        ("timeout=\uff15", None),  # FULLWIDTH DIGIT FIVE
        ("timeout=\u00b2", None),  # SUPERSCRIPT TWO
        ("timeout=\u00a05", None),  # NO-BREAK SPACE is not HTTP whitespace
        # Huge values are returned as they are; over-long ones are ignored.
        ("timeout=99999999999", KeepAlive(99999999999.0, None)),
        ("max=99999999999", KeepAlive(None, 99999999999)),
        ("max=" + "9" * 32, KeepAlive(None, int("9" * 32))),
        ("max=" + "9" * 33, None),
        ("timeout=" + "1" * 40, None),
        ("max=" + "1" * 40, None),
        ("timeout=" + "1" * 40 + ", max=2", KeepAlive(None, 2)),
        ("max=" + "0" * 5000 + "1", None),
        # Junk.
        ("", None),
        ("   ", None),
        (",", None),
        (",,,", None),
        (";;;", None),
        ("=", None),
        ("==,=", None),
        ("timeout==5", None),
        ("close", None),
        ("\x00\xff", None),
    ],
)
def test_parse_keep_alive(value: str, expected: KeepAlive | None) -> None:
    assert parse_keep_alive(value) == expected
    # The bytes form (latin-1), both uncached and then cached, agrees.
    raw = value.encode("latin-1", errors="replace")
    if raw.decode("latin-1") == value:
        assert parse_keep_alive(raw) == expected
        assert parse_keep_alive(raw) == expected


def test_timeout_is_float_and_max_is_int() -> None:
    hint = parse_keep_alive("timeout=5, max=100")
    assert hint is not None
    assert type(hint.timeout) is float
    assert type(hint.max) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"timeout=5, max=100", KeepAlive(5.0, 100)),
        (b"Timeout=5;Max=100", KeepAlive(5.0, 100)),
        (b"", None),
        (b"\xff\xfe", None),
        (b"\xe9=1, timeout=2", KeepAlive(2.0, None)),
        (b"timeout=5, foo=\xe9\xa0\x85", KeepAlive(5.0, None)),
        (b"timeout=\xa05", None),  # latin-1 NO-BREAK SPACE
        (b"timeout=\x855", None),  # latin-1 NEXT LINE
        (b"max=\xd9\xa5", None),  # UTF-8 ARABIC-INDIC DIGIT FIVE
        (b"timeout=5\x00", None),
        (b"timeout=" + b"9" * 300, None),  # too long to be cached, too
    ],
)
def test_parse_keep_alive_bytes(value: bytes, expected: KeepAlive | None) -> None:
    assert parse_keep_alive(value) == expected
    assert parse_keep_alive(value) == expected  # from the memo cache


def test_parse_keep_alive_bytearray() -> None:
    assert parse_keep_alive(bytearray(b"timeout=5")) == KeepAlive(5.0, None)  # type: ignore[arg-type]


def test_memo_cache_stays_bounded() -> None:
    from hintpool import _hints

    for i in range(1000):
        assert parse_keep_alive(b"timeout=%d" % i) == KeepAlive(float(i), None)
    assert len(_hints._cache) <= _hints._CACHE_SIZE
    assert parse_keep_alive(b"timeout=7") == KeepAlive(7.0, None)


def test_keep_alive_value_object() -> None:
    hint = KeepAlive(timeout=5.0, max=100)
    assert hint == KeepAlive(5.0, 100)
    assert hint != KeepAlive(5.0, 99)
    assert hint != (5.0, 100)
    assert hash(hint) == hash(KeepAlive(5.0, 100))
    assert len({hint, KeepAlive(5.0, 100)}) == 1
    assert repr(hint) == "KeepAlive(timeout=5.0, max=100)"
    assert KeepAlive() == KeepAlive(None, None)
    assert pickle.loads(pickle.dumps(hint)) == hint
    assert not hasattr(hint, "__dict__")
    with pytest.raises(AttributeError):
        hint.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del hint.max
    with pytest.raises(AttributeError):
        hint.other = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        hint._timeout = 1.0
    assert hint == KeepAlive(5.0, 100)
    assert KeepAlive.__match_args__ == ("timeout", "max")


def _check_result(result: KeepAlive | None) -> None:
    assert result is None or isinstance(result, KeepAlive)
    if result is None:
        return
    assert result.timeout is not None or result.max is not None
    if result.timeout is not None:
        assert type(result.timeout) is float
        assert math.isfinite(result.timeout)
        assert result.timeout >= 0
    if result.max is not None:
        assert type(result.max) is int
        assert result.max >= 0


@given(st.text())
def test_arbitrary_text_never_raises(value: str) -> None:
    _check_result(parse_keep_alive(value))


@given(st.text(alphabet='timeoutmaxTIMEOUTMAX=,;" \t0123456789.-+_eEnif\u0665'))
def test_header_like_text_never_raises(value: str) -> None:
    _check_result(parse_keep_alive(value))


@given(st.binary())
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    _check_result(parse_keep_alive(value))
    for token in connection_tokens(value):
        assert token
        assert token == token.lower() == token.strip(" \t")
        assert "," not in token


_spaces = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def _random_case(draw: st.DrawFn, name: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if f else c for c, f in zip(name, flips))


@st.composite
def _param(draw: st.DrawFn, name: str, value: str) -> str:
    if draw(st.booleans()):
        value = f'"{value}"'
    return (
        draw(_spaces)
        + draw(_random_case(name))
        + draw(_spaces)
        + "="
        + draw(_spaces)
        + value
        + draw(_spaces)
    )


_extra_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True).filter(
    lambda n: n not in ("timeout", "max")
)
_extra_values = st.from_regex(r"[A-Za-z0-9./-]{0,10}", fullmatch=True)


@st.composite
def _header(draw: st.DrawFn) -> tuple[str, KeepAlive]:
    whole = draw(st.integers(min_value=0, max_value=10**9))
    frac = draw(st.one_of(st.none(), st.from_regex(r"[0-9]{1,6}", fullmatch=True)))
    timeout_text = str(whole) if frac is None else f"{whole}.{frac}"
    max_value = draw(st.integers(min_value=0, max_value=10**12))
    include = draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    params: list[str] = []
    if include[0]:
        params.append(draw(_param("timeout", timeout_text)))
    if include[1]:
        params.append(draw(_param("max", str(max_value))))
    for name, value in draw(st.lists(st.tuples(_extra_names, _extra_values))):
        params.append(draw(_param(name, value)))
    params.extend(draw(st.lists(_extra_names, max_size=3)))  # valueless
    params = draw(st.permutations(params))
    header = ""
    for i, param in enumerate(params):
        if i:
            header += draw(st.sampled_from([",", ";"]))
        header += param
    expected = KeepAlive(
        float(timeout_text) if include[0] else None,
        max_value if include[1] else None,
    )
    return header, expected


@given(_header())
def test_generated_valid_header_round_trips(case: tuple[str, KeepAlive]) -> None:
    header, expected = case
    assert parse_keep_alive(header) == expected
    assert parse_keep_alive(header.encode("latin-1")) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Keep-Alive, Upgrade", {"keep-alive", "upgrade"}),
        (b"Keep-Alive, Upgrade", {"keep-alive", "upgrade"}),
        ("close", {"close"}),
        (" CLOSE ,", {"close"}),
        ("", set()),
        (",,", set()),
        ("\tupgrade,\tTE", {"upgrade", "te"}),
        (b"x-\xe9", {"x-\xe9"}),
    ],
)
def test_connection_tokens(value: str | bytes, expected: set[str]) -> None:
    tokens = connection_tokens(value)
    assert isinstance(tokens, frozenset)
    assert tokens == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], (None, False)),
        ([(b"content-length", b"0")], (None, False)),
        ([(b"Keep-Alive", b"timeout=5, max=100")], (KeepAlive(5.0, 100), False)),
        ([(b"keep-alive", b"timeout=5")], (KeepAlive(5.0, None), False)),
        ([(b"KEEP-ALIVE", b"timeout=5")], (KeepAlive(5.0, None), False)),
        ([(b"kEeP-aLiVe", b"max=2")], (KeepAlive(None, 2), False)),
        (
            [
                (b"Keep-Alive", b"timeout=5"),
                (b"Content-Type", b"text/plain"),
                (b"keep-alive", b"max=100"),
            ],
            (KeepAlive(5.0, 100), False),
        ),
        (
            [(b"Keep-Alive", b"timeout=5"), (b"Keep-Alive", b"timeout=9")],
            (KeepAlive(9.0, None), False),
        ),
        (
            [(b"Keep-Alive", b"timeout=5"), (b"Keep-Alive", b"timeout=junk")],
            (KeepAlive(5.0, None), False),
        ),
        ([(b"Keep-Alive", b"junk")], (None, False)),
        ([(b"Connection", b"close")], (None, True)),
        ([(b"connection", b"Close")], (None, True)),
        ([(b"CONNECTION", b"Upgrade, close")], (None, True)),
        ([(b"Connection", b"Keep-Alive, Upgrade")], (None, False)),
        ([(b"Connection", b"closed, enclose")], (None, False)),
        (
            [(b"Connection", b"keep-alive"), (b"Connection", b"close")],
            (None, True),
        ),
        (
            [(b"Connection", b"Keep-Alive"), (b"Keep-Alive", b"timeout=5, max=1")],
            (KeepAlive(5.0, 1), False),
        ),
        (
            [(b"Connection", b"close"), (b"Keep-Alive", b"timeout=5")],
            (KeepAlive(5.0, None), True),
        ),
        ([(b"Keep-Alive-X", b"timeout=5"), (b"Connections", b"close")], (None, False)),
    ],
)
def test_response_keep_alive(
    headers: list[tuple[bytes, bytes]], expected: tuple[KeepAlive | None, bool]
) -> None:
    assert response_keep_alive(headers) == expected
    assert response_keep_alive(tuple(headers)) == expected


def test_junk_header_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="hintpool"):
        assert parse_keep_alive("this is not a keep-alive header") is None
    records = [r for r in caplog.records if r.name == "hintpool"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert "this is not a keep-alive header" in records[0].getMessage()


def test_invalid_parameter_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="hintpool"):
        assert parse_keep_alive("timeout=5, max=-1") == KeepAlive(5.0, None)
    assert [r.levelno for r in caplog.records if r.name == "hintpool"] == [
        logging.DEBUG
    ]


@pytest.mark.parametrize("value", ["", "   ", "timeout=5, max=1", "timeout=5, x=y"])
def test_no_log_for_empty_or_valid(
    caplog: pytest.LogCaptureFixture, value: str
) -> None:
    with caplog.at_level(logging.DEBUG, logger="hintpool"):
        parse_keep_alive(value)
    assert [r for r in caplog.records if r.name == "hintpool"] == []


def test_no_log_record_when_debug_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hintpool"):
        assert parse_keep_alive("junk") is None
    assert [r for r in caplog.records if r.name == "hintpool"] == []


def test_cached_response_keep_alive_is_response_keep_alive() -> None:
    from hintpool._hints import cached_response_keep_alive, response_keep_alive

    cases: list[list[tuple[bytes, bytes]]] = [
        [],
        [(b"Keep-Alive", b"timeout=5, max=9")],
        [(b"Connection", b"close"), (b"Keep-Alive", b"timeout=5")],
        [(b"Keep-Alive", b"timeout=5"), (b"Keep-Alive", b"max=3")],
        [(b"Keep-Alive", b"x" * 1000)],  # too long to be remembered
        [(b"X", b"1")] * 5 + [(b"Keep-Alive", b"max=1")],  # scanned
    ]
    for headers in cases * 2:
        assert cached_response_keep_alive(headers) == response_keep_alive(headers)
    unhashable = [[b"Keep-Alive", b"max=4"]]
    assert cached_response_keep_alive(unhashable) == (KeepAlive(max=4), False)  # type: ignore[arg-type]
