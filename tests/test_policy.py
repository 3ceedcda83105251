"""Unit tests of the pure lifetime policy (``hintpool._policy``).

No sockets, no sleeping: the clock is a plain float passed as ``now``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hintpool._hints import KeepAlive
from hintpool._policy import (
    FINAL_STATES,
    TRANSITIONS,
    Event,
    IllegalTransition,
    Lifetime,
    LifetimePolicy,
    State,
)

# -- LifetimePolicy.idle_window ----------------------------------------------


def test_policy_defaults() -> None:
    policy = LifetimePolicy()
    assert policy.margin == 1.0
    assert policy.max_timeout == 600.0
    assert policy.keepalive_expiry == 5.0


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (5.0, 4.0),
        (2.0, 1.0),
        (1.5, 0.5),
        (1.0, 0.0),  # no headroom: do not reuse after idle
        (0.0, 0.0),
        (0.5, 0.0),  # never below 0
        (600.0, 599.0),
        (601.0, 599.0),  # capped at max_timeout
        (86400.0, 599.0),
        (math.inf, 599.0),
    ],
)
def test_idle_window_from_hint(timeout: float, expected: float) -> None:
    policy = LifetimePolicy(margin=1.0, max_timeout=600.0, keepalive_expiry=5.0)
    assert policy.idle_window(KeepAlive(timeout, None)) == expected
    assert policy.idle_window(KeepAlive(timeout, 10)) == expected


def test_idle_window_hint_beats_longer_learned_timeout() -> None:
    policy = LifetimePolicy(margin=2.0)
    assert policy.idle_window(KeepAlive(10.0, None), learned_timeout=30.0) == 8.0


def test_idle_window_shorter_learned_timeout_beats_hint() -> None:
    # Closes seen before the announced time (a proxy's tunnel in front of
    # the origin): the earlier of the two counts.
    policy = LifetimePolicy(margin=0.5)
    assert policy.idle_window(KeepAlive(5.0, None), 2.0, learned_hinted=True) == 1.5
    # Learned before the server sent hints: the hint wins.
    assert policy.idle_window(KeepAlive(5.0, None), 2.0) == 4.5


def test_idle_window_hint_without_timeout_falls_back() -> None:
    policy = LifetimePolicy(margin=1.0, keepalive_expiry=7.0)
    # A hint carrying only ``max`` says nothing about time.
    assert policy.idle_window(KeepAlive(None, 5)) == 7.0
    assert policy.idle_window(KeepAlive(None, 5), learned_timeout=3.0) == 2.0
    assert policy.idle_window(KeepAlive(None, None)) == 7.0


@pytest.mark.parametrize(
    ("learned", "expected"),
    [(10.0, 9.0), (1.0, 0.0), (0.0, 0.0), (0.25, 0.0), (5000.0, 599.0)],
)
def test_idle_window_learned_timeout(learned: float, expected: float) -> None:
    policy = LifetimePolicy(margin=1.0, keepalive_expiry=5.0)
    assert policy.idle_window(None, learned_timeout=learned) == expected


def test_idle_window_keepalive_expiry_when_nothing_known() -> None:
    assert LifetimePolicy(keepalive_expiry=5.0).idle_window(None) == 5.0
    # httpx semantics: the margin is not taken off the configured expiry.
    assert LifetimePolicy(margin=3.0, keepalive_expiry=2.0).idle_window(None) == 2.0
    assert LifetimePolicy(keepalive_expiry=0.0).idle_window(None) == 0.0


def test_idle_window_no_expiry_is_infinite() -> None:
    policy = LifetimePolicy(keepalive_expiry=None)
    assert policy.idle_window(None) == math.inf
    assert policy.idle_window(KeepAlive(None, 3)) == math.inf
    # A hint or a learned timeout still sets a finite window.
    assert policy.idle_window(KeepAlive(5.0, None)) == 4.0
    assert policy.idle_window(None, learned_timeout=5.0) == 4.0


def test_idle_window_zero_margin() -> None:
    policy = LifetimePolicy(margin=0.0, max_timeout=10.0)
    assert policy.idle_window(KeepAlive(5.0, None)) == 5.0
    assert policy.idle_window(KeepAlive(0.0, None)) == 0.0
    assert policy.idle_window(KeepAlive(50.0, None)) == 10.0


def test_idle_window_zero_cap() -> None:
    policy = LifetimePolicy(margin=0.0, max_timeout=0.0)
    assert policy.idle_window(KeepAlive(5.0, None)) == 0.0


@given(
    margin=st.floats(0, 1e6),
    max_timeout=st.floats(0, 1e9) | st.just(math.inf),
    expiry=st.none() | st.floats(0, 1e9),
    timeout=st.none() | st.floats(0, 1e12) | st.just(math.inf),
    max_=st.none() | st.integers(0, 10**6),
    learned=st.none() | st.floats(0, 1e12),
    hinted=st.booleans(),
    learned_hinted=st.booleans(),
)
def test_idle_window_properties(
    margin: float,
    max_timeout: float,
    expiry: float | None,
    timeout: float | None,
    max_: int | None,
    learned: float | None,
    hinted: bool,
    learned_hinted: bool,
) -> None:
    policy = LifetimePolicy(
        margin=margin, max_timeout=max_timeout, keepalive_expiry=expiry
    )
    hint = KeepAlive(timeout, max_) if hinted else None
    window = policy.idle_window(hint, learned, learned_hinted)
    assert window >= 0
    assert not math.isnan(window)
    effective = timeout if hinted else None
    if learned is not None and (
        effective is None or (learned_hinted and learned < effective)
    ):
        effective = learned
    if effective is not None:
        assert window == max(0.0, min(effective, max_timeout) - margin)
        assert window <= max_timeout
    elif expiry is None:
        assert window == math.inf
    else:
        assert window == expiry


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin": -1.0},
        {"margin": -1e-9},
        {"margin": math.nan},
        {"margin": math.inf},
        {"max_timeout": -1.0},
        {"max_timeout": math.nan},
        {"keepalive_expiry": -0.5},
        {"keepalive_expiry": math.nan},
    ],
)
def test_invalid_policy_raises(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LifetimePolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin": 0.0},
        {"max_timeout": 0.0},
        {"max_timeout": math.inf},
        {"keepalive_expiry": 0.0},
        {"keepalive_expiry": None},
        {"keepalive_expiry": math.inf},
    ],
)
def test_valid_edge_policies(kwargs: dict[str, float | None]) -> None:
    LifetimePolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    policy = LifetimePolicy()
    with pytest.raises(AttributeError):
        policy.margin = 2.0  # type: ignore[misc]


# -- the transition table ----------------------------------------------------


def _lifetime_in(state: State) -> Lifetime:
    lifetime = Lifetime()
    lifetime.state = state
    return lifetime


_DRIVERS = {
    Event.START: lambda lt: lt.start_request(),
    Event.IDLE: lambda lt: lt.response_done(0.0, 10.0),
    Event.RETIRE: lambda lt: (setattr(lt, "will_close", True), lt.response_done(0, 1)),
    Event.EXPIRE: lambda lt: lt.expire(),
    Event.CLOSE: lambda lt: lt.close(),
    Event.WARM: lambda lt: lt.warmed(0.0, 10.0),
}


def test_transition_table_is_what_the_docstring_draws() -> None:
    S, E = State, Event
    assert {
        (S.NEW, E.START): S.ACTIVE,
        (S.NEW, E.CLOSE): S.CLOSED,
        (S.NEW, E.WARM): S.IDLE,
        (S.ACTIVE, E.IDLE): S.IDLE,
        (S.ACTIVE, E.RETIRE): S.RETIRED,
        (S.ACTIVE, E.CLOSE): S.CLOSED,
        (S.IDLE, E.START): S.ACTIVE,
        (S.IDLE, E.EXPIRE): S.EXPIRED,
        (S.IDLE, E.CLOSE): S.CLOSED,
        (S.RETIRED, E.CLOSE): S.RETIRED,
        (S.EXPIRED, E.CLOSE): S.EXPIRED,
        (S.CLOSED, E.CLOSE): S.CLOSED,
    } == TRANSITIONS
    assert frozenset({S.RETIRED, S.EXPIRED, S.CLOSED}) == FINAL_STATES
    # Final states are absorbing: nothing leads out of them.
    for (source, _), target in TRANSITIONS.items():
        if source in FINAL_STATES:
            assert target == source


ALL_PAIRS = list(itertools.product(State, Event))


@pytest.mark.parametrize(
    ("state", "event"), ALL_PAIRS, ids=[f"{s.value}-{e.value}" for s, e in ALL_PAIRS]
)
def test_every_state_event_pair(state: State, event: Event) -> None:
    # Through the private step function...
    lifetime = _lifetime_in(state)
    if (state, event) in TRANSITIONS:
        lifetime._go(event)
        assert lifetime.state is TRANSITIONS[state, event]
    else:
        with pytest.raises(IllegalTransition, match=event.value):
            lifetime._go(event)
        assert lifetime.state is state  # unchanged
    # ...and through the public method that fires the event.
    lifetime = _lifetime_in(state)
    if (state, event) in TRANSITIONS:
        _DRIVERS[event](lifetime)
        assert lifetime.state is TRANSITIONS[state, event]
    else:
        with pytest.raises(IllegalTransition):
            _DRIVERS[event](lifetime)
        assert lifetime.state is state


def test_illegal_transition_is_a_runtime_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)
    with pytest.raises(
        IllegalTransition, match="'expire' is not allowed in state 'new'"
    ):
        Lifetime().expire()


# -- Lifetime ----------------------------------------------------------------


def test_new_lifetime() -> None:
    lifetime = Lifetime()
    assert lifetime.state is State.NEW
    assert lifetime.idle_deadline == math.inf
    assert lifetime.requests_left is None
    assert lifetime.requests_served == 0
    assert lifetime.last_hint is None
    assert lifetime.will_close is False
    assert not lifetime.reusable(0.0)
    assert not lifetime.retired_by_max
    assert "new" in repr(lifetime)


def test_start_request_counts() -> None:
    lifetime = Lifetime()
    for n in range(1, 4):
        lifetime.start_request()
        assert lifetime.requests_served == n
        assert lifetime.state is State.ACTIVE
        assert lifetime.response_done(float(n), 5.0)
    assert "served=3" in repr(lifetime)


def _serve(lifetime: Lifetime, hint: KeepAlive | None, now: float = 0.0) -> bool:
    lifetime.start_request()
    lifetime.response_headers(hint, will_close=False)
    return lifetime.response_done(now, 5.0)


def test_apache_max_counting_retires_after_max_zero() -> None:
    lifetime = Lifetime()
    assert _serve(lifetime, KeepAlive(5.0, 2))
    assert lifetime.requests_left == 2
    assert lifetime.reusable(1.0)
    assert _serve(lifetime, KeepAlive(5.0, 1))
    assert lifetime.requests_left == 1
    assert lifetime.reusable(1.0)
    assert not _serve(lifetime, KeepAlive(5.0, 0))
    assert lifetime.requests_left == 0
    assert lifetime.state is State.RETIRED
    assert lifetime.retired_by_max
    assert not lifetime.reusable(0.0)
    assert lifetime.requests_served == 3


def test_response_without_max_decrements_last_known_count() -> None:
    lifetime = Lifetime()
    assert _serve(lifetime, KeepAlive(5.0, 2))
    assert _serve(lifetime, None)
    assert lifetime.requests_left == 1
    # A timeout-only hint has no max either: the count still goes down.
    assert not _serve(lifetime, KeepAlive(5.0, None))
    assert lifetime.requests_left == 0
    assert lifetime.state is State.RETIRED
    assert lifetime.retired_by_max


def test_decrement_never_goes_below_zero() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.requests_left = 0
    lifetime.response_headers(None, will_close=False)
    assert lifetime.requests_left == 0


def test_response_headers_outside_a_request_is_illegal() -> None:
    lifetime = Lifetime()
    with pytest.raises(IllegalTransition):
        lifetime.response_headers(KeepAlive(5.0, 0), will_close=False)


def test_no_max_ever_means_no_count() -> None:
    lifetime = Lifetime()
    for _ in range(5):
        assert _serve(lifetime, KeepAlive(5.0, None))
        assert lifetime.requests_left is None
    assert _serve(lifetime, None)
    assert lifetime.requests_left is None


def test_fresh_max_overrides_count() -> None:
    lifetime = Lifetime()
    assert _serve(lifetime, KeepAlive(None, 1))
    assert _serve(lifetime, KeepAlive(None, 100))  # the server changed its mind
    assert lifetime.requests_left == 100


def test_max_zero_on_first_response_retires() -> None:
    lifetime = Lifetime()
    assert not _serve(lifetime, KeepAlive(5.0, 0))
    assert lifetime.retired_by_max


def test_last_hint_kept_across_responses_without_one() -> None:
    lifetime = Lifetime()
    hint = KeepAlive(5.0, 10)
    _serve(lifetime, hint)
    _serve(lifetime, None)
    assert lifetime.last_hint == hint
    other = KeepAlive(3.0, None)
    _serve(lifetime, other)
    assert lifetime.last_hint == other


def test_will_close_retires_but_not_by_max() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.response_headers(KeepAlive(5.0, 10), will_close=True)
    assert lifetime.will_close
    assert not lifetime.response_done(0.0, 4.0)
    assert lifetime.state is State.RETIRED
    assert not lifetime.retired_by_max


def test_will_close_is_per_response() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.response_headers(None, will_close=True)
    lifetime.response_headers(None, will_close=False)
    assert lifetime.response_done(0.0, 4.0)


def test_zero_window_retires() -> None:
    policy = LifetimePolicy(margin=1.0)
    for timeout in (0.0, 1.0):
        lifetime = Lifetime()
        lifetime.start_request()
        hint = KeepAlive(timeout, 50)
        lifetime.response_headers(hint, will_close=False)
        assert not lifetime.response_done(10.0, policy.idle_window(hint))
        assert lifetime.state is State.RETIRED
        assert not lifetime.retired_by_max


def test_response_done_sets_deadline() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.response_headers(KeepAlive(5.0, None), will_close=False)
    window = LifetimePolicy(margin=1.0).idle_window(lifetime.last_hint)
    assert lifetime.response_done(100.0, window)
    assert lifetime.state is State.IDLE
    assert lifetime.idle_since == 100.0
    assert lifetime.idle_deadline == 104.0
    assert lifetime.reusable(100.0)
    assert lifetime.reusable(103.999)
    assert not lifetime.reusable(104.0)  # at the deadline: no
    assert not lifetime.reusable(104.001)
    assert not lifetime.reusable(1e9)


def test_infinite_window_never_expires() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    assert lifetime.response_done(1.0, math.inf)
    assert lifetime.idle_deadline == math.inf
    assert lifetime.reusable(1e300)


def test_deadline_moves_on_each_idle() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.response_done(0.0, 5.0)
    lifetime.start_request()
    assert not lifetime.reusable(1.0)  # active, not idle
    lifetime.response_done(3.0, 2.0)
    assert lifetime.idle_deadline == 5.0
    assert lifetime.idle_since == 3.0


@pytest.mark.parametrize("state", [s for s in State if s is not State.IDLE])
def test_only_idle_is_reusable(state: State) -> None:
    lifetime = _lifetime_in(state)
    lifetime.idle_deadline = math.inf
    assert not lifetime.reusable(0.0)


def test_expire_and_close_are_final() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.response_done(0.0, 1.0)
    lifetime.expire()
    assert lifetime.state is State.EXPIRED
    lifetime.close()  # harmless
    assert lifetime.state is State.EXPIRED
    with pytest.raises(IllegalTransition):
        lifetime.start_request()
    assert lifetime.requests_served == 1


def test_retired_by_max_needs_retired_state() -> None:
    lifetime = Lifetime()
    lifetime.start_request()
    lifetime.response_headers(KeepAlive(None, 0), will_close=False)
    assert not lifetime.retired_by_max  # still active
    lifetime.close()
    assert lifetime.state is State.CLOSED
    assert not lifetime.retired_by_max


# -- random sequences --------------------------------------------------------

_hints = st.none() | st.builds(
    KeepAlive,
    st.none() | st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 5.0, 1e4]),
    st.none() | st.integers(0, 3),
)

_steps = st.lists(
    st.one_of(
        st.tuples(st.just("start")),
        st.tuples(st.just("headers"), _hints, st.booleans()),
        st.tuples(st.just("done"), st.sampled_from([0.0, 0.5, 2.0, 10.0, math.inf])),
        st.tuples(st.just("expire")),
        st.tuples(st.just("close")),
        st.tuples(st.just("tick"), st.floats(0, 20)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(steps=_steps)
def test_random_sequences_never_reuse_past_deadline(
    steps: list[tuple[Any, ...]],
) -> None:
    lifetime = Lifetime()
    now = 0.0
    served = 0
    for step in steps:
        kind = step[0]
        before = lifetime.state
        if kind == "tick":
            now += step[1]
        elif kind == "headers":
            # The pool reads headers on an active connection only.
            if before is State.ACTIVE:
                lifetime.response_headers(step[1], step[2])
        else:
            event, call = {
                "start": (Event.START, lifetime.start_request),
                "done": (
                    None,
                    lambda w=step[-1], t=now: lifetime.response_done(t, w),
                ),
                "expire": (Event.EXPIRE, lifetime.expire),
                "close": (Event.CLOSE, lifetime.close),
            }[kind]
            legal = (
                before is State.ACTIVE
                if event is None
                else (before, event) in TRANSITIONS
            )
            if legal:
                result = call()
                if kind == "start":
                    served += 1
                if kind == "done":
                    assert result == (lifetime.state is State.IDLE)
                    if result:
                        assert lifetime.idle_deadline == now + step[1]
                    else:
                        assert lifetime.state is State.RETIRED
            else:
                with pytest.raises(IllegalTransition):
                    call()
                assert lifetime.state is before
        assert lifetime.requests_served == served
        if lifetime.requests_left is not None:
            assert lifetime.requests_left >= 0
        if lifetime.state is State.RETIRED:
            assert lifetime.retired_by_max == (lifetime.requests_left == 0)
        for probe in (now, now + 0.5, now + 5.0):
            if lifetime.reusable(probe):
                assert lifetime.state is State.IDLE
                assert probe < lifetime.idle_deadline
                assert lifetime.requests_left != 0
                assert not lifetime.will_close
