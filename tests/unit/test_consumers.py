"""Consumers and the policies built on them, decided at plan time: the consumer table and
its config errors (each at its $.path, never showing a key), the identity fields rendered
once, redaction, key_auth and acl compiled to core steps, and the chain order the plan
decides (alternatives, warnings about an acl no authentication runs before)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastgw import _core
from fastgw.config import parse_config
from fastgw.config.redaction import redacted_config
from fastgw.errors import ConfigError
from fastgw.plan import build_plan
from fastgw.policy.consumers import Consumer, build_consumers

UPSTREAMS: dict[str, Any] = {"u": {"targets": [{"url": "http://127.0.0.1:9001"}]}}
BCRYPT = "$2b$04$" + "a" * 53
SECRET = "very-secret-key-0001"


def config(consumers: list[dict[str, Any]], policies: list[Any] | None = None, **top: Any) -> Any:
    return parse_config(
        {
            "upstreams": UPSTREAMS,
            "consumers": consumers,
            "routes": [
                {
                    "name": "r",
                    "match": {"paths": ["/a"]},
                    "upstream": "u",
                    "policies": policies or [],
                }
            ],
            **top,
        }
    )


def errors_of(consumers: list[dict[str, Any]], tmp_path: Path | None = None) -> list[ConfigError]:
    file = None if tmp_path is None else str(tmp_path / "gw.yaml")
    return build_consumers(config(consumers), file)[1]


def test_a_consumer_renders_its_identity_fields_once() -> None:
    table, errors = build_consumers(
        config(
            [
                {
                    "name": "alice",
                    "groups": ["admins", "billing"],
                    "metadata": {"tier": "gold"},
                    "credentials": [{"key_auth": {"keys": [SECRET, "second-key"]}}],
                },
                {"name": "bob", "id": "u-2"},
            ]
        )
    )
    assert errors == []
    alice = table.get("alice")
    assert isinstance(alice, Consumer)
    assert (alice.id, alice.groups, dict(alice.metadata)) == (
        "alice",
        ("admins", "billing"),
        {"tier": "gold"},
    )
    assert alice.identity_head == (
        b"x-consumer-id: alice\r\nx-consumer-username: alice\r\n"
        b"x-consumer-groups: admins, billing\r\n"
    )
    assert alice.anonymous_head == alice.identity_head + b"x-anonymous-consumer: true\r\n"
    assert table.get("u-2") is table.get("bob")
    assert str(table.get("bob")) == "u-2"
    assert table.keys == {SECRET.encode(): alice, b"second-key": alice}
    assert SECRET not in repr(table) and SECRET not in repr(alice)


def test_identity_field_names_are_configurable_and_can_be_turned_off() -> None:
    table, errors = build_consumers(
        config(
            [{"name": "alice", "groups": ["g"]}],
            identity_headers={
                "consumer_id": "X-User",
                "consumer_username": None,
                "consumer_groups": None,
            },
        )
    )
    assert errors == []
    assert table.get("alice").identity_head == b"x-user: alice\r\n"


@pytest.mark.parametrize(
    ("consumers", "path", "fragment"),
    [
        ([{"name": "a"}, {"name": "a"}], "$.consumers[1].name", "defined twice"),
        (
            [{"name": "a", "id": "x"}, {"name": "b", "id": "x"}],
            "$.consumers[1].id",
            "used by consumer 'a'",
        ),
        (
            [
                {"name": "a", "credentials": [{"key_auth": {"key": SECRET}}]},
                {"name": "b", "credentials": [{"key_auth": {"keys": ["k2", SECRET]}}]},
            ],
            "$.consumers[1].credentials[0].key_auth.keys[1]",
            "already a key of consumer 'a'",
        ),
        (
            [{"name": "a", "credentials": [{"key_auth": {}}]}],
            "$.consumers[0].credentials[0].key_auth",
            "needs key",
        ),
        (
            [{"name": "a", "credentials": [{}]}],
            "$.consumers[0].credentials[0]",
            "one of key_auth or basic_auth",
        ),
        (
            [
                {
                    "name": "a",
                    "credentials": [{"basic_auth": {"username": "a", "password_hash": SECRET}}],
                }
            ],
            "$.consumers[0].credentials[0].basic_auth.password_hash",
            "not a bcrypt or argon2 hash",
        ),
        (
            [
                {
                    "name": "a",
                    "credentials": [{"basic_auth": {"username": "u", "password_hash": BCRYPT}}],
                },
                {
                    "name": "b",
                    "credentials": [{"basic_auth": {"username": "u", "password_hash": BCRYPT}}],
                },
            ],
            "$.consumers[1].credentials[0].basic_auth.username",
            "credential of consumer 'a' too",
        ),
        ([{"name": "a\u0007b"}], "$.consumers[0].name", "control characters"),
        (
            [{"name": "a", "credentials": [{"key_auth": {"key_file": "missing.keys"}}]}],
            "$.consumers[0].credentials[0].key_auth.key_file",
            "cannot read key_file 'missing.keys'",
        ),
    ],
)
def test_consumer_errors_name_their_path_and_never_a_key(
    consumers: list[dict[str, Any]], path: str, fragment: str, tmp_path: Path
) -> None:
    errors = errors_of(consumers, tmp_path)
    assert [error.path for error in errors] == [path], errors
    text = str(errors[0])
    assert fragment in text
    assert SECRET not in text
    assert errors[0].file == str(tmp_path / "gw.yaml")


def test_key_files_resolve_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "a.keys").write_text("# rotation\n\nkey-one\n  key-two  \n")
    (tmp_path / "empty.keys").write_text("# nothing\n")
    table, errors = build_consumers(
        config([{"name": "a", "credentials": [{"key_auth": {"key_file": "a.keys"}}]}]),
        str(tmp_path / "gw.yaml"),
    )
    assert errors == [] and set(table.keys) == {b"key-one", b"key-two"}
    errors = errors_of(
        [{"name": "a", "credentials": [{"key_auth": {"key_file": "empty.keys"}}]}], tmp_path
    )
    assert "holds no key" in str(errors[0])


def test_keys_and_password_hashes_are_redacted_in_the_config_shown() -> None:
    shown = redacted_config(
        config(
            [
                {
                    "name": "a",
                    "credentials": [
                        {"key_auth": {"key": SECRET, "keys": ["k2"]}},
                        {"basic_auth": {"username": "a", "password_hash": BCRYPT}},
                    ],
                }
            ],
            [{"rate_limit": {"key": "client_ip", "limits": [{"rate": 1, "per": "1s"}]}}],
        )
    )
    credentials = shown["consumers"][0]["credentials"]
    assert credentials[0]["key_auth"]["key"] == "***redacted***"
    assert credentials[0]["key_auth"]["keys"] == ["***redacted***"]
    assert credentials[1]["basic_auth"] == {"username": "a", "password_hash": "***redacted***"}
    # A rate limit's key is not a secret.
    assert shown["routes"][0]["policies"][0]["rate_limit"]["key"] == "client_ip"
    assert SECRET not in repr(
        config([{"name": "a", "credentials": [{"key_auth": {"key": SECRET}}]}])
    )


def chain_steps(plan: Any) -> tuple[Any, ...]:
    action = plan.core.actions[0]
    return action.chain.steps


def test_key_auth_and_acl_compile_to_core_steps() -> None:
    plan = build_plan(
        config(
            [{"name": "a", "groups": ["billing"], "credentials": [{"key_auth": {"key": SECRET}}]}],
            [{"key_auth": {"query": "api_key", "anonymous": "a"}}, {"acl": {"allow": ["billing"]}}],
        )
    )
    key_step, acl_step = chain_steps(plan)
    assert isinstance(key_step, _core.KeyAuthStep) and isinstance(acl_step, _core.AclStep)
    assert (key_step.header, key_step.query, key_step.fallthrough) == (
        b"x-api-key",
        b"api_key",
        False,
    )
    assert key_step.lookup(SECRET.encode()).name == "a"
    assert key_step.lookup(b"very-secret-key-0002") is None
    assert key_step.anonymous.name == "a"
    assert acl_step.allows(["billing"]) and not acl_step.allows(["other"])


def test_acl_rules() -> None:
    step = _core.AclStep(allow=["a", "b"], deny=["banned"])
    assert step.allows(["a"]) and step.allows(["x", "b"])
    assert not step.allows(["a", "banned"]) and not step.allows([])
    scoped = _core.AclStep(scope_claim="scope", require=["orders:read"])
    assert scoped.allows((), {"scope": "orders:write orders:read"})
    assert scoped.allows((), {"scope": ["orders:read"]})
    assert not scoped.allows((), {"scope": "orders:write"})
    assert not scoped.allows((), {"scope": 7}) and not scoped.allows((), None)


def test_consecutive_authentication_policies_fall_through_to_the_last() -> None:
    plan = build_plan(
        config(
            [{"name": "a", "credentials": [{"key_auth": {"key": SECRET}}]}],
            [{"key_auth": {"header": "x-one"}}, {"key_auth": {"header": "x-two"}}],
        )
    )
    first, second = chain_steps(plan)
    assert (first.fallthrough, second.fallthrough) == (True, False)


def test_client_identity_fields_are_removed_on_routes_that_authenticate() -> None:
    plan = build_plan(config([{"name": "a"}], [{"key_auth": {}}]))
    ops = plan.core.actions[0].chain.request_ops
    assert isinstance(ops, _core.HeaderOps)
    plain = build_plan(config([{"name": "a"}], [{"request_headers": {"set": {"x-a": "1"}}}]))
    assert plain.warnings == []


@pytest.mark.parametrize(
    ("policies", "path", "fragment"),
    [
        ([{"acl": {"allow": ["g"]}}], "$.routes[0].policies[0]", "runs before any authentication"),
        (
            [{"acl": {"allow": ["g"]}}, {"key_auth": {}}],
            "$.routes[0].policies[0]",
            "runs before any authentication",
        ),
    ],
)
def test_check_warns_about_a_chain_order_that_cannot_work(
    policies: list[Any], path: str, fragment: str
) -> None:
    plan = build_plan(config([{"name": "a"}], policies))
    assert [warning.path for warning in plan.warnings][:1] == [path]
    assert fragment in plan.warnings[0].message


def test_an_unknown_anonymous_consumer_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        build_plan(config([{"name": "a"}], [{"key_auth": {"anonymous": "ghost"}}]))
    assert raised.value.errors[0].path == "$.routes[0].policies[0].key_auth.anonymous"
    assert "'ghost' is not in consumers" in raised.value.errors[0].message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"header": None}, "needs a header or a query parameter"),
        ({"header": "bad header"}, "invalid header name"),
        ({"realm": 'a"b'}, "double quote"),
    ],
)
def test_key_auth_config_errors(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_plan(config([{"name": "a"}], [{"key_auth": options}]))
    assert fragment in str(raised.value)


def test_acl_config_errors() -> None:
    with pytest.raises(ConfigError) as raised:
        build_plan(config([{"name": "a"}], [{"key_auth": {}}, {"acl": {}}]))
    assert "acl needs allow, deny or scopes" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        build_plan(
            config([{"name": "a"}], [{"key_auth": {}}, {"acl": {"allow": ["g"], "deny": ["g"]}}])
        )
    assert "both allowed and denied: g" in str(raised.value)


def test_cached_auth_step_remembers_a_bounded_set_of_credentials() -> None:
    async def hook(request: Any) -> None:
        return None

    step = _core.CachedAuthStep(b"Authorization", "basic_auth", hook, 2)
    assert (step.header, step.by, step.max_entries, len(step)) == (
        b"authorization",
        "basic_auth",
        2,
        0,
    )
    consumer = Consumer("alice", groups=("g",))
    for value in (b"Basic a", b"Basic b", b"Basic c"):
        step.remember(value, consumer)
    assert len(step) == 2  # the oldest went first
    step.forget()
    assert len(step) == 0
    off = _core.CachedAuthStep(b"authorization", "x", hook, 0)
    off.remember(b"Basic a", consumer)
    assert len(off) == 0
    with pytest.raises(TypeError):
        _core.CachedAuthStep(b"authorization", "x", None)
