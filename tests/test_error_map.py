"""Every exception a request can raise maps to an httpx class (issue 17)."""

from __future__ import annotations

import httpcore
import httpx
import pytest

import hintpool
from hintpool._exceptions import HintpoolError, to_httpx


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


#: Raised at construction, for a wrong argument: not a request error.
CONSTRUCTION = {hintpool.UnsupportedConfiguration}


@pytest.mark.parametrize(
    "cls",
    sorted(
        {c for c in _subclasses(HintpoolError) if c.__module__.startswith("hintpool")}
        - CONSTRUCTION,
        key=lambda c: c.__name__,
    ),
)
def test_each_request_error_is_an_httpx_transport_error(cls: type) -> None:
    error = cls("what happened")
    mapped = to_httpx(error)
    assert isinstance(mapped, httpx.TransportError), cls
    assert type(mapped).__name__ == cls.__name__ or cls is hintpool.PoolClosed
    assert str(mapped) == "what happened"


def test_each_request_error_is_an_httpcore_error() -> None:
    for cls in set(_subclasses(HintpoolError)) - CONSTRUCTION:
        if cls.__module__.startswith("hintpool") and cls is not hintpool.CloseError:
            assert issubclass(cls, Exception)
            assert any(
                base.__module__.startswith("httpcore") for base in cls.__mro__
            ), cls


def test_pool_closed_is_an_httpx_error_if_raised() -> None:
    # No longer raised (a closed pool stays usable), kept importable; were
    # it raised, httpx users would still catch it.
    error = hintpool.PoolClosed("the pool was closed")
    assert isinstance(error, httpcore.ConnectError)
    assert isinstance(to_httpx(error), httpx.ConnectError)
