"""The ``trace`` extension seen the way httpx's ``--verbose`` command line reads it.

httpx 0.28.1's ``tests/test_main.py::test_verbose`` and ``test_auth`` print
each request from trace events alone: the host of
``connection.connect_tcp.started``, ``get_extra_info("server_addr")`` of the
stream in ``connection.connect_tcp.complete``, the request's headers in
``http11.send_request_headers.started`` and the ``(version, status, reason,
headers)`` tuple of ``http11.receive_response_headers.complete``; over TLS
the ``ssl_object`` of ``connection.start_tls.complete``. These tests make the
same reads on both connection classes, without httpx's test files
(``scripts/httpx_suite.py`` runs those).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpx
import pytest
import trustme

import hintpool

from ..fixtures_server import ServerFactory
from ..server import TestServer
from ..tls_helpers import client_context, server_context

Events = list[tuple[str, dict[str, Any]]]


class Recorder:
    """Keeps every event and, like httpx's CLI, reads the streams *during*
    the callback: httpcore's streams answer nothing once closed."""

    def __init__(self) -> None:
        self.events: Events = []
        self.verbose: list[str] = []
        self.tls: dict[str, Any] = {}

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.events.append((name, info))
        self.verbose += verbose_lines(name, info)
        if name == "connection.connect_tcp.complete":
            stream = info["return_value"]
            self.tls["client_addr"] = stream.get_extra_info("client_addr")
        if name == "connection.start_tls.complete":
            ssl_object = info["return_value"].get_extra_info("ssl_object")
            self.tls["version"] = ssl_object.version()
            self.tls["cipher"] = ssl_object.cipher()
            self.tls["peer"] = ssl_object.getpeercert()
            self.tls["alpn"] = ssl_object.selected_alpn_protocol()

    def info(self, name: str) -> dict[str, Any]:
        found = [info for event, info in self.events if event == name]
        assert len(found) == 1, (name, [event for event, _ in self.events])
        return found[0]


def verbose_lines(name: str, info: dict[str, Any]) -> list[str]:
    """What httpx's ``trace(..., verbose=True)`` prints for one event."""
    if name == "connection.connect_tcp.started":
        return [f"* Connecting to {info['host']!r}"]
    if name == "connection.connect_tcp.complete":
        addr = info["return_value"].get_extra_info("server_addr")
        return [f"* Connected to {addr[0]!r} on port {addr[1]}"]
    if name == "http11.send_request_headers.started":
        request = info["request"]
        target = request.url.target.decode("ascii")
        head = f"{request.method.decode('ascii')} {target} HTTP/1.1"
        return [head, *(f"{k.decode()}: {v.decode()}" for k, v in request.headers)]
    if name == "http11.receive_response_headers.complete":
        version, status, reason, headers = info["return_value"]
        head = f"{version.decode()} {status} {reason.decode()}"
        return [head, *(f"{k.decode()}: {v.decode()}" for k, v in headers)]
    return []


async def traced_get(url: str, **client_kwargs: Any) -> tuple[Recorder, httpx.Response]:
    recorder = Recorder()
    transport = hintpool.AsyncHTTPTransport(verify=client_kwargs.pop("verify", True))
    async with httpx.AsyncClient(transport=transport, **client_kwargs) as client:
        response = await client.get(url, extensions={"trace": recorder})
    return recorder, response


@pytest.mark.anyio
async def test_verbose_output_with_auth(server: TestServer) -> None:
    recorder, response = await traced_get(
        server.url + "/", auth=("username", "password")
    )
    assert response.status_code == 200
    port = int(server.url.rsplit(":", 1)[1])
    sent = response.request.headers
    assert recorder.verbose == [
        "* Connecting to '127.0.0.1'",
        f"* Connected to '127.0.0.1' on port {port}",
        "GET / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Accept: {sent['accept']}",
        f"Accept-Encoding: {sent['accept-encoding']}",
        "Connection: keep-alive",
        f"User-Agent: python-httpx/{httpx.__version__}",
        "Authorization: Basic dXNlcm5hbWU6cGFzc3dvcmQ=",
        "HTTP/1.1 200 OK",
        # The server's own spelling: the CLI prints raw header names.
        *[f"{k.decode()}: {v.decode()}" for k, v in response.headers.raw],
    ]


@pytest.mark.anyio
async def test_connect_tcp_arguments_are_httpcores(server: TestServer) -> None:
    recorder, _ = await traced_get(server.url + "/")
    started = recorder.info("connection.connect_tcp.started")
    port = int(server.url.rsplit(":", 1)[1])
    assert started["host"] == "127.0.0.1"
    assert started["port"] == port
    assert set(started) == {
        "host",
        "port",
        "local_address",
        "timeout",
        "socket_options",
    }
    assert recorder.tls["client_addr"][0] == "127.0.0.1"


@pytest.mark.anyio
async def test_tls_details_for_the_verbose_output(
    server_factory: ServerFactory,
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    srv = server_factory(tls=server_context(cert, "TLSv1.3"))
    verify: ssl.SSLContext = client_context(ca)
    recorder, response = await traced_get(srv.url + "/", verify=verify)
    assert response.status_code == 200
    started = recorder.info("connection.start_tls.started")
    assert set(started) == {"ssl_context", "server_hostname", "timeout"}
    tls = recorder.tls
    assert tls["version"] == "TLSv1.3"
    assert tls["cipher"][0]
    assert tls["peer"]["subjectAltName"] == (("IP Address", "127.0.0.1"),)
    assert tls["alpn"] in (None, "http/1.1")


async def httpcore_log(
    transport: Any, url: str, caplog: pytest.LogCaptureFixture
) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="httpcore"):
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(url)
    return [
        f"{r.name} {r.getMessage()}"
        for r in caplog.records
        # httpcore logs its connection's close without a request: hintpool's
        # pool closes connections itself (and logs that as "hintpool").
        if r.name.startswith("httpcore.") and not r.getMessage().startswith("close.")
    ]


@pytest.mark.anyio
async def test_debug_log_lines_are_httpcores(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = await httpcore_log(httpx.AsyncHTTPTransport(), server.url, caplog)
    ours = await httpcore_log(hintpool.AsyncHTTPTransport(), server.url, caplog)
    assert len(theirs) == 12  # connect_tcp, then 5 http11 steps
    # Object reprs differ (the network stream is hintpool's own): compare
    # those lines up to the object.
    assert [line.split("=<")[0] for line in ours] == [
        line.split("=<")[0] for line in theirs
    ]
