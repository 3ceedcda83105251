"""The settings ``hintpool probe`` recommends for what it measured.

Pure functions of the measurements (``_probe_measure``): the margin and
idle expiry to configure, and a note for each thing the server did that
matters to hintpool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._hints import KeepAlive

if TYPE_CHECKING:
    from ._probe_measure import IdleCloseTime, RequestCount

__all__ = ["DEFAULT_EXPIRY", "DEFAULT_MARGIN", "Recommendation", "recommend"]

DEFAULT_MARGIN = 1.0
DEFAULT_EXPIRY = 5.0


@dataclass(frozen=True)
class Recommendation:
    keepalive_margin: float
    keepalive_expiry: float
    notes: list[str] = field(default_factory=list)


def _round_up(seconds: float) -> float:
    return math.ceil(seconds * 2) / 2


def _round_down(seconds: float) -> float:
    return math.floor(seconds * 2) / 2


def recommend(
    hint: KeepAlive | None,
    *,
    reusable: bool,
    idle: IdleCloseTime,
    round_trip: float,
    requests: RequestCount | None = None,
) -> Recommendation:
    """Settings for hintpool's transports that fit what the server did
    (``requests``: what one connection did, for the note on ``max``)."""
    if not reusable:
        return Recommendation(
            DEFAULT_MARGIN,
            DEFAULT_EXPIRY,
            ["The server closes the connection after every response: there is "
             "nothing to reuse, and no setting changes that."],
        )  # fmt: skip
    notes: list[str] = []
    # A request written just before the deadline still has to reach the
    # server: keep at least two round trips of headroom.
    margin = max(DEFAULT_MARGIN, _round_up(2 * round_trip))
    timeout = hint.timeout if hint is not None else None
    closed = idle.seconds
    if timeout is not None and closed is not None and closed < timeout:
        early = timeout - closed
        margin = max(margin, _round_up(early + DEFAULT_MARGIN))
        notes.append(
            f"It closes idle connections {early:.1f} s before the timeout it "
            "announces: a larger keepalive_margin keeps hintpool ahead of it."
        )
    elif timeout is not None and closed is not None:
        notes.append(
            f"It closes idle connections after {closed:.1f} s, not before its "
            f"announced timeout={timeout:g}: the announced value can be trusted."
        )
    elif timeout is not None:
        notes.append(
            f"It announces timeout={timeout:g}; an idle connection was still "
            f"open after {idle.max_wait:g} s."
        )
    if timeout is not None:
        expiry = DEFAULT_EXPIRY
        if timeout <= margin:
            notes.append(
                "The timeout is not longer than the margin: hintpool will not "
                "reuse a connection once it is idle."
            )
        notes.append(
            "keepalive_expiry does not apply: the server announces its timeout."
        )
    elif closed is not None:
        expiry = _round_down(max(0.0, closed - margin))
        notes.append(
            f"It announces no timeout and closes idle connections after "
            f"{closed:.1f} s: keepalive_expiry must stay below that."
        )
    else:
        verified = _round_down(idle.max_wait - margin)
        expiry = min(DEFAULT_EXPIRY, verified) if verified > 0 else DEFAULT_EXPIRY
        notes.append(
            f"It announces no timeout and kept an idle connection open for "
            f"{idle.max_wait:g} s: a larger --max-wait tells how much longer."
        )
    note = None if requests is None else _max_note(requests)
    if note is not None:
        notes.append(note)
    return Recommendation(margin, expiry, notes)


def _max_note(requests: RequestCount) -> str | None:
    """What the server did with ``max`` on one connection, and what hintpool
    makes of it."""
    announced = [m for m in requests.max_values if m is not None]
    if not announced:
        return None
    first, last, count = announced[0], announced[-1], requests.count
    if len(announced) > 1 and len(set(announced)) == 1:
        said = f"It announces max={first} on every response, not counting it down"
    elif first == last:
        said = f"It announces max={first}"
    else:
        said = f"It counts max down from {first} to {last}"
    if requests.ended_by == "limit":
        return (
            f"{said}, and still took requests when the probe stopped after "
            f"{count}: hintpool retires a connection after a response that "
            "says max=0 or Connection: close."
        )
    if requests.ended_by == "silent":
        return (
            f"{said}, then closed the connection after {count} responses "
            "without saying so: a request sent then fails, and hintpool sends "
            "an idempotent one again on a new connection."
        )
    if requests.max_values[-1] == 0:
        return (
            f"{said}: hintpool retires each connection after the response "
            f"that says max=0 (here the {_ordinal(count)})."
        )
    return (
        f"{said}, then ends the connection with Connection: close on the "
        f"{_ordinal(count)} response, never saying max=0: hintpool retires it "
        "after that response."
    )


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
