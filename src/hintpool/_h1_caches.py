"""When the HTTP/1.1 codec's head caches are emptied.

The caches of heads seen before (``_h1_request._REQUESTS``,
``_h1_response.KNOWN_HEADS``) are shared by every pool of the process. They
never keep a head with ``Authorization``, ``Proxy-Authorization``, ``Cookie``
or ``Set-Cookie``, but a secret elsewhere (an ``X-Api-Key`` header, a token
in the query) cannot be told from any other value. So every pool that opens
one of hintpool's own connections holds the caches, and when the last
holder is closed they are emptied: nothing a client sent or received stays
in them once every client is closed, and pools still open keep them warm.

A pool dropped without being closed stops holding them when it is garbage
collected; the caches are then emptied at the next close of any pool.
"""

from __future__ import annotations

import threading
import weakref

from ._h1_request import _REQUESTS
from ._h1_response import KNOWN_HEADS

__all__ = ["hold", "release"]

_lock = threading.Lock()
_holders: weakref.WeakSet[object] = weakref.WeakSet()


def hold(owner: object) -> None:
    """``owner`` is about to open a connection that may fill the caches."""
    with _lock:
        _holders.add(owner)


def release(owner: object) -> None:
    """``owner`` is closed: empty the caches if no other holder is left."""
    with _lock:
        _holders.discard(owner)
        if not _holders:
            _REQUESTS.clear()
            KNOWN_HEADS.clear()
