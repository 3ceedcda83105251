"""A local site for real Scrapy crawls, and a crawl run in a child process.

Used by ``benchmarks/bench_scrapy.py`` (the full comparison) and by
``tests/test_scrapy_crawl.py`` (a small bounded crawl). Everything runs on
127.0.0.0/8.

The site: one local server per origin (127.0.x.y, half of them over TLS),
each announcing ``Keep-Alive: timeout=2, max=N`` (counting down from 5) and
closing idle connections after 2 s, behind the 25 ms round-trip delay proxy.
The crawl: groups of pages spread over the origins, every fifth a POST (a
form submission: nobody may resend it on their own); after each group has
finished, an idle gap, most of them drawn around the servers' 2 s timeout
so that reused connections meet the keep-alive race.

The crawl itself runs in a child process (``python scrapy_site.py crawl
...``) because Twisted's reactor can be started once per process; it prints
one JSON line with Scrapy's stats, the spider's counts and the process's
open socket count before and after the crawl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hintpool._local.origins import LocalOrigins, loopback_hosts
from hintpool._local.race import ONE_WAY_DELAY, SERVER_TIMEOUT, race_server_config

HANDLERS = {
    "default": None,
    "hintpool": "hintpool.contrib.scrapy.HintpoolDownloadHandler",
}
PAGE_BYTES = 2000
POST_EVERY = 5
#: Share of the gaps drawn around the servers' timeout, and their range.
NEAR_SHARE = 0.8
NEAR_GAP = (SERVER_TIMEOUT - 0.05, SERVER_TIMEOUT)
SHORT_GAP = (0.2, 0.6)


@dataclass
class Plan:
    """``groups[g]`` lists (origin index, path, method); ``gaps[g]`` is the
    idle time before group g (gaps[0] is 0)."""

    groups: list[list[tuple[int, str, str]]]
    gaps: list[float]
    stall: int = 0  # extra requests to /fault/stall-body in group 0
    stop_after: int = 0  # CloseSpider after this many pages (0: never)

    def pages(self) -> int:
        return sum(len(g) for g in self.groups)


def make_plan(origins: int, groups: int, per_origin: int, seed: int = 18) -> Plan:
    rng = random.Random(seed)
    plan_groups: list[list[tuple[int, str, str]]] = []
    gaps: list[float] = []
    page = 0
    for g in range(groups):
        group = []
        for _ in range(per_origin):
            for o in range(origins):
                page += 1
                post = page % POST_EVERY == 0
                path = "/echo" if post else f"/bytes/{PAGE_BYTES}"
                group.append((o, f"{path}?page={page}", "POST" if post else "GET"))
        plan_groups.append(group)
        if g == 0:
            gaps.append(0.0)
        elif rng.random() < NEAR_SHARE:
            gaps.append(round(rng.uniform(*NEAR_GAP), 4))
        else:
            gaps.append(round(rng.uniform(*SHORT_GAP), 4))
    return Plan(plan_groups, gaps)


@dataclass
class Site:
    """The running origins; ``urls[i]`` is origin i's base URL."""

    origins: LocalOrigins
    urls: list[str] = field(default_factory=list)

    def server_counts(self) -> dict[str, int]:
        opened = tls_full = tls_resumed = after_close = 0
        for origin in self.origins.origins:
            server = origin.server
            after_close += server.requests_after_close
            for record in server.connections:
                opened += 1
                if record.tls_resumed is True:
                    tls_resumed += 1
                elif record.tls_resumed is False:
                    tls_full += 1
        return {
            "server_connections": opened,
            "server_tls_full": tls_full,
            "server_tls_resumed": tls_resumed,
            "server_requests_after_close": after_close,
        }


def start_site(origins: int, tls_share: float = 0.5) -> Site:
    """Start *origins* local origins (the first ``tls_share`` of them TLS)."""
    hosts = loopback_hosts(origins)
    tls_count = round(origins * tls_share)
    contexts: list[Any] = [None] * origins
    if tls_count:
        from hintpool._local.tls import local_tls

        server_context = local_tls(sorted(set(hosts))).server_context
        contexts[:tls_count] = [server_context] * tls_count
    local = LocalOrigins(hosts, race_server_config(), contexts, delay=ONE_WAY_DELAY)
    local.start()
    return Site(local, [o.url for o in local.origins])


def run_crawl(
    handler: str,
    site: Site,
    plan: Plan,
    timeout: float = 300.0,
    log_level: str = "ERROR",
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Crawl *plan* on *site* with *handler* in a child process; its report
    plus the servers' counts for that crawl."""
    for origin in site.origins.origins:
        origin.server.reset_counts()
    job = {
        "handler": handler,
        "urls": site.urls,
        "plan": plan.__dict__,
        "log_level": log_level,
        "settings": settings or {},
    }
    env = dict(os.environ)
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "crawl"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"crawl with {handler} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    report: dict[str, Any] = json.loads(lines[-1])
    report["process_seconds"] = wall
    report["process_cpu_seconds"] = cpu
    report["log"] = proc.stderr
    time.sleep(0.2)  # let the servers see the client's last FINs
    report.update(site.server_counts())
    return report


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the child: one real Scrapy crawl ------------------------------------------


def _open_sockets() -> int:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return -1
    count = 0
    for entry in fd_dir.iterdir():
        try:
            if os.readlink(entry).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def _child() -> None:
    import scrapy
    from scrapy.crawler import CrawlerProcess
    from scrapy.exceptions import CloseSpider

    job = json.loads(sys.stdin.read())
    urls: list[str] = job["urls"]
    plan = Plan(**job["plan"])
    counts: dict[str, Any] = {"pages": 0, "failed": 0, "errors": {}}

    class SiteSpider(scrapy.Spider):
        name = "site"

        async def start(self) -> Any:
            for index, group in enumerate(plan.groups):
                if plan.gaps[index]:
                    await asyncio.sleep(plan.gaps[index])
                self._left = len(group) + (plan.stall if index == 0 else 0)
                self._done = asyncio.Event()
                if index == 0:
                    for n in range(plan.stall):
                        yield scrapy.Request(
                            f"{urls[n % len(urls)]}/fault/stall-body?n={n}",
                            meta={"download_timeout": 1.0, "max_retry_times": 0},
                            callback=self.parse,
                            errback=self.failed,
                            dont_filter=True,
                        )
                for origin, path, method in group:
                    yield self._request(urls[origin] + path, method)
                await self._done.wait()

        def _request(self, url: str, method: str) -> scrapy.Request:
            body = b"name=value" if method == "POST" else b""
            return scrapy.Request(
                url,
                method=method,
                body=body,
                callback=self.parse,
                errback=self.failed,
                dont_filter=True,
            )

        def _one_done(self) -> None:
            self._left -= 1
            if self._left <= 0:
                self._done.set()

        def parse(self, response: Any) -> None:
            counts["pages"] += 1
            self._one_done()
            if plan.stop_after and counts["pages"] >= plan.stop_after:
                raise CloseSpider("stop_after")

        def failed(self, failure: Any) -> None:
            counts["failed"] += 1
            name = type(failure.value).__name__
            counts["errors"][name] = counts["errors"].get(name, 0) + 1
            self._one_done()

    settings: dict[str, Any] = {
        "LOG_LEVEL": job["log_level"],
        "TELNETCONSOLE_ENABLED": False,
        "DOWNLOAD_TIMEOUT": 20,
        "USER_AGENT": "hintpool-scrapy-site",
    }
    settings.update(job["settings"])
    handler = HANDLERS[job["handler"]]
    if handler is not None:
        settings["DOWNLOAD_HANDLERS"] = {"http": handler, "https": handler}
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(SiteSpider)
    process.crawl(crawler)
    sockets_before = _open_sockets()
    started = time.perf_counter()
    process.start()
    elapsed = time.perf_counter() - started
    stats = crawler.stats.get_stats() if crawler.stats else {}
    report = {
        "handler": job["handler"],
        "pages": counts["pages"],
        "failed": counts["failed"],
        "errors": counts["errors"],
        "crawl_seconds": elapsed,
        "sockets_before": sockets_before,
        "sockets_after": _open_sockets(),
        "stats": {
            k: v
            for k, v in stats.items()
            if isinstance(v, (int, float, str)) and not k.startswith("log_count/INFO")
        },
    }
    print(json.dumps(report, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["crawl"])
    parser.parse_args()
    _child()


if __name__ == "__main__":
    main()
