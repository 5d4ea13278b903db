"""Route chains: order, per-route provisioning, errors located and shared, lifecycle."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import msgspec
import pytest

from fastgw import _core
from fastgw.config import parse_config
from fastgw.config.schema import Duration
from fastgw.errors import ConfigError
from fastgw.policy import (
    HOOK_ABSENT,
    HOOK_ASYNC,
    HOOK_SYNC,
    Policy,
    PolicyConfig,
    PolicyConfigError,
    PolicyRegistry,
    ProvisionContext,
    build_route_chains,
    hook_kind,
)
from fastgw.policy.builtins import BUILTIN_POLICIES, DirectResponse
from fastgw.policy.compiled import CompileContext

UPSTREAMS = {"u": {"targets": [{"url": "http://127.0.0.1:9001"}]}}
GUARD = "examples.custom_policy:TenantGuard"


class Recorder(Policy):
    """Remembers what it was given and whether it was closed."""

    name = "recorder"
    instances: ClassVar[list[Recorder]] = []

    class Config(PolicyConfig):
        label: str = ""
        fail: bool = False
        timeout: Duration = 1.0

    def __init__(self, config: Config, context: ProvisionContext) -> None:
        super().__init__(config, context)
        if config.fail:
            raise PolicyConfigError("told to fail", "fail", expected="false")
        self.closed = False
        Recorder.instances.append(self)

    def close(self) -> None:
        self.closed = True


class Exploding(Policy):
    name = "exploding"

    def __init__(self, config: Any, context: ProvisionContext) -> None:
        raise RuntimeError("boom")


class BadClose(Policy):
    name = "bad_close"

    def close(self) -> None:
        raise OSError("socket gone")


class Loose(Policy):
    """Its Config forgot forbid_unknown_fields: keys must still be checked."""

    name = "loose"

    class Config(msgspec.Struct):
        limit: int = 1


def registry() -> PolicyRegistry:
    return PolicyRegistry([*BUILTIN_POLICIES, Recorder, Exploding, BadClose, Loose])


def chains_for(data: dict[str, Any], params: list[tuple[str, ...]]) -> Any:
    Recorder.instances.clear()
    config = parse_config({"upstreams": UPSTREAMS, **data})
    return build_route_chains(config, params, file="gw.yaml", registry=registry())


def route(name: str, path: str = "/x", **fields: Any) -> dict[str, Any]:
    return {"name": name, "match": {"paths": [path]}, "upstream": "u", **fields}


def test_order_global_then_groups_then_own() -> None:
    chains = chains_for(
        {
            "global_policies": [{"recorder": {"label": "global"}}],
            "policy_groups": {
                "first": [{"recorder": {"label": "first"}}],
                "second": [{"recorder": {"label": "second"}}, {"response_headers": None}],
            },
            "routes": [
                route(
                    "r",
                    groups=["second", "first"],
                    policies=[{"recorder": {"label": "own"}}, {GUARD: {"allow": ["acme"]}}],
                )
            ],
        },
        [()],
    )
    assert chains.errors == []
    (chain,) = chains
    assert not chain.disabled
    assert chain.describe() == [
        "recorder",
        "recorder",
        "response_headers",
        "recorder",
        "recorder",
        GUARD,
    ]
    labels = [p.policy.config.label for p in chain.policies if p.name == "recorder"]
    assert labels == ["global", "second", "first", "own"]
    assert [p.path for p in chain.policies] == [
        "$.global_policies[0]",
        "$.policy_groups.second[0]",
        "$.policy_groups.second[1]",
        "$.policy_groups.first[0]",
        "$.routes[0].policies[0]",
        "$.routes[0].policies[1]",
    ]


def test_shared_entries_are_provisioned_per_route() -> None:
    chains = chains_for(
        {
            "policy_groups": {"api": [{"recorder": {"timeout": "250ms"}}]},
            "routes": [
                route("a", "/a/{id}", groups=["api"]),
                route("b", "/b/{id}/{rest}", groups=["api"], policies=[{"recorder": {}}]),
            ],
        },
        [("id",), ("id", "rest")],
    )
    first, second, own = Recorder.instances
    assert first is not second
    assert first.config is second.config  # decoded once, provisioned per route
    assert first.config.timeout == 0.25
    assert first.context == ProvisionContext(None, ("id",), "$.policy_groups.api[0]", "gw.yaml")
    assert second.context.route_params == ("id", "rest")
    assert own.context == ProvisionContext(
        "b", ("id", "rest"), "$.routes[1].policies[0]", "gw.yaml"
    )
    chains.close()
    assert all(recorder.closed for recorder in Recorder.instances)


def test_group_template_checked_against_each_route() -> None:
    chains = chains_for(
        {
            "policy_groups": {"user-api": [{"request_headers": {"set": {"x-user": "{id}"}}}]},
            "routes": [
                route("with-id", "/u/{id}", groups=["user-api"]),
                route("without", "/list", groups=["user-api"]),
                route("also-without", "/all", groups=["user-api"]),
            ],
        },
        [("id",), (), ()],
    )
    assert [chain.disabled for chain in chains] == [False, True, True]
    (error,) = chains.errors
    assert error.path == "$.policy_groups['user-api'][0].request_headers.set['x-user']"
    assert error.message == (
        "{id} is not captured by every path of the route "
        "(in the chains of routes 'without', 'also-without')"
    )
    assert chains[1].errors == [error] == chains[2].errors
    assert chains[1].policies == []


def test_shared_resolution_error_reported_once() -> None:
    chains = chains_for(
        {
            "global_policies": [{"no_such_policy": {}}],
            "routes": [route("a", "/a"), route("b", "/b")],
        },
        [(), ()],
    )
    (error,) = chains.errors
    assert str(error).startswith("gw.yaml: $.global_policies[0]: unknown policy 'no_such_policy'")
    assert "(in the chains of routes 'a', 'b')" in error.message
    assert all(chain.disabled for chain in chains)


def test_unused_group_is_still_checked() -> None:
    chains = chains_for(
        {
            "policy_groups": {"spare": [{"redirect": {"status": 301}}]},
            "routes": [route("a")],
        },
        [()],
    )
    assert not chains[0].disabled
    (error,) = chains.errors
    assert (error.path, error.message) == (
        "$.policy_groups.spare[0].redirect",
        "missing required field 'location'",
    )


ROUTE_ERRORS = [
    (
        "policy-config-error-at",
        {"recorder": {"fail": True}},
        "$.routes[0].policies[1].recorder.fail",
        "told to fail (expected false)",
    ),
    (
        "exception-while-provisioning",
        {"exploding": None},
        "$.routes[0].policies[1]",
        "policy 'exploding' failed to start: RuntimeError: boom",
    ),
    (
        "config-of-wrong-type",
        {"recorder": ["x"]},
        "$.routes[0].policies[1].recorder",
        "wrong type (expected mapping, got a list)",
    ),
    (
        "duration",
        {"recorder": {"timeout": "soon"}},
        "$.routes[0].policies[1].recorder.timeout",
        "invalid duration",
    ),
    (
        "loose-config-made-strict",
        {"loose": {"limt": 2}},
        "$.routes[0].policies[1].loose",
        "unknown field 'limt', did you mean 'limit'?",
    ),
    (
        "unknown-name",
        {"recorderr": {}},
        "$.routes[0].policies[1]",
        "unknown policy 'recorderr'",
    ),
    (
        "bad-reference",
        {"examples.custom_policy:Nope": {}},
        "$.routes[0].policies[1]",
        "module 'examples.custom_policy' has no 'Nope'",
    ),
    (
        "guard-sub-path-string",
        {GUARD: {"allow": ["acme", " bad"]}},
        "$.routes[0].policies[1]['examples.custom_policy:TenantGuard'].allow[1]",
        "invalid tenant name (got ' bad')",
    ),
]


@pytest.mark.parametrize(
    ("entry", "path", "rendered"), [e[1:] for e in ROUTE_ERRORS], ids=[e[0] for e in ROUTE_ERRORS]
)
def test_route_entry_errors(entry: dict[str, Any], path: str, rendered: str) -> None:
    chains = chains_for(
        {"routes": [route("a", policies=[{"recorder": {}}, entry]), route("b", "/b")]},
        [(), ()],
    )
    (error,) = chains.errors
    assert error.path == path
    assert str(error).startswith(f"gw.yaml: {path}: ")
    assert rendered in str(error)
    assert chains[0].errors == [error]
    assert chains[0].disabled and not chains[1].disabled
    # The policy provisioned before the failing one is cleaned up (Caddy's rule).
    assert chains[0].policies == []
    assert Recorder.instances[0].closed
    assert chains[0].describe() == ["recorder", next(iter(entry))]


def test_every_error_of_a_route_is_reported() -> None:
    chains = chains_for(
        {"routes": [route("a", policies=[{"nope": {}}, {"recorder": {"fail": True}}])]}, [()]
    )
    assert [error.path for error in chains[0].errors] == [
        "$.routes[0].policies[0]",
        "$.routes[0].policies[1].recorder.fail",
    ]


def test_close_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    chains = chains_for(
        {"routes": [route("a", policies=[{"bad_close": {}}, {"recorder": {}}])]}, [()]
    )
    with caplog.at_level(logging.ERROR, logger="fastgw.policy"):
        chains[0].close()
    assert Recorder.instances[0].closed
    assert "closing policy bad_close at $.routes[0].policies[0] failed" in caplog.text


def test_route_params_must_match_routes() -> None:
    config = parse_config({"upstreams": UPSTREAMS, "routes": [route("a")]})
    with pytest.raises(ValueError, match="1 routes"):
        build_route_chains(config, [], registry=registry())


def test_default_registry_is_used() -> None:
    config = parse_config(
        {"upstreams": UPSTREAMS, "routes": [route("a", policies=[{"direct_response": {}}])]}
    )
    (chain,) = build_route_chains(config, [()])
    assert type(chain.policies[0].policy) is DirectResponse


class SyncBoth(Policy):
    def on_request(self, request: Any) -> None:
        return None

    def on_response(self, request: Any, response: Any) -> None:
        return None


class AsyncRequest(Policy):
    async def on_request(self, request: Any) -> None:
        return None


class AsyncResponseOnly(SyncBoth):
    async def on_response(self, request: Any, response: Any) -> None:
        return None


HOOKS = [
    ("none", Policy, (HOOK_ABSENT, HOOK_ABSENT)),
    ("sync-both", SyncBoth, (HOOK_SYNC, HOOK_SYNC)),
    ("async-request", AsyncRequest, (HOOK_ASYNC, HOOK_ABSENT)),
    ("inherited-sync-overridden-async", AsyncResponseOnly, (HOOK_SYNC, HOOK_ASYNC)),
]


@pytest.mark.parametrize(("cls", "kinds"), [h[1:] for h in HOOKS], ids=[h[0] for h in HOOKS])
def test_hook_kind(cls: type[Policy], kinds: tuple[int, int]) -> None:
    context = ProvisionContext("r", (), "$.routes[0].policies[0]")
    assert hook_kind(cls(PolicyConfig(), context)) == kinds


def test_builtins_have_no_python_hooks() -> None:
    chains = chains_for({"routes": [route("a", policies=[{"request_headers": {}}])]}, [()])
    assert hook_kind(chains[0].policies[0].policy) == (HOOK_ABSENT, HOOK_ABSENT)


# --- examples/custom_policy.py: TenantGuard provisioning ------------------------------------


def test_tenant_guard_provisions() -> None:
    chains = chains_for(
        {
            "routes": [
                route("a", policies=[{GUARD: {"allow": ["acme", "globex"], "header": "X-Org"}}])
            ]
        },
        [()],
    )
    guard = chains[0].policies[0].policy
    assert (guard.allowed, guard.header) == (frozenset({"acme", "globex"}), "x-org")
    assert hook_kind(guard) == (HOOK_SYNC, HOOK_ABSENT)
    # A Python policy compiles to its hooks: here one sync request step, no response hook.
    parts = guard.compile_core(CompileContext((0,), {0: ()}, None))
    assert [type(step) for step in parts.steps] == [_core.SyncHookStep]
    assert parts.steps[0].hook == guard.on_request
    assert (parts.request_ops, parts.response_ops, parts.response_hooks) == ((), (), ())


GUARD_PATH = "$.routes[0].policies[0]['examples.custom_policy:TenantGuard']"
GUARD_ERRORS = [
    ("missing-allow", {}, GUARD_PATH, "missing required field 'allow'"),
    ("null-config", None, GUARD_PATH, "missing required field 'allow'"),
    ("empty-allow", {"allow": []}, f"{GUARD_PATH}.allow", "no tenant is allowed"),
    ("empty-tenant", {"allow": ["a", ""]}, f"{GUARD_PATH}.allow[1]", "invalid tenant name"),
    ("allow-type", {"allow": "acme"}, f"{GUARD_PATH}.allow", "wrong type"),
    ("bad-header", {"allow": ["a"], "header": "x tenant"}, f"{GUARD_PATH}.header", "header name"),
    ("unknown-field", {"allow": ["a"], "headr": "x"}, GUARD_PATH, "did you mean 'header'"),
]


@pytest.mark.parametrize(
    ("options", "path", "message"), [g[1:] for g in GUARD_ERRORS], ids=[g[0] for g in GUARD_ERRORS]
)
def test_tenant_guard_config_errors(options: Any, path: str, message: str) -> None:
    chains = chains_for({"routes": [route("a", policies=[{GUARD: options}])]}, [()])
    (error,) = chains.errors
    assert error.path == path
    assert message in error.message
    assert isinstance(error, ConfigError)
