"""The listener seam: fastgw.runtime.listeners opens every socket, an Endpoint serves it.

A second endpoint, defined here only, serves the same sockets with a TLS context: the core's
protocol runs unchanged behind it, which is where TLS listeners will attach.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from fastgw import Gateway, GatewayError
from fastgw.config import Listener
from fastgw.runtime.listeners import (
    LISTEN_BACKLOG,
    Endpoint,
    ProtocolFactory,
    TcpEndpoint,
    endpoint_for,
    open_socket,
    refuse_if_served,
)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


class TlsEndpoint:
    """Test-only: the same sockets, served through a TLS context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.served: list[socket.socket] = []

    async def serve(
        self, sock: socket.socket, protocol_factory: ProtocolFactory
    ) -> asyncio.AbstractServer:
        self.served.append(sock)
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            protocol_factory, sock=sock, ssl=self.context, backlog=LISTEN_BACKLOG
        )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_plain_tcp_is_the_default_endpoint() -> None:
    endpoint: Endpoint = endpoint_for(Listener(address="127.0.0.1:0"))
    assert isinstance(endpoint, TcpEndpoint)


def test_a_second_endpoint_serves_the_core_protocol_over_tls(
    upstream: Any, http: Any, certificate: tuple[Path, Path]
) -> None:
    up = upstream("echo", name="A")
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    config = http.gateway_config(
        routes=[http.route("main", ["/r/{*rest}"], "main")], upstreams={"main": up}
    )
    tls = TlsEndpoint(server_context)

    def fetch_tls(address: tuple[str, int], path: str) -> Any:
        client = http.RawClient(*address)
        client.sock = client_context.wrap_socket(client.sock, server_hostname="localhost")
        with client:
            return client.request("GET", path)

    async def main() -> None:
        gw = Gateway(config, endpoint_for=lambda listener: tls)
        await gw.start()
        try:
            (address,) = gw.addresses
            first = await asyncio.to_thread(fetch_tls, address, "/r/one")
            second = await asyncio.to_thread(fetch_tls, address, "/r/two?x=1")
        finally:
            await gw.stop()
        assert (first.status, second.status) == (200, 200)
        assert second.json()["target"] == "/r/two?x=1"
        assert len(tls.served) == 1

    run(main())
    assert [r.target for r in up.requests] == ["/r/one", "/r/two?x=1"]


def test_open_socket_refuses_a_served_address() -> None:
    with open_socket("127.0.0.1", 0, "127.0.0.1:0") as first:
        port = first.getsockname()[1]
        with pytest.raises(GatewayError, match=f"cannot listen on here:{port}: address already"):
            open_socket("127.0.0.1", port, f"here:{port}")
        with pytest.raises(GatewayError, match="address already in use"):
            refuse_if_served("127.0.0.1", port, f"127.0.0.1:{port}")


def test_reuse_port_sockets_share_a_port_but_the_probe_sees_them() -> None:
    with open_socket("127.0.0.1", 0, "127.0.0.1:0", reuse_port=True) as first:
        port = first.getsockname()[1]
        with open_socket("127.0.0.1", port, f"127.0.0.1:{port}", reuse_port=True) as second:
            assert second.getsockname()[1] == port
            with pytest.raises(GatewayError, match="address already in use"):
                refuse_if_served("127.0.0.1", port, f"127.0.0.1:{port}")
    refuse_if_served("127.0.0.1", port, f"127.0.0.1:{port}")  # free again


def test_embedded_gateway_on_a_served_port_fails_cleanly(upstream: Any, http: Any) -> None:
    up = upstream("echo")
    with open_socket("127.0.0.1", 0, "127.0.0.1:0") as taken:
        port = taken.getsockname()[1]
        config = http.gateway_config(
            routes=[http.route("main", ["/{*rest}"], "main")], upstreams={"main": up}
        )
        config["listen"] = ["127.0.0.1:0", f"127.0.0.1:{port}"]

        async def main() -> None:
            gw = Gateway(config)
            with pytest.raises(GatewayError, match=f"cannot listen on 127.0.0.1:{port}: "):
                await gw.start()
            assert gw.engine is None and gw.addresses == []

        run(main())
