"""Make ``respx.mock`` intercept requests sent through hintpool.

respx patches ``handle_request`` / ``handle_async_request`` on a list of
httpcore pool classes; ours are added to that list when respx is installed,
so ``with respx.mock:`` works with hintpool transports as it does with
httpx's default one. Adding targets while a mock is active re-patches, so the
order of imports does not matter.
"""

from __future__ import annotations

import importlib.util
import sys

TARGETS = (
    "hintpool._async.connection_pool.AsyncConnectionPool",
    "hintpool._sync.connection_pool.ConnectionPool",
)


def register_with_respx() -> bool:
    """Add hintpool's pools to respx's httpcore mocker; False if no respx."""
    if "respx" not in sys.modules and importlib.util.find_spec("respx") is None:
        return False
    try:
        from respx.mocks import HTTPCoreMocker
    except ImportError:  # pragma: no cover - a broken respx install
        return False
    HTTPCoreMocker.add_targets(*TARGETS)
    return True
