"""Testing a policy with fastgw.testing: real requests through a real gateway on loopback.

Run it with `pytest examples/test_custom_policy.py` (from the repository root, so that
`examples.custom_policy` imports).
"""

from __future__ import annotations

from fastgw.testing import run_policy_sync

pytest_plugins = ["fastgw.testing"]

GUARD = "examples.custom_policy:TenantGuard"


def test_unknown_tenant_is_refused() -> None:
    result = run_policy_sync({GUARD: {"allow": ["acme"]}}, headers={"x-tenant": "initech"})
    assert result.status == 403
    assert result.json()["error"]["code"] == "tenant_not_allowed"
    assert result.upstream_request is None  # the policy answered; the upstream saw nothing


def test_allowed_tenant_reaches_the_upstream() -> None:
    result = run_policy_sync({GUARD: {"allow": ["acme"]}}, "GET", "/orders", {"x-tenant": "acme"})
    assert result.status == 200
    assert result.upstream_request is not None
    assert result.upstream_request.path == "/orders"
    assert result.upstream_request.headers["x-tenant-verified"] == "acme"


def test_a_whole_config(fastgw_upstream, fastgw_gateway) -> None:
    gw = fastgw_gateway(
        {
            "upstreams": {"app": {"targets": [{"url": fastgw_upstream.url}]}},
            "routes": [
                {
                    "name": "orders",
                    "match": {"paths": ["/orders/{id}"]},
                    "upstream": "app",
                    "policies": [{GUARD: {"allow": ["acme"]}}],
                }
            ],
        }
    )
    assert gw.request("GET", "/orders/7", headers={"x-tenant": "acme"}).status == 200
    assert gw.request("GET", "/orders/7").status == 403
    assert gw.request("GET", "/nowhere").status == 404
    assert [r.path for r in fastgw_upstream.requests] == ["/orders/7"]
