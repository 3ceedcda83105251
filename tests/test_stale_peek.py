"""What an idle HTTP/2 socket holds, told apart by a peek: real TLS records
from ssl's own MemoryBIO ends, for both TLS versions a server may pick."""

from __future__ import annotations

import contextlib
import ssl

import pytest
import trustme

from hintpool._stale import _ends

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PING = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + bytes(8)


def _server_records(version: ssl.TLSVersion, ca: trustme.CA) -> dict[str, bytes]:
    """The records a server's TLS sends for each of the idle events."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    for ctx in (server_ctx, client_ctx):
        ctx.minimum_version = ctx.maximum_version = version
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(5):  # bounded: a handshake takes two round trips
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert client.version() == server.version()
    s_out.read()  # session tickets: sent right after the handshake
    records = {}
    for name, frame in (("settings", EMPTY_SETTINGS), ("ping", PING)):
        server.write(frame)
        records[name] = s_out.read()
    with pytest.raises(ssl.SSLWantReadError):
        server.unwrap()  # sends close_notify, then waits for the client's
    records["close_notify"] = s_out.read()
    return records


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("version", VERSIONS, ids=["TLSv1.2", "TLSv1.3"])
def test_a_close_notify_ends_but_frames_do_not(
    version: ssl.TLSVersion, ca: trustme.CA
) -> None:
    records = _server_records(version, ca)
    assert _ends(records["close_notify"])
    assert not _ends(records["settings"])
    assert not _ends(records["ping"])
    # A frame and an alert together: the next request reads both.
    assert not _ends(records["ping"] + records["close_notify"])


def test_plain_frames_end_only_with_a_goaway() -> None:
    goaway = b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + bytes(8)
    assert _ends(b"")
    assert not _ends(EMPTY_SETTINGS + PING)
    assert _ends(PING + goaway)
