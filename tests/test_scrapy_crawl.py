"""Real Scrapy crawls with hintpool's download handler, each in a child
process (Twisted's reactor starts once per process).

The site (benchmarks/scrapy_site.py): 20 local origins on 127.0.x.y, half
over TLS, each announcing ``Keep-Alive: timeout=2, max=5`` behind the 25 ms
delay proxy; groups of pages (every fifth a POST) with idle gaps around
the servers' timeout between them. Kept small here (a bounded crawl); the
full comparison with Scrapy's default handler is benchmarks/bench_scrapy.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("scrapy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import scrapy_site

CRAWL_TIMEOUT = 50.0


@pytest.fixture(scope="module")
def site() -> Iterator[Any]:
    running = scrapy_site.start_site(20)
    try:
        yield running
    finally:
        running.origins.stop()


def test_crawl_has_no_failures_and_no_retries(site: Any) -> None:
    plan = scrapy_site.make_plan(20, groups=3, per_origin=2)
    report = scrapy_site.run_crawl(
        "hintpool", site, plan, timeout=CRAWL_TIMEOUT, log_level="INFO"
    )
    stats = report["stats"]
    assert report["pages"] == plan.pages() == 120
    assert report["failed"] == 0, report["errors"]
    assert stats.get("retry/count", 0) == 0
    assert report["server_requests_after_close"] == 0
    # hintpool's figures are in Scrapy's stats and in its end-of-crawl dump.
    assert stats["hintpool/requests"] == 120
    assert stats["hintpool/connections_opened"] == report["server_connections"]
    assert stats["hintpool/tls_full"] + stats["hintpool/tls_resumed"] == (
        report["server_tls_full"] + report["server_tls_resumed"]
    )
    assert "'hintpool/connections_opened':" in report["log"]
    assert report["sockets_after"] <= report["sockets_before"]


def test_spider_closed_mid_crawl_leaks_nothing(site: Any) -> None:
    """CloseSpider while pages and stalled bodies are in flight: the stalled
    ones end with Scrapy's timeout error, every connection is closed."""
    plan = scrapy_site.make_plan(20, groups=2, per_origin=3)
    plan.stop_after = 25
    plan.stall = 3
    report = scrapy_site.run_crawl("hintpool", site, plan, timeout=CRAWL_TIMEOUT)
    assert 25 <= report["pages"] < plan.pages()
    # The stalled bodies are requested first, so they are in flight.
    assert report["errors"] == {"DownloadTimeout": plan.stall}
    assert report["stats"]["finish_reason"] == "stop_after"
    assert report["sockets_after"] <= report["sockets_before"]
