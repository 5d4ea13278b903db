"""Policy registry: built-ins, entry points, "module:attr" references and their errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from fastgw.errors import ConfigError
from fastgw.policy import ENTRY_POINT_GROUP, Policy, PolicyConfig, PolicyRegistry
from fastgw.policy.builtins import (
    BUILTIN_POLICIES,
    DirectResponse,
    PathRewrite,
    Redirect,
    RequestHeaders,
    ResponseHeaders,
)
from fastgw.policy.ratelimit import ConcurrencyLimit, RateLimit
from fastgw.policy.registry import load_reference

BUILTIN_NAMES = ["direct_response", "redirect", "request_headers", "response_headers"]


class Audit(Policy):
    name = "audit"


class Nameless(Policy):
    pass


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_default_registry_has_the_builtins() -> None:
    registry = PolicyRegistry.default()
    assert set(BUILTIN_NAMES) <= set(registry.names())
    assert registry.resolve("request_headers") is RequestHeaders
    assert registry.resolve("response_headers") is ResponseHeaders
    assert registry.resolve("direct_response") is DirectResponse
    assert registry.resolve("redirect") is Redirect
    # The built-ins the core runs compile themselves; path_rewrite runs as a Python hook.
    compiled = (RequestHeaders, ResponseHeaders, DirectResponse, Redirect, RateLimit)
    for builtin in (*compiled, ConcurrencyLimit):
        assert builtin.compile_core is not Policy.compile_core, builtin
    assert PathRewrite.compile_core is Policy.compile_core


def test_register_and_resolve() -> None:
    registry = PolicyRegistry([Audit])
    registry.register(Nameless, "nameless")
    assert registry.names() == ["audit", "nameless"]
    assert registry.resolve("nameless") is Nameless


def test_entry_points_load_lazily() -> None:
    registry = PolicyRegistry()
    registry.add_entry_points(
        [
            entry_point("tenant_guard", "examples.custom_policy:TenantGuard"),
            entry_point("broken", "fastgw_no_such_module:Policy"),
        ]
    )
    assert registry.names() == ["broken", "tenant_guard"]
    assert registry.resolve("tenant_guard").__name__ == "TenantGuard"
    with pytest.raises(ConfigError, match="cannot load policy fastgw_no_such_module:Policy"):
        registry.resolve("broken")


def test_same_entry_point_seen_twice_is_one() -> None:
    registry = PolicyRegistry()
    same = entry_point("tenant_guard", "examples.custom_policy:TenantGuard")
    registry.add_entry_points([same, same])
    assert registry.names() == ["tenant_guard"]


DUPLICATES = [
    (
        "entry-point-shadows-builtin",
        lambda r: r.add_entry_points([entry_point("redirect", "x.y:Z")]),
        "policy name 'redirect' is registered twice: by fastgw.policy.builtins:Redirect "
        "and by x.y:Z (entry point)",
    ),
    (
        "two-entry-points",
        lambda r: r.add_entry_points([entry_point("a", "x:A"), entry_point("a", "y:A")]),
        "policy name 'a' is registered twice: by x:A (entry point) and by y:A (entry point)",
    ),
    (
        "register-twice",
        lambda r: r.register(Audit, "redirect"),
        "policy name 'redirect' is registered twice",
    ),
    ("no-name", lambda r: r.register(Nameless), "has no name to register"),
    ("colon-in-name", lambda r: r.register(Audit, "a:b"), "invalid policy name 'a:b'"),
    ("not-a-policy", lambda r: r.register(int), "is not a policy"),
]


@pytest.mark.parametrize(
    ("action", "message"), [d[1:] for d in DUPLICATES], ids=[d[0] for d in DUPLICATES]
)
def test_registration_errors(action: Callable[[PolicyRegistry], None], message: str) -> None:
    registry = PolicyRegistry([Redirect])
    with pytest.raises(ConfigError) as caught:
        action(registry)
    assert message in str(caught.value)


def test_duplicate_name_in_constructor() -> None:
    with pytest.raises(ConfigError, match="'redirect' is registered twice"):
        PolicyRegistry([Redirect, Redirect.__mro__[0], type("R2", (Redirect,), {})])


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        PolicyRegistry.default().resolve("no_such_policy")
    assert caught.value.message == "unknown policy 'no_such_policy'"
    names = sorted(policy.name for policy in BUILTIN_POLICIES)
    assert "acl" in names and "key_auth" in names
    assert ", ".join(names) in (caught.value.expected or "")


REFERENCES = [
    ("builtin-class", "fastgw.policy.builtins:Redirect", None),
    ("dotted-attr", "examples.custom_policy:TenantGuard.Config", "is not a policy"),
    ("missing-module", "fastgw_missing_mod:X", "cannot load policy fastgw_missing_mod:X"),
    ("missing-attr", "fastgw.policy.base:Nope", "module 'fastgw.policy.base' has no 'Nope'"),
    ("not-a-class", "fastgw.policy.base:hook_kind", "is not a policy"),
    ("not-a-policy", "fastgw.policy.base:Response", "is not a policy"),
    ("no-module", ":Redirect", "invalid policy reference"),
    ("no-attr", "fastgw.policy.builtins:", "invalid policy reference"),
]


@pytest.mark.parametrize(
    ("reference", "message"), [r[1:] for r in REFERENCES], ids=[r[0] for r in REFERENCES]
)
def test_references(reference: str, message: str | None) -> None:
    registry = PolicyRegistry.default()
    if message is None:
        assert registry.resolve(reference) is Redirect
        return
    with pytest.raises(ConfigError) as caught:
        registry.resolve(reference)
    assert message in str(caught.value)


def test_module_raising_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fastgw_test_raising.py").write_text("raise RuntimeError('no config here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_reference("fastgw_test_raising:X")
    assert "RuntimeError: no config here" in caught.value.message


def test_config_must_be_a_struct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fastgw_test_bad_config.py").write_text(
        "from fastgw.policy import Policy\n\nclass P(Policy):\n    Config = dict\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="has an invalid Config"):
        load_reference("fastgw_test_bad_config:P")


def test_reference_found_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fastgw_test_local_policy.py").write_text(
        "from fastgw.policy import Policy\n\nclass Local(Policy):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    assert load_reference("fastgw_test_local_policy:Local").__name__ == "Local"
    # Added last, so a folder of the user's never shadows an installed module.
    assert sys.path[-1] == str(tmp_path)


def test_policy_config_base_is_strict() -> None:
    assert PolicyConfig.__struct_config__.forbid_unknown_fields
    assert PolicyConfig.__struct_config__.frozen
