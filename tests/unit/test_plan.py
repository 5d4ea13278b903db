"""Config -> Plan: errors only the compiled router can find, rewrites, chains, describe and
explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastgw import _core
from fastgw.config import parse_config
from fastgw.errors import ConfigError
from fastgw.plan import Plan, build_plan

ROOT = Path(__file__).resolve().parents[2]
P = "tests.policies_for_tests:"


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


@pytest.mark.parametrize(
    ("limits", "url", "expected"),
    [
        pytest.param({}, "//admin/x", "route 'admin'", id="merged"),
        pytest.param({"merge_slashes": False}, "//admin/x", "route 'open'", id="kept"),
        pytest.param({}, "/admin;a/x", "semicolon_in_path", id="semicolon-rejected"),
        pytest.param({"path_semicolons": "allow"}, "/admin;a/x", "route 'open'", id="allowed"),
    ],
)
def test_explain_applies_the_configs_path_rules(
    limits: dict[str, Any], url: str, expected: str
) -> None:
    cfg = parse_config(
        {
            **config(route("admin", ["/admin/{*rest}"]), route("open", ["/{*rest}"])),
            "limits": limits,
        }
    )
    assert expected in build_plan(cfg).explain("GET", url)[-1]


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
    assert core.limits.merge_slashes is True is limits.merge_slashes
    assert core.limits.path_semicolons == "reject" == limits.path_semicolons
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
            "merge_slashes": True,
            "path_semicolons": "reject",
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


# --- chains: each policy's compiled parts, joined in chain order ----------------------------


@pytest.fixture
def test_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))


def chain_of(plan: Plan, route_id: int = 0) -> Any:
    return plan.core.actions[route_id].chain


def test_chain_joins_each_policys_parts_in_order(test_policies: None) -> None:
    policies = [
        {"request_headers": {"set": {"x-id": "{id}"}}},
        {P + "Mark": {"tag": "m"}},
        {"rate_limit": {"limits": [{"rate": 5, "per": "1s"}]}},
        {"response_headers": {"set": {"x-r": "1"}}},
        {"concurrency_limit": {"max": 3}},
        {"direct_response": {"status": 204}},
    ]
    plan = build_plan(parse_config(config(route("a", ["/a/{id}"], policies=policies))))
    chain = chain_of(plan)
    assert [type(step) for step in chain.steps] == [
        _core.SyncHookStep,
        _core.RateLimitStep,
        _core.ConcurrencyLimitStep,
        _core.RespondStep,
    ]
    assert plan.chains is not None
    mark = plan.chains[0].policies[1].policy
    assert chain.steps[0].hook == mark.on_request
    assert [(hook.hook, hook.is_async) for hook in chain.response_hooks] == [
        (mark.on_response, False)
    ]
    assert chain.steps[1].limiter.limiter_id.endswith("$.routes[0].policies[2]")
    assert (chain.steps[2].limiter.max_inflight, chain.steps[3].status) == (3, 204)
    assert type(chain.request_ops) is _core.HeaderOps
    assert type(chain.response_ops) is _core.HeaderOps
    assert chain.python_hooks and not chain.disabled and chain.body_limit == 0


def test_compiled_builtins_alone_need_no_policy_request() -> None:
    policies = [
        {"rate_limit": {"limits": [{"rate": 5, "per": "1s"}]}},
        {"redirect": {"location": "/b"}},
    ]
    chain = chain_of(build_plan(parse_config(config(route("a", ["/a"], policies=policies)))))
    assert [type(step) for step in chain.steps] == [_core.RateLimitStep, _core.RedirectStep]
    assert not chain.python_hooks
    assert chain.request_ops is None and chain.response_ops is None and chain.response_hooks == ()


def test_header_ops_differ_by_pattern_only_where_captures_do() -> None:
    set_id = [{"request_headers": {"set": {"x-id": "{id}"}}}]
    plan = build_plan(
        parse_config(
            config(
                route("same", ["/a/{id}", "/b/{id}"], policies=set_id),
                route("moved", ["/c/{id}", "/d/{group}/{id}"], policies=set_id),
            )
        )
    )
    assert type(chain_of(plan, 0).request_ops) is _core.HeaderOps
    moved = chain_of(plan, 1).request_ops
    assert sorted(moved) == [info.pattern_id for info in plan.routes if info.route_id == 1]
    assert all(type(ops) is _core.HeaderOps for ops in moved.values())


def test_a_policy_that_fails_to_compile_disables_only_its_route(test_policies: None) -> None:
    parsed = parse_config(
        config(route("bad", ["/bad"], policies=[{P + "CompileJunk": {}}]), route("ok", ["/ok"]))
    )
    with pytest.raises(ConfigError) as caught:
        build_plan(parsed, "gw.yaml")
    assert caught.value.path == "$.routes[0].policies[0]"
    assert caught.value.file == "gw.yaml"
    assert "'tests.policies_for_tests:CompileJunk' failed to compile" in caught.value.message
    assert "not a step the core runs" in caught.value.message
    plan = build_plan(parsed, "gw.yaml", strict=False)
    assert chain_of(plan, 0).disabled and plan.routes[0].disabled
    assert chain_of(plan, 1) is None and not plan.routes[1].disabled
    plan.close()
