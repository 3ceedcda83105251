"""HTTP/2 switches shared by the pools and the transports.

The ``h2`` package is optional (the ``hintpool[http2]`` extra, as httpx has
``httpx[http2]``): it is imported only when a pool is built with
``http2=True``, and its absence is reported there, naming the extra.
"""

from __future__ import annotations

__all__ = ["alpn_protocols", "require_h2"]


def alpn_protocols(http1: bool, http2: bool) -> list[str]:
    """What a TLS connection offers by ALPN: h2 only when HTTP/2 is on."""
    protocols = []
    if http2:
        protocols.append("h2")
    if http1 or not http2:
        protocols.append("http/1.1")
    return protocols


def require_h2() -> None:
    """Raise ImportError naming the extra when ``h2`` is not installed."""
    try:
        import h2  # noqa: F401
    except ImportError:
        raise ImportError(
            "Using http2=True, but the 'h2' package is not installed. "
            "Make sure to install hintpool using `pip install hintpool[http2]`."
        ) from None
