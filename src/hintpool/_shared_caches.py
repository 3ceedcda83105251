"""When the process-wide caches of what clients sent and received are emptied.

Three caches are shared by every pool of the process, so that the same
requests and responses are not built or parsed again: request heads
(``_h1_request._REQUESTS``) and response heads (``_h1_response.KNOWN_HEADS``)
of hintpool's own HTTP/1.1 connection, and URLs given to ``request()`` as
text (``_requests._URL_CACHE``). They never keep a head with
``Authorization``, ``Proxy-Authorization``, ``Cookie`` or ``Set-Cookie``, nor
a URL with user info, but a secret elsewhere (an ``X-Api-Key`` header, a
token in the query) cannot be told from any other value. So every pool
holds the caches from its first connection on, and when the last holder is
closed they are emptied: nothing a client sent or received stays in them
once every client is closed, while pools still open keep them warm.

A pool dropped without being closed stops holding them when it is garbage
collected; the caches are then emptied at the next close of any pool.
"""

from __future__ import annotations

import threading
import weakref

from ._h1_request import _REQUESTS
from ._h1_response import KNOWN_HEADS
from ._requests import _URL_CACHE

__all__ = ["hold", "release"]

_lock = threading.Lock()
_holders: weakref.WeakSet[object] = weakref.WeakSet()


def hold(owner: object) -> None:
    """``owner`` (a pool's connector) is about to open a connection."""
    with _lock:
        _holders.add(owner)


def release(owner: object) -> None:
    """``owner`` is closed: empty the caches if no other holder is left."""
    with _lock:
        _holders.discard(owner)
        if not _holders:
            _REQUESTS.clear()
            KNOWN_HEADS.clear()
            _URL_CACHE.clear()
