"""The keep-alive race: a seeded schedule of bursts and idle gaps, and runners.

Theory of operation
-------------------
A server announcing ``Keep-Alive: timeout=T`` closes a connection idle for T
seconds.  With a one-way delay d between client and server, a client that
writes its next request between ``T - 2d`` and ``T`` after it read the last
response reuses a connection whose FIN is already on its way: the server has
closed when the request arrives, the client reads EOF, and gets "Server
disconnected without sending a response".  Clients that ignore the hint
(httpx's default keeps idle connections 5 s) lose every request written in
that window; hintpool stops reusing ``keepalive_margin`` (1 s) before T.

The schedule is a list of bursts: most gaps before a burst fall close to T
(a 2d-wide window sits inside them), some are short so that connections stay
alive across bursts and reach the server's ``max``.  Every request's latency
and every error is recorded; nothing is retried here.

Bursts can alternate methods (``methods=("GET", "POST")``): clients such as
aiohttp and urllib3 silently retry an idempotent request that met a closed
connection, which hides the race for GET; they cannot retry a POST, so the
POST rows show every client's real exposure.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .server import ServerConfig

__all__ = [
    "ONE_WAY_DELAY",
    "SERVER_MAX_REQUESTS",
    "SERVER_TIMEOUT",
    "POST_BODY",
    "Burst",
    "Outcome",
    "Send",
    "SyncSend",
    "make_schedule",
    "percentile",
    "race_server_config",
    "run_async",
    "run_sync",
]

#: The servers' announced (and enforced) idle timeout and max requests.
SERVER_TIMEOUT = 2
SERVER_MAX_REQUESTS = 5
#: Each way through the delay proxy: a 25 ms round trip.
ONE_WAY_DELAY = 0.0125

#: Share of bursts whose gap is drawn around the server's timeout.
NEAR_TIMEOUT_SHARE = 0.8
#: Near-timeout gaps are drawn from [T - BEFORE, T + AFTER].
BEFORE = 0.05
AFTER = 0.03
#: Short gaps keep the connection alive: drawn from this range (seconds).
SHORT_GAPS = (0.2, 0.6)
#: Requests per burst; the server's max is 5, so some bursts reach it.
BURST_SIZES = (2, 3, 4, 4, 5, 6)
#: Rough cost of one request behind the proxy, to fit the schedule in time.
REQUEST_COST = 0.04
#: The body of every POST (a small form, as an API client would send).
POST_BODY = b"item=42&quantity=1"


def race_server_config() -> ServerConfig:
    """Keep-Alive: timeout=2, max=N counting down; idle close after 2 s."""
    return ServerConfig(
        keep_alive=f"timeout={SERVER_TIMEOUT}, max={{left}}",
        idle_timeout=float(SERVER_TIMEOUT),
        max_requests=SERVER_MAX_REQUESTS,
    )


#: ``await send(method, url)``: one request, whole body read; raises on failure.
Send = Callable[[str, str], Awaitable[object]]
SyncSend = Callable[[str, str], object]


@dataclass(frozen=True)
class Burst:
    gap: float  # idle seconds before the burst's first request
    requests: int
    method: str = "GET"  # of every request in the burst


@dataclass
class Outcome:
    requests: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successes
    errors: Counter[str] = field(default_factory=Counter)
    requests_by_method: Counter[str] = field(default_factory=Counter)
    failed_by_method: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def record_error(self, exc: BaseException, method: str = "GET") -> None:
        message = str(exc).strip() or "(no message)"
        self.errors[f"{type(exc).__name__}: {message[:80]}"] += 1
        self.failed_by_method[method] += 1

    def by_method(self) -> dict[str, dict[str, int]]:
        """``{"GET": {"requests": n, "failed": k}, ...}`` for the methods sent."""
        return {
            method: {"requests": sent, "failed": self.failed_by_method[method]}
            for method, sent in sorted(self.requests_by_method.items())
        }


def make_schedule(
    seed: int,
    duration: float,
    timeout: float = SERVER_TIMEOUT,
    *,
    near_share: float = NEAR_TIMEOUT_SHARE,
    before: float = BEFORE,
    after: float = AFTER,
    burst_sizes: Sequence[int] = BURST_SIZES,
    methods: Sequence[str] = ("GET",),
) -> list[Burst]:
    """Bursts filling about *duration* seconds, the same for every *seed*.

    A share *near_share* of the gaps is drawn from
    ``[timeout - before, timeout + after]``, the rest from SHORT_GAPS.  The
    bursts take *methods* in turn; the gaps and sizes do not depend on them.
    """
    rng = random.Random(seed)
    bursts: list[Burst] = []
    spent = 0.0
    while spent < duration and len(bursts) < 10_000:
        if rng.random() < near_share:
            gap = rng.uniform(timeout - before, timeout + after)
        else:
            gap = rng.uniform(*SHORT_GAPS)
        size = rng.choice(burst_sizes)
        method = methods[len(bursts) % len(methods)]
        bursts.append(Burst(round(gap, 4), size, method))
        spent += gap + size * REQUEST_COST
    return bursts


async def run_async(
    send: Send,
    url: str,
    schedule: list[Burst],
    outcome: Outcome,
    sleep: Callable[[float], Awaitable[object]],
    on_request: Callable[[], object] = lambda: None,
) -> None:
    """Play *schedule* against *url* with ``await send(method, url)``."""
    for burst in schedule:
        await sleep(burst.gap)
        for _ in range(burst.requests):
            start = time.perf_counter()
            try:
                await send(burst.method, url)
            except Exception as exc:  # counted, shown: the point of the demo
                outcome.record_error(exc, burst.method)
            else:
                outcome.latencies.append(time.perf_counter() - start)
            outcome.requests += 1
            outcome.requests_by_method[burst.method] += 1
            on_request()


def run_sync(
    send: SyncSend,
    url: str,
    schedule: list[Burst],
    outcome: Outcome,
    on_request: Callable[[], object] = lambda: None,
) -> None:
    """The blocking twin of :func:`run_async` (for sync clients in a thread)."""
    for burst in schedule:
        time.sleep(burst.gap)
        for _ in range(burst.requests):
            start = time.perf_counter()
            try:
                send(burst.method, url)
            except Exception as exc:  # counted, shown: the point of the demo
                outcome.record_error(exc, burst.method)
            else:
                outcome.latencies.append(time.perf_counter() - start)
            outcome.requests += 1
            outcome.requests_by_method[burst.method] += 1
            on_request()


def percentile(values: list[float], q: float) -> float | None:
    """The *q*-th percentile (nearest rank) of *values*; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
