"""PROXY protocol listeners over real sockets: a raw client plays the load balancer.

The balancer is a peer in trusted_proxies (the client socket is bound to 127.0.0.2); a
client connecting from 127.0.0.1 is not trusted. What the upstream receives and what the
access log says show which address the gateway took for the client.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

BALANCER = "127.0.0.2"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: str, port: int = 40000) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {port} 8080\r\n".encode()


def v2(source: str, port: int = 40000, command: int = 1, tlvs: bytes = b"") -> bytes:
    if ":" in source:
        family, addresses = 0x21, socket.inet_pton(socket.AF_INET6, source) + bytes(16)
    else:
        family, addresses = 0x11, socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
    body = addresses + struct.pack(">HH", port, 8080) + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


def read_log(path: Path, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, f"{len(lines)} of {count} access log lines"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(module_gateway: Any, module_upstream: Any, tmp_path_factory: Any) -> Any:
    up = module_upstream("echo", name="be")
    log = tmp_path_factory.mktemp("pp") / "access.log"
    proc = module_gateway(
        listen=[
            {"address": "127.0.0.1:0", "proxy_protocol": True},
            "127.0.0.1:0",
        ],
        trusted_proxies=[f"{BALANCER}/32", "10.0.0.0/8"],
        timeouts={"client_header": "1s"},
        routes=[module_gateway.route("all", ["/{*rest}"], "be")],
        upstreams={"be": up},
        access_log={"path": str(log), "flush_interval": "50ms"},
    )

    class Stack:
        gateway = proc
        upstream = up
        access_log = log
        proxy_port = proc.addresses[0][1]
        plain_port = proc.addresses[1][1]

    return Stack


def send(http: Any, port: int, data: bytes, source: str = BALANCER, pieces: int = 1) -> Any:
    """Send `data` (in `pieces` writes) from `source`; the response, or None if closed."""
    with http.RawClient("127.0.0.1", port, source=source) as client:
        step = max(1, len(data) // pieces)
        for start in range(0, len(data), step):
            client.send(data[start : start + step])
            if pieces > 1:
                time.sleep(0.02)
        try:
            return client.read_final()
        except http.IncompleteResponse:
            assert client.wait_closed(2.0)
            return None


def forwarded_for(stack: Any, request_id: str) -> tuple[str | None, str]:
    """X-Forwarded-For the upstream got for `request_id`, and the access log's client_ip."""
    (seen,) = [r for r in stack.upstream.requests if r.header("x-request-id") == request_id]
    lines = []
    deadline = time.monotonic() + 5
    while not lines:
        assert time.monotonic() < deadline, "no access log line"
        lines = [
            line for line in read_log(stack.access_log, 1) if line.get("request_id") == request_id
        ]
        time.sleep(0.02)
    return seen.header("x-forwarded-for"), lines[0]["client_ip"]


HEADERS = [
    ("v1-tcp4", v1("203.0.113.7"), "203.0.113.7"),
    ("v1-tcp6", v1("2001:db8::7"), "2001:db8::7"),
    ("v2-tcp4", v2("198.51.100.20"), "198.51.100.20"),
    ("v2-tcp6", v2("2001:db8:0:0::20"), "2001:db8::20"),
    ("v2-tlvs", v2("192.0.2.33", tlvs=b"\x01\x00\x02h2\x04\x00\x00"), "192.0.2.33"),
    ("v1-unknown", b"PROXY UNKNOWN\r\n", BALANCER),
    ("v2-local", v2("192.0.2.99", command=0), BALANCER),
]


@pytest.mark.parametrize(
    ("header", "client"), [c[1:] for c in HEADERS], ids=[c[0] for c in HEADERS]
)
@pytest.mark.parametrize("pieces", [1, 5], ids=["one-write", "split"])
def test_header_address_is_the_client(stack, http, header, client, pieces) -> None:
    request_id = f"pp-{abs(hash((header, pieces)))}"
    request = http.build_request("GET", "/who", [("X-Request-Id", request_id)])
    resp = send(http, stack.proxy_port, header + request, pieces=pieces)
    assert resp is not None and resp.status == 200
    assert forwarded_for(stack, request_id) == (client, client)


def test_keep_alive_requests_keep_the_header_address(stack, http) -> None:
    with http.RawClient("127.0.0.1", stack.proxy_port, source=BALANCER) as conn:
        conn.send(v1("203.0.113.50"))
        for i in range(3):
            assert conn.request("GET", "/ka", [("X-Request-Id", f"ka-{i}")]).status == 200
    for i in range(3):
        assert forwarded_for(stack, f"ka-{i}") == ("203.0.113.50", "203.0.113.50")


def test_forwarded_for_is_believed_only_from_a_trusted_header_address(stack, http) -> None:
    # The header's address is the hop X-Forwarded-For rules judge: a trusted one (10/8,
    # another proxy) passes the client's X-Forwarded-For on, an untrusted one does not.
    xff = [("X-Forwarded-For", "198.51.100.9")]
    for source, request_id in (("10.1.2.3", "xff-trusted"), ("203.0.113.8", "xff-untrusted")):
        request = http.build_request("GET", "/xff", [*xff, ("X-Request-Id", request_id)])
        assert send(http, stack.proxy_port, v1(source) + request).status == 200
    assert forwarded_for(stack, "xff-trusted") == ("198.51.100.9, 10.1.2.3", "198.51.100.9")
    assert forwarded_for(stack, "xff-untrusted") == ("203.0.113.8", "203.0.113.8")


CLOSED = [
    ("trusted-without-header", BALANCER, b""),
    ("malformed-v1", BALANCER, b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 80\r\n"),
    ("malformed-v2", BALANCER, V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12)),
    ("oversized-v1", BALANCER, b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n"),
    ("untrusted-v1", "127.0.0.1", v1("203.0.113.7")),
    ("untrusted-v2", "127.0.0.1", v2("203.0.113.7")),
]


@pytest.mark.parametrize(("source", "header"), [c[1:] for c in CLOSED], ids=[c[0] for c in CLOSED])
def test_bad_or_untrusted_header_closes_and_forwards_nothing(stack, http, source, header) -> None:
    before = len(stack.upstream.requests)
    request = http.build_request("GET", "/never", [("X-Request-Id", "never")])
    assert send(http, stack.proxy_port, header + request, source=source) is None
    assert len(stack.upstream.requests) == before


def test_refusals_are_counted_and_logged(gateway, upstream, http) -> None:
    proc = gateway(
        listen=[{"address": "127.0.0.1:0", "proxy_protocol": True}],
        trusted_proxies=[f"{BALANCER}/32"],
        admin={"listen": "127.0.0.1:0"},
        routes=[gateway.route("all", ["/{*rest}"], "be")],
        upstreams={"be": upstream("echo")},
    )
    request = http.build_request("GET", "/never")
    assert send(http, proc.port, v2("203.0.113.7") + request, source="127.0.0.1") is None
    assert send(http, proc.port, b"PROXY TCP4 1.2.3.4\r\n" + request) is None
    deadline = time.monotonic() + 5
    while "closed a connection" not in proc.stderr:
        assert time.monotonic() < deadline, proc.stderr
        time.sleep(0.02)
    assert (
        "closed a connection from 127.0.0.1: PROXY header from a peer not in trusted_proxies"
        in proc.stderr
    )
    admin = re.search(r"fastgw admin on http://[0-9.]+:(\d+)", proc.stdout)
    assert admin is not None, proc.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{admin.group(1)}/metrics") as resp:
        text = resp.read().decode()
    assert 'fastgw_proxy_protocol_rejected_total{reason="refused"} 1.0' in text
    assert 'fastgw_proxy_protocol_rejected_total{reason="invalid"} 1.0' in text


def test_untrusted_plain_http_is_a_direct_client(stack, http) -> None:
    headers = [("X-Request-Id", "direct"), ("X-Forwarded-For", "192.0.2.1")]
    request = http.build_request("GET", "/direct", headers)
    assert send(http, stack.proxy_port, request, source="127.0.0.1").status == 200
    assert forwarded_for(stack, "direct") == ("127.0.0.1", "127.0.0.1")


def test_plain_listener_does_not_read_proxy_headers(stack, http) -> None:
    request = http.build_request("GET", "/plain", [("X-Request-Id", "plain")])
    assert send(http, stack.plain_port, request).status == 200
    assert forwarded_for(stack, "plain") == (BALANCER, BALANCER)
    resp = send(http, stack.plain_port, v1("203.0.113.7") + request)
    assert resp is None or resp.status == 400


def test_slow_header_is_closed_after_client_header(stack, http) -> None:
    with http.RawClient("127.0.0.1", stack.proxy_port, timeout=5, source=BALANCER) as conn:
        conn.send(b"PROXY TCP4 203.0.113.7")
        started = time.monotonic()
        assert conn.wait_closed(4.0)
        assert time.monotonic() - started < 3.0
        assert conn.buf == b""


def test_rate_limit_keys_are_the_header_address(gateway, upstream, http) -> None:
    proc = gateway(
        listen=[{"address": "127.0.0.1:0", "proxy_protocol": True}],
        trusted_proxies=[f"{BALANCER}/32"],
        routes=[
            gateway.route(
                "all",
                ["/{*rest}"],
                "be",
                policies=[
                    {"rate_limit": {"key": "client_ip", "limits": [{"rate": 1, "per": "1m"}]}}
                ],
            )
        ],
        upstreams={"be": upstream("echo")},
    )
    request = http.build_request("GET", "/limited")
    statuses = [
        send(http, proc.port, v1(client) + request).status
        for client in ("203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2")
    ]
    # One bucket per client the balancer names, not one for the balancer.
    assert statuses == [200, 429, 200, 429]
