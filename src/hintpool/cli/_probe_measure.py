"""What ``hintpool probe`` measures, and the settings it recommends.

Theory of operation: the probe uses as few connections as it can, all to the
one origin it was given.

1. Connection 1: the first request tells the headers (``Keep-Alive``,
   ``Server``, HTTP version) and, for https, the full TLS handshake. More
   requests follow back to back until the server closes the connection or
   ``max_requests`` were answered: that is how many requests one connection
   accepts.
2. Connection 2 (offering connection 1's TLS session, to see if it
   resumes): one request, then the probe stays idle and waits for the
   server's FIN, at most ``max_wait`` seconds. Servers close idle
   connections with a FIN, so the wait gives the idle close time directly.
3. Only if nothing arrived: one more request on that connection tells
   whether it is really still open. If the server silently dropped it
   (no FIN: the request is reset or never answered), rounds of fresh
   connections, idle for different gaps in parallel, narrow down the time
   (:func:`narrow`, a bounded k-ary bisection).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable

from .._hints import KeepAlive, parse_keep_alive
from ._probe_advice import Recommendation, recommend
from ._probe_wire import Exchange, ProbeError, Target, Wire

__all__ = ["ProbeOptions", "ProbeReport", "narrow", "probe", "recommend"]

#: Parallel connections per bisection round, and its bounds.
BISECT_WIDTH = 3
BISECT_PRECISION = 0.25
BISECT_ROUNDS = 4

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProbeOptions:
    max_wait: float = 30.0
    max_requests: int = 100
    #: Bound on connecting and on each read of a response.
    timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True)
class FirstResponse:
    status: int
    reason: str
    http_version: str
    server: str | None
    keep_alive: str | None
    connection: str | None

    @classmethod
    def from_exchange(cls, ex: Exchange) -> FirstResponse:
        return cls(
            status=ex.status,
            reason=ex.reason,
            http_version=ex.http_version,
            server=ex.header("server"),
            keep_alive=ex.header("keep-alive"),
            connection=ex.header("connection"),
        )

    @property
    def hint(self) -> KeepAlive | None:
        return None if self.keep_alive is None else parse_keep_alive(self.keep_alive)


@dataclass(frozen=True)
class RequestCount:
    #: responses received on one connection.
    count: int
    #: why counting stopped: "limit" (the probe's --max-requests), "close"
    #: (the server said Connection: close or spoke HTTP/1.0 without
    #: keep-alive) or "silent" (it closed without saying so).
    ended_by: str
    max_requests: int
    #: the ``max`` of each response's Keep-Alive header, in order.
    max_values: list[int | None]


@dataclass(frozen=True)
class IdleCloseTime:
    #: seconds from the end of a response to the server's close; for a
    #: bisection, the middle of [low, high]. None: not closed within max_wait.
    seconds: float | None
    #: "fin", "reset", "bisection", "open" (not closed within max_wait) or
    #: "not-applicable" (the server closes after every response).
    method: str
    max_wait: float
    low: float | None = None
    high: float | None = None
    #: start of what the server sent on the idle connection, if anything.
    unsolicited: str | None = None


@dataclass(frozen=True)
class TlsReport:
    version: str | None
    cipher: str | None
    alpn: str | None
    full_handshake_ms: float | None
    #: whether connection 2 resumed connection 1's session.
    resumed: bool
    #: connection 2's handshake: resumed, or a second full one.
    second_handshake_ms: float | None
    session_offered: bool


@dataclass(frozen=True)
class ProbeReport:
    url: str
    connect_ms: float
    response: FirstResponse
    requests: RequestCount
    idle_close: IdleCloseTime
    tls: TlsReport | None
    recommendation: Recommendation

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        hint = self.response.hint
        data["response"]["keep_alive_parsed"] = (
            None if hint is None else {"timeout": hint.timeout, "max": hint.max}
        )
        return data


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def probe(
    target: Target, options: ProbeOptions, progress: Progress | None = None
) -> ProbeReport:
    """Run every measurement against ``target``; raises :class:`ProbeError`."""
    say = progress or (lambda message: None)

    def connect(session: ssl.SSLSession | None = None) -> Wire:
        return Wire(
            target,
            timeout=options.timeout,
            ssl_context=options.ssl_context,
            session=session,
        )

    say(f"connecting to {target.address}")
    with connect() as wire:
        first = wire.exchange()
        session = wire.session
        say(f"counting requests on one connection (up to {options.max_requests})")
        requests = count_requests(wire, first, options.max_requests)
        connect_seconds, full_handshake = wire.connect_seconds, wire.handshake_seconds
        tls_first = None
        if wire.tls is not None:
            cipher = wire.tls.cipher()
            tls_first = (
                wire.tls.version(),
                None if cipher is None else cipher[0],
                wire.tls.selected_alpn_protocol(),
            )

    with connect(session) as wire:
        ex = wire.exchange()
        tls = None
        if tls_first is not None and wire.tls is not None:
            version, cipher_name, alpn = tls_first
            tls = TlsReport(
                version=version,
                cipher=cipher_name,
                alpn=alpn,
                full_handshake_ms=_ms(full_handshake),
                resumed=bool(wire.tls.session_reused),
                second_handshake_ms=_ms(wire.handshake_seconds),
                session_offered=session is not None,
            )
        if ex.reusable and first_reusable(requests):
            say(f"waiting up to {options.max_wait:g} s for the server to close")
            idle = idle_close_time(wire, ex, options, connect, say)
        else:
            idle = IdleCloseTime(None, "not-applicable", options.max_wait)

    response = FirstResponse.from_exchange(first)
    return ProbeReport(
        url=target.url,
        connect_ms=_ms(connect_seconds) or 0.0,
        response=response,
        requests=requests,
        idle_close=idle,
        tls=tls,
        recommendation=recommend(
            response.hint,
            reusable=first_reusable(requests),
            idle=idle,
            round_trip=connect_seconds,
            requests=requests,
        ),
    )


def first_reusable(requests: RequestCount) -> bool:
    return requests.count > 1 or requests.ended_by == "limit"


def count_requests(wire: Wire, first: Exchange, max_requests: int) -> RequestCount:
    """Send requests back to back on ``wire`` until the server stops."""
    max_values = [_max_of(first)]
    ex = first
    while ex.reusable:
        if len(max_values) >= max_requests:
            return RequestCount(len(max_values), "limit", max_requests, max_values)
        try:
            ex = wire.exchange()
        except ProbeError:
            # It closed, reset or stopped answering without announcing it.
            return RequestCount(len(max_values), "silent", max_requests, max_values)
        max_values.append(_max_of(ex))
    return RequestCount(len(max_values), "close", max_requests, max_values)


def _max_of(ex: Exchange) -> int | None:
    value = ex.header("keep-alive")
    hint = None if value is None else parse_keep_alive(value)
    return None if hint is None else hint.max


def idle_close_time(
    wire: Wire,
    last: Exchange,
    options: ProbeOptions,
    connect: Callable[[], Wire],
    say: Progress,
) -> IdleCloseTime:
    """Wait for the close on ``wire``; bisect if the server dropped it silently."""
    observed = wire.wait_for_close(last.finished_at, options.max_wait)
    unsolicited = observed.unsolicited.decode("latin-1")[:80] or None
    if observed.seconds is not None:
        assert observed.how is not None
        return IdleCloseTime(
            round(observed.seconds, 3),
            observed.how,
            options.max_wait,
            unsolicited=unsolicited,
        )
    if _still_answers(wire):
        return IdleCloseTime(None, "open", options.max_wait, unsolicited=unsolicited)
    say("the server dropped the idle connection without a FIN: bisecting")

    def alive_after_each(gaps: Sequence[float]) -> list[bool]:
        with ThreadPoolExecutor(max_workers=len(gaps)) as pool:
            return list(pool.map(lambda gap: _alive_after(connect, gap), gaps))

    low, high = narrow(0.0, options.max_wait, alive_after_each)
    return IdleCloseTime(
        round((low + high) / 2, 3),
        "bisection",
        options.max_wait,
        low=round(low, 3),
        high=round(high, 3),
        unsolicited=unsolicited,
    )


def _still_answers(wire: Wire) -> bool:
    try:
        wire.exchange()
    except ProbeError:
        return False
    return True


def _alive_after(connect: Callable[[], Wire], gap: float) -> bool:
    """Does a connection left idle for ``gap`` seconds still answer?"""
    with connect() as wire:
        ex = wire.exchange()
        if not ex.reusable:
            return False
        if wire.wait_for_close(ex.finished_at, gap).seconds is not None:
            return False
        return _still_answers(wire)


def narrow(
    low: float,
    high: float,
    alive_after_each: Callable[[Sequence[float]], list[bool]],
    *,
    width: int = BISECT_WIDTH,
    precision: float = BISECT_PRECISION,
    rounds: int = BISECT_ROUNDS,
) -> tuple[float, float]:
    """Narrow [low, high] around the idle time after which connections die.

    Connections idle for ``low`` seconds answer and ones idle for ``high`` do
    not. Each round tries ``width`` gaps spread over the interval at once and
    keeps the part between the longest gap that answered and the shortest
    longer one that did not. Stops at ``precision`` or after ``rounds``.
    """
    for _ in range(rounds):
        if high - low <= precision:
            break
        step = (high - low) / (width + 1)
        gaps = [low + step * i for i in range(1, width + 1)]
        results = alive_after_each(gaps)
        alive = [gap for gap, ok in zip(gaps, results) if ok]
        new_low = max(alive, default=low)
        dead = [gap for gap, ok in zip(gaps, results) if not ok and gap > new_low]
        low, high = new_low, min(dead, default=high)
    return low, high
