"""Scrapy responses from hintpool's, and the size limits' messages."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import httpcore
from scrapy.exceptions import StopDownload
from scrapy.http import Headers, Response
from scrapy.responsetypes import responsetypes

from ._errors import DownloadCancelled

if TYPE_CHECKING:
    from scrapy import Request
    from twisted.internet.ssl import Certificate

__all__ = ["cancel_maxsize", "make_response", "response_fields", "warn_size"]

logger = logging.getLogger("hintpool.contrib.scrapy")


def response_fields(
    response: httpcore.Response, request: Request, headers: Headers
) -> dict[str, Any]:
    stream = response.extensions.get("network_stream")
    ip_address = certificate = None
    if stream is not None:
        server_addr = stream.get_extra_info("server_addr")
        if server_addr:
            ip_address = ipaddress.ip_address(server_addr[0])
        ssl_object = stream.get_extra_info("ssl_object")
        if isinstance(ssl_object, (ssl.SSLObject, ssl.SSLSocket)):
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                certificate = _certificate(der)
    version = response.extensions.get("http_version", b"HTTP/1.1")
    return {
        "url": request.url,
        "status": response.status,
        "headers": headers,
        "certificate": certificate,
        "ip_address": ip_address,
        "protocol": version.decode("ascii", "replace"),
    }


@lru_cache(maxsize=256)
def _certificate(der: bytes) -> Certificate:
    """The server certificate as Scrapy's own handler gives it (Twisted's
    ``Certificate``); connections to one site share it, so parse it once."""
    from OpenSSL.crypto import FILETYPE_ASN1
    from twisted.internet.ssl import Certificate

    return Certificate.load(der, FILETYPE_ASN1)


def make_response(
    fields: dict[str, Any],
    body: bytes,
    flags: list[str] | None = None,
    stop: StopDownload | None = None,
) -> Response:
    respcls = responsetypes.from_args(
        headers=fields["headers"], url=fields["url"], body=body
    )
    response = respcls(body=body, flags=flags, **fields)
    if stop is not None:
        response.flags.append("download_stopped")
        if stop.fail:
            stop.response = response
            raise stop
    return response


def _size_message(
    size: int, limit: int, what: str, request: Request, expected: bool
) -> str:
    prefix = "Expected to receive" if expected else "Received"
    return (
        f"{prefix} {size} bytes which is larger than download {what} "
        f"({limit}) in request {request}."
    )


def cancel_maxsize(size: int, limit: int, request: Request, *, expected: bool) -> None:
    message = _size_message(size, limit, "max size", request, expected)
    logger.warning(message)
    raise DownloadCancelled(message)


def warn_size(size: int, limit: int, request: Request, *, expected: bool) -> None:
    logger.warning(_size_message(size, limit, "warn size", request, expected))
