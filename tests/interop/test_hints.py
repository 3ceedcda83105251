"""The Keep-Alive hint is parsed as each real server sends it."""

from __future__ import annotations

import pytest

from hintpool import parse_keep_alive

from .conftest import StartServer
from .helpers import (
    HINTING,
    HINTLESS,
    expected_first_hint,
    origin_stats,
    requests_per_connection,
    spec_for,
    sync_client,
)
from .servers import ServerSpec
from .servers.probe import ProbeConnection

pytestmark = pytest.mark.interop

ALL = (*HINTING, *HINTLESS)


@pytest.mark.parametrize("kind", ALL)
def test_hint_parsed_as_sent(real_servers: StartServer, kind: str) -> None:
    spec = spec_for(kind)
    server = real_servers(spec)
    per_connection = requests_per_connection(spec) or 3
    client, transport = sync_client()
    with client:
        for index in range(per_connection):
            response = client.get(f"{server.url}/hints/{index}")
            assert response.status_code == 200
            raw = response.headers.get("keep-alive")
            stats = origin_stats(transport, server)
            if raw is not None:
                assert stats.last_hint == parse_keep_alive(raw.encode())
            if index == 0:
                assert parse_keep_alive((raw or "").encode()) == (
                    expected_first_hint(spec)
                )
            if kind == "apache" and raw is not None:
                # Apache counts max down on every response of a connection.
                assert stats.last_hint is not None
                assert stats.last_hint.max == spec.max_requests - index  # type: ignore[operator]
        if kind in HINTLESS:
            assert origin_stats(transport, server).last_hint is None


def test_apache_hints_only_when_asked(real_servers: StartServer) -> None:
    """Apache announces its limits only to ``Connection: keep-alive``
    requests -- the reason hintpool adds that header."""
    server = real_servers(spec_for("apache"))
    with ProbeConnection(server.host, server.port) as conn:
        assert conn.request("/plain", keep_alive=False).keep_alive_header is None
        assert conn.request("/asked").keep_alive_header == "timeout=2, max=2"


@pytest.mark.parametrize("hint", [True, False])
def test_nginx_hints_only_with_second_parameter(
    real_servers: StartServer, hint: bool
) -> None:
    server = real_servers(ServerSpec("nginx", idle_timeout=2.0, hint=hint))
    client, _transport = sync_client()
    with client:
        response = client.get(f"{server.url}/nginx-hint")
    expected = "timeout=2" if hint else None
    assert response.headers.get("keep-alive") == expected
