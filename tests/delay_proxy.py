"""The delay proxy now lives in :mod:`hintpool._local.delay_proxy`; re-exported."""

from __future__ import annotations

from hintpool._local.delay_proxy import DelayProxy

__all__ = ["DelayProxy"]
