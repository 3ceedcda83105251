"""The SOCKS5 handshake (RFC 1928, RFC 1929), sans-I/O, on ``socksio``.

``socksio`` (an optional dependency: ``hintpool[socks]``) builds the
requests and parses the replies; this module decides how many bytes each
reply has, so a reply split across reads is whole before it is parsed, and
turns a refusal into a :class:`~hintpool.ProxyError` that names the reply
code. ``hintpool._async.tunnel`` does the reads and writes.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final

import anyio

from ._exceptions import ConnectError, ProxyError

__all__ = [
    "AUTH_REPLY_SIZE",
    "REPLY_HEAD_SIZE",
    "async_resolve",
    "auth_methods_request",
    "check_auth_reply",
    "check_command_reply",
    "check_password_reply",
    "command_request",
    "password_request",
    "reply_size",
    "resolve",
]

#: Method selection and username/password replies: two bytes.
AUTH_REPLY_SIZE: Final = 2
#: VER REP RSV ATYP and the first address byte (a domain's length).
REPLY_HEAD_SIZE: Final = 5
_ADDRESS_SIZES: Final = {1: 4, 4: 16}
_NO_AUTH: Final = b"\x00"
_PASSWORD: Final = b"\x02"

_REPLY_TEXT: Final = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


def auth_methods_request(with_password: bool) -> bytes:
    from socksio import socks5

    method = (
        socks5.SOCKS5AuthMethod.USERNAME_PASSWORD
        if with_password
        else socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED
    )
    return socks5.SOCKS5AuthMethodsRequest([method]).dumps()


def check_auth_reply(data: bytes, with_password: bool, label: str) -> None:
    wanted = _PASSWORD if with_password else _NO_AUTH
    if data[:1] != b"\x05":
        raise ProxyError(f"proxy {label} does not speak SOCKS5: {data!r}")
    if data[1:2] != wanted:
        how = "username/password" if with_password else "no authentication"
        raise ProxyError(f"SOCKS5 proxy {label} refused {how} (method {data[1:2]!r})")


def password_request(username: bytes, password: bytes) -> bytes:
    from socksio import socks5

    return socks5.SOCKS5UsernamePasswordRequest(username, password).dumps()


def check_password_reply(data: bytes, label: str) -> None:
    # RFC 1929: VER is 1; STATUS 0 is success.
    if data[1:2] != b"\x00":
        raise ProxyError(f"SOCKS5 proxy {label} refused the username and password")


def command_request(host: str, port: int) -> bytes:
    """CONNECT to ``host`` (an IP address, or a name the proxy resolves)."""
    from socksio import socks5

    return socks5.SOCKS5CommandRequest.from_address(
        socks5.SOCKS5Command.CONNECT, (host, port)
    ).dumps()


def reply_size(head: bytes, target: str, label: str) -> int:
    """The whole reply's size from its first ``REPLY_HEAD_SIZE`` bytes.

    Raises ProxyError for a refusal or an address type RFC 1928 lacks.
    """
    if head[:1] != b"\x05":
        raise ProxyError(f"proxy {label} answered CONNECT {target} with {head!r}")
    code = head[1]
    if code != 0:
        text = _REPLY_TEXT.get(code, "unknown reply code")
        raise ProxyError(
            f"SOCKS5 proxy {label} refused CONNECT {target}: {text} (0x{code:02x})"
        )
    atype = head[3]
    if atype == 3:
        return 4 + 1 + head[4] + 2
    size = _ADDRESS_SIZES.get(atype)
    if size is None:
        raise ProxyError(
            f"SOCKS5 proxy {label} answered CONNECT {target} with an unknown "
            f"address type 0x{atype:02x}"
        )
    return 4 + size + 2


def check_command_reply(data: bytes, target: str, label: str) -> None:
    from socksio import socks5
    from socksio.exceptions import ProtocolError

    try:
        socks5.SOCKS5Reply.loads(data)
    except ProtocolError as exc:
        raise ProxyError(
            f"SOCKS5 proxy {label} answered CONNECT {target} with a malformed reply"
        ) from exc


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def async_resolve(host: str, port: int) -> str:
    """An IP address of ``host`` (``socks5://`` resolves names locally)."""
    if _is_ip(host):
        return host
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return str(infos[0][4][0])


def resolve(host: str, port: int) -> str:
    """Sync twin of :func:`async_resolve`."""
    if _is_ip(host):
        return host
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return str(infos[0][4][0])
