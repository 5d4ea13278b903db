"""Config -> Plan: errors only the compiled router can find, rewrites, describe and explain."""

from __future__ import annotations

from typing import Any

import pytest

from fastgw.config import parse_config
from fastgw.errors import ConfigError
from fastgw.plan import build_plan


def config(*routes: dict[str, Any]) -> dict[str, Any]:
    return {
        "upstreams": {"backend": {"targets": [{"url": "http://127.0.0.1:9001"}]}},
        "routes": list(routes),
    }


def route(name: str, paths: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"paths": paths, **extra.pop("match", {})},
        "upstream": "backend",
        **extra,
    }


PLAN_ERRORS = [
    pytest.param(
        [route("a", ["/users/{id}"]), route("b", ["/users/{user}"])],
        "$.routes[1]",
        "can never match",
        id="same-pattern-later-route-shadowed",
    ),
    pytest.param(
        [
            route("a", ["/users/{id}"], match={"methods": ["GET"]}),
            route("b", ["/users/{id}"], match={"methods": ["GET"]}),
        ],
        "$.routes[1]",
        "taken by route 'a'",
        id="same-methods-shadowed",
    ),
    pytest.param(
        [route("a", ["/users/7"]), route("b", ["/{*rest}"], priority=5)],
        "$.routes[0]",
        "can never match",
        id="higher-priority-catch-all-shadows-literal",
    ),
    pytest.param(
        [route("a", ["/users/{id"])],
        "$.routes[0].match.paths[0]",
        "",
        id="unclosed-capture",
    ),
    pytest.param(
        [route("a", ["/files/{*rest}/more"])],
        "$.routes[0].match.paths[0]",
        "",
        id="catch-all-not-last",
    ),
    pytest.param(
        [route("a", ["/ok", "/x/{a}/{a}"])],
        "$.routes[0].match.paths[1]",
        "",
        id="duplicate-capture-name",
    ),
]


@pytest.mark.parametrize(("routes", "path", "message"), PLAN_ERRORS)
def test_plan_errors_name_the_path(routes: list[dict[str, Any]], path: str, message: str) -> None:
    cfg = parse_config(config(*routes), "gw.yaml")
    with pytest.raises(ConfigError) as info:
        build_plan(cfg, "gw.yaml")
    errors = info.value.errors
    assert [e.path for e in errors] == [path]
    assert message in errors[0].message
    assert errors[0].file == "gw.yaml"


def test_different_methods_are_not_shadowed() -> None:
    cfg = parse_config(
        config(
            route("get", ["/users/{id}"], match={"methods": ["GET"]}),
            route("put", ["/users/{id}"], match={"methods": ["PUT"]}),
        )
    )
    plan = build_plan(cfg)
    assert plan.router.lookup("PUT", "h", "/users/1")[:2] == ("found", 1)


def test_describe_routes_lists_every_pattern() -> None:
    cfg = parse_config(
        config(
            route(
                "users",
                ["/users/{id}", "/users"],
                rewrite=None,
                match={"hosts": ["api.example.com"]},
            )
        )
    )
    rows = build_plan(cfg).describe_routes()
    assert [(r["name"], r["pattern"], r["hosts"]) for r in rows] == [
        ("users", "/users/{id}", ("api.example.com",)),
        ("users", "/users", ("api.example.com",)),
    ]


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        pytest.param("GET", "http://api.example.com/users/7", "route 'users'", id="param-route"),
        pytest.param("GET", "http://api.example.com/a/../users", "route 'list'", id="normalised"),
        pytest.param("DELETE", "http://api.example.com/users", "405", id="method"),
        pytest.param("GET", "http://other.example.com/users/7", "404", id="other-host"),
        pytest.param("GET", "http://api.example.com/%2e%2e/x", "path_above_root", id="rejected"),
    ],
)
def test_explain_uses_parser_and_router(method: str, url: str, expected: str) -> None:
    cfg = parse_config(
        config(
            route("users", ["/users/{id}"], match={"hosts": ["api.example.com"]}),
            route("list", ["/users"], match={"hosts": ["api.example.com"], "methods": ["GET"]}),
        )
    )
    lines = build_plan(cfg).explain(method, url)
    assert expected in lines[-1]


def test_every_bad_pattern_of_a_route_is_reported() -> None:
    cfg = parse_config(config(route("a", ["/a//b", "/ok", "/{x"]), route("b", ["/c{d}"])))
    with pytest.raises(ConfigError) as info:
        build_plan(cfg)
    assert [e.path for e in info.value.errors] == [
        "$.routes[0].match.paths[0]",
        "$.routes[0].match.paths[2]",
        "$.routes[1].match.paths[0]",
    ]
    assert "empty segment" in info.value.errors[0].message


# The timeouts the core takes, each from the schema's Timeouts.
CORE_TIMEOUTS = (
    "client_header",
    "client_body_idle",
    "keepalive_idle",
    "upstream_read",
    "upstream_send",
    "client_send",
)


def test_core_limits_and_timeouts_are_the_schemas_defaults() -> None:
    """Nothing in the core has a default of its own: a config that sets no limits reaches
    it with exactly the schema's values (headers_with_underscores "drop", not "allow")."""
    from fastgw.config.schema import Limits, Timeouts

    core = build_plan(parse_config(config(route("r", ["/"])))).core
    limits, timeouts = Limits(), Timeouts()
    assert core.limits.headers_with_underscores == "drop" == limits.headers_with_underscores
    for name in ("max_header_bytes", "max_headers", "max_target_bytes", "max_body_bytes"):
        assert getattr(core.limits, name) == getattr(limits, name), name
    for name in CORE_TIMEOUTS:
        assert getattr(core.timeouts, name) == getattr(timeouts, name), name


@pytest.mark.parametrize(
    ("cls", "missing"),
    [
        ("CoreLimits", "headers_with_underscores"),
        ("CoreTimeouts", "client_send"),
        ("RouteAction", "max_body_bytes"),
    ],
    ids=["limits", "timeouts", "route-action"],
)
def test_core_config_objects_have_no_defaults(cls: str, missing: str) -> None:
    from fastgw import _core

    full: dict[str, Any] = {
        "CoreLimits": {
            "max_header_bytes": 1,
            "max_headers": 1,
            "max_target_bytes": 1,
            "max_body_bytes": 1,
            "headers_with_underscores": "drop",
        },
        "CoreTimeouts": dict.fromkeys(
            CORE_TIMEOUTS,
            1.0,
        ),
        "RouteAction": {
            "connect_timeout": 1.0,
            "read_timeout": 1.0,
            "send_timeout": 1.0,
            "max_body_bytes": 1,
        },
    }[cls]
    args = (
        (
            "r",
            0,
            _core.UpstreamPool("u", [_core.UpstreamTarget("h", 1)], [1]),
            None,
            None,
            False,
            None,
        )
        if cls == "RouteAction"
        else ()
    )
    getattr(_core, cls)(*args, **full)  # complete: accepted
    del full[missing]
    with pytest.raises(TypeError, match=missing):
        getattr(_core, cls)(*args, **full)
