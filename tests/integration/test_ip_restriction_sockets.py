"""ip_restriction over real sockets: clients connect from different loopback addresses
(127.0.0.1, 127.0.0.2, and ::1 where there is one); a trusted proxy (127.0.0.3) names the
client in X-Forwarded-For. A refusal is fastgw's JSON error, 403 `ip_forbidden`."""

from __future__ import annotations

import socket
from typing import Any

import pytest

PROXY = "127.0.0.3"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = ipv6_loopback()


@pytest.fixture(scope="module")
def gw(module_gateway: Any, module_upstream: Any) -> Any:
    up = module_upstream("echo", name="be")
    listen = ["127.0.0.1:0"] + (["[::1]:0"] if IPV6 else [])
    return module_gateway(
        listen=listen,
        trusted_proxies=[f"{PROXY}/32"],
        routes=[
            module_gateway.route(
                "allow",
                ["/allow"],
                "be",
                policies=[
                    {
                        "ip_restriction": {
                            "allow": ["127.0.0.1", "10.0.0.0/8"],
                            "deny": ["10.9.0.0/16"],
                        }
                    }
                ],
            ),
            module_gateway.route(
                "deny", ["/deny"], "be", policies=[{"ip_restriction": {"deny": ["127.0.0.2"]}}]
            ),
            module_gateway.route(
                "v6",
                ["/v6"],
                "be",
                policies=[{"ip_restriction": {"allow": ["::1/128", "127.0.0.0/8"]}}],
            ),
            module_gateway.route("open", ["/open"], "be"),
        ],
        upstreams={"be": up},
    )


def get(http: Any, gw: Any, path: str, source: str, xff: str | None = None) -> Any:
    host, port = gw.addresses[1] if ":" in source else gw.addresses[0]
    headers = [("X-Forwarded-For", xff)] if xff is not None else []
    with http.RawClient(host, port, source=source) as client:
        return client.request("GET", path, headers)


def assert_forbidden(response: Any) -> None:
    assert response.status == 403, response
    error = response.error()
    assert error["code"] == "ip_forbidden"
    assert error["message"] == "the client address is not allowed here"


@pytest.mark.parametrize(
    ("path", "source", "passes"),
    [
        ("/allow", "127.0.0.1", True),
        ("/allow", "127.0.0.2", False),
        ("/deny", "127.0.0.1", True),
        ("/deny", "127.0.0.2", False),
        ("/v6", "127.0.0.2", True),
        ("/open", "127.0.0.2", True),
    ],
)
def test_peer_address(http: Any, gw: Any, path: str, source: str, passes: bool) -> None:
    response = get(http, gw, path, source)
    if passes:
        assert response.status == 200, response
    else:
        assert_forbidden(response)


@pytest.mark.parametrize(
    ("xff", "passes"),
    [
        ("10.1.2.3", True),
        ("192.0.2.1, 10.1.2.3", True),  # the rightmost untrusted hop is the client
        ("10.9.0.1", False),  # deny wins over allow
        ("192.0.2.1", False),  # not in allow
        ("::ffff:10.1.2.3", True),  # IPv4-mapped IPv6 matches IPv4 rules
        ("::ffff:10.9.1.1", False),
        ("not-an-address", False),
    ],
)
def test_client_named_by_a_trusted_proxy(http: Any, gw: Any, xff: str, passes: bool) -> None:
    response = get(http, gw, "/allow", PROXY, xff)
    if passes:
        assert response.status == 200, response
    else:
        assert_forbidden(response)


def test_untrusted_peer_cannot_claim_an_address(http: Any, gw: Any) -> None:
    assert_forbidden(get(http, gw, "/allow", "127.0.0.2", "10.1.2.3"))
    # And a trusted proxy's own address is not the client once it names one.
    assert_forbidden(get(http, gw, "/deny", PROXY, "127.0.0.2"))
    assert get(http, gw, "/deny", PROXY, "127.0.0.1").status == 200


def test_refusal_keeps_the_connection(http: Any, gw: Any) -> None:
    host, port = gw.addresses[0]
    with http.RawClient(host, port, source="127.0.0.2") as client:
        assert_forbidden(client.request("GET", "/allow"))
        assert client.request("GET", "/open").status == 200


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback")
def test_ipv6_peer(http: Any, gw: Any) -> None:
    assert get(http, gw, "/v6", "::1").status == 200
    assert_forbidden(get(http, gw, "/allow", "::1"))
    assert get(http, gw, "/deny", "::1").status == 200
