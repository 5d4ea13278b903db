"""An idle client connection costs little: the gateway makes a connection's parser and
exchange only when its first request begins (docs/architecture.md, "A request")."""

from __future__ import annotations

import socket
import time

IDLE = 800
# Each idle connection holds its protocol object and uvloop's transport only: about 1.2 KiB
# here. With a parser and an exchange made up front it was about 7.4 KiB.
MAX_BYTES_PER_IDLE = 3072


def test_idle_connections_cost_no_parser_and_still_serve(upstream, gateway, http) -> None:
    up = upstream("fixed", body=b"ok")
    gw = gateway(routes=[http.route("all", ["/{*rest}"], "up")], upstreams={"up": up})
    with http.RawClient(gw.host, gw.port) as client:  # warm the allocator and the upstream
        assert client.request("GET", "/warm").status == 200
    time.sleep(0.2)
    before = gw.rss_bytes()
    socks = [socket.create_connection((gw.host, gw.port), timeout=10) for _ in range(IDLE)]
    try:
        # Until the gateway has accepted them all: its RSS stops growing.
        last, deadline = -1, time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = gw.rss_bytes()
            if now == last:
                break
            last = now
        per_connection = (last - before) / IDLE
        assert per_connection < MAX_BYTES_PER_IDLE, f"{per_connection:.0f} B per idle connection"
        # They are real connections: each gets its answer once it asks.
        for sock in socks:
            sock.sendall(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in socks:
            data = b""
            while not data.endswith(b"ok"):
                chunk = sock.recv(65536)
                assert chunk, f"closed after {data!r}"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks:
            sock.close()
