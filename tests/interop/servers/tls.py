"""trustme certificates for the TLS variants, written where servers read them."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

from .launch import TLSFiles

__all__ = ["client_context", "write_tls_files"]

#: The name in the leaf certificate; clients connect to this IP address.
CERT_NAMES = ("127.0.0.1", "localhost")


def write_tls_files(ca: trustme.CA, directory: Path) -> TLSFiles:
    cert = ca.issue_cert(*CERT_NAMES)
    files = TLSFiles(directory / "server-chain.pem", directory / "server-key.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(str(files.cert_chain))
    cert.private_key_pem.write_to_path(str(files.private_key))
    return files


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx
