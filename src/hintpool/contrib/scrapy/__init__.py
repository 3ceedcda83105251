"""hintpool as Scrapy's HTTP(S) download handler (the ``scrapy`` extra).

::

    # settings.py
    DOWNLOAD_HANDLERS = {
        "http": "hintpool.contrib.scrapy.HintpoolDownloadHandler",
        "https": "hintpool.contrib.scrapy.HintpoolDownloadHandler",
    }
    TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

See docs/scrapy.md for what maps to what.
"""

from __future__ import annotations

from ._handler import HintpoolDownloadHandler

__all__ = ["HintpoolDownloadHandler"]
