"""Routes with header and query conditions, through a real gateway: a canary split on one
path, a query-selected version, and the fallback when no condition holds."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def stack(module_upstream: Any, module_gateway: Any, http: Any) -> Any:
    stable = module_upstream("echo", name="stable")
    canary = module_upstream("echo", name="canary")
    v2 = module_upstream("echo", name="v2")
    return module_gateway(
        routes=[
            http.route("stable", ["/api/{*rest}"], "stable"),
            http.route("canary", ["/api/{*rest}"], "canary", headers={"x-canary": "always"}),
            http.route("v2", ["/api/{*rest}"], "v2", query={"version": "2"}, methods=["GET"]),
            http.route("keyed", ["/keyed"], "stable", headers={"x-key": "*"}),
        ],
        upstreams={"stable": stable, "canary": canary, "v2": v2},
    )


@pytest.mark.parametrize(
    ("method", "target", "headers", "served_by"),
    [
        pytest.param("GET", "/api/a", [], "stable", id="no-condition-fallback"),
        pytest.param("GET", "/api/a", [("X-Canary", "always")], "canary", id="header-canary"),
        pytest.param("GET", "/api/a", [("x-canary", "never")], "stable", id="other-value"),
        pytest.param("GET", "/api/a?x=1&version=2", [], "v2", id="query-version"),
        pytest.param("POST", "/api/a?version=2", [], "stable", id="condition-and-method"),
        pytest.param("GET", "/api/a?version=20", [], "stable", id="query-value-exact"),
        pytest.param("GET", "/keyed", [("x-key", "anything")], "stable", id="presence-only"),
    ],
)
def test_conditions_choose_the_route(
    stack: Any, method: str, target: str, headers: list[tuple[str, str]], served_by: str
) -> None:
    response = stack.request(method, target, headers)
    assert response.status == 200
    assert response.json()["upstream"] == served_by


def test_unmet_condition_without_fallback_is_404(stack: Any) -> None:
    response = stack.request("GET", "/keyed")
    assert response.status == 404
    assert response.error()["code"] == "route_not_found"
