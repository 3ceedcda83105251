"""Throw-away TLS certificates for the local servers (trustme, the cli extra)."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LocalTLS", "local_tls"]


@dataclass(frozen=True)
class LocalTLS:
    """A server context for *hosts* and a way to make client contexts trusting it."""

    server_context: ssl.SSLContext
    _ca: Any

    def client_context(self) -> ssl.SSLContext:
        """A new client context that trusts the local CA (one per client)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(ctx)
        return ctx


def local_tls(hosts: Sequence[str]) -> LocalTLS:
    """Make a CA and a certificate for *hosts* (names or IP addresses).

    Raises ImportError when trustme is not installed.
    """
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(server_context)
    return LocalTLS(server_context, ca)
