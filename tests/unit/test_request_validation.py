"""request_validation: config errors at their $.path (a bad schema at the schema's own
path), sizes, media type patterns, JSON paths, and the route body limit the plan derives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fastgw.config import parse_config
from fastgw.errors import ConfigError
from fastgw.plan import build_plan
from fastgw.policy import build_route_chains
from fastgw.policy.validation import RequestValidation, json_path, parse_size

BASE: dict[str, Any] = {"upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9001"}]}}}
AT = "$.routes[0].policies[0].request_validation"


def config_for(options: dict[str, Any], route: dict[str, Any] | None = None) -> Any:
    return parse_config(
        {
            **BASE,
            "routes": [
                {
                    "name": "r",
                    "match": {"paths": ["/a"]},
                    "upstream": "u",
                    "policies": [{"request_validation": options}],
                    **(route or {}),
                }
            ],
        }
    )


def provision(options: dict[str, Any], file: str = "gw.yaml") -> RequestValidation:
    built = build_route_chains(config_for(options), [()], file=file)
    if built.errors:
        raise built.errors[0]
    policy = built[0].policies[0].policy
    assert isinstance(policy, RequestValidation)
    return policy


INVALID = [
    ("nothing", {}, AT, "nothing to check"),
    ("bad-size", {"max_body_bytes": "1 MegaByte"}, f"{AT}.max_body_bytes", "size"),
    ("negative-size", {"max_body_bytes": -1}, f"{AT}.max_body_bytes", ">= 0"),
    ("type-with-params", {"content_types": ["application/json; charset=utf-8"]}, f"{AT}.content_types[0]", "media type"),  # noqa: E501
    ("type-no-subtype", {"content_types": ["json"]}, f"{AT}.content_types[0]", "media type"),
    ("type-star-main", {"content_types": ["*/json"]}, f"{AT}.content_types[0]", "subtype"),
    ("type-bad-pattern", {"content_types": ["application/js*"]}, f"{AT}.content_types[0]", "pattern"),  # noqa: E501
    ("bad-header", {"required_headers": ["x tenant"]}, f"{AT}.required_headers[0]", "header"),
    ("bad-schema-type", {"json_schema": {"type": "nonsense"}}, f"{AT}.json_schema.type", "invalid JSON Schema"),  # noqa: E501
    (
        "bad-nested-schema",
        {"json_schema": {"properties": {"qty": {"minimum": "one"}}}},
        f"{AT}.json_schema.properties.qty.minimum",
        "invalid JSON Schema",
    ),
    ("bad-ref", {"json_schema": {"$ref": "#/$defs/missing"}}, f"{AT}.json_schema", "missing"),
    (
        "remote-ref",
        {"json_schema": {"$ref": "http://127.0.0.1:9/schema.json"}},
        f"{AT}.json_schema",
        "disabled",
    ),
    ("both-schemas", {"json_schema": {}, "json_schema_file": "s.json"}, f"{AT}.json_schema_file", "not both"),  # noqa: E501
    ("missing-file", {"json_schema_file": "nowhere.json"}, f"{AT}.json_schema_file", "nowhere.json"),  # noqa: E501
    ("zero-with-schema", {"max_body_bytes": 0, "json_schema": {}}, f"{AT}.max_body_bytes", "no body"),  # noqa: E501
    ("unknown-key", {"max_body_bytes": 10, "schema": {}}, AT, "schema"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "path", "message"), [v[1:] for v in INVALID], ids=[v[0] for v in INVALID]
)
def test_invalid_configs(options: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        provision(options)
    text = str(caught.value)
    assert text.startswith(f"gw.yaml: {path}"), text
    assert message in text


def test_a_schema_file_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.json").write_text(json.dumps({"type": "object"}))
    policy = provision({"json_schema_file": "schemas/order.json"}, str(tmp_path / "gw.yaml"))
    assert policy.validator.is_valid({})
    assert not policy.validator.is_valid([])


def test_a_bad_schema_file_names_the_place_inside_it(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"properties": {"a": {"type": 5}}}))
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        provision({"json_schema_file": "bad.json"}, str(tmp_path / "gw.yaml"))
    assert f"{AT}.json_schema_file" in str(caught.value)
    assert "$.properties.a.type of the file" in str(caught.value)
    with pytest.raises(ConfigError, match="not JSON"):
        provision({"json_schema_file": "garbage.json"}, str(tmp_path / "gw.yaml"))


SIZES = [
    (0, 0),
    (65536, 65536),
    ("100", 100),
    ("100B", 100),
    ("64KiB", 65536),
    ("1MiB", 1 << 20),
    ("10MB", 10_000_000),
    ("2GiB", 2 << 30),
    ("1 KB", 1000),
]


@pytest.mark.parametrize(("text", "expected"), SIZES, ids=[str(v[0]) for v in SIZES])
def test_sizes(text: Any, expected: int) -> None:
    assert parse_size(text) == expected


PATHS = [
    ([], "$"),
    (["items", 0, "qty"], "$.items[0].qty"),
    (["a b", 3], '$["a b"][3]'),
    (["x.y"], '$["x.y"]'),
    (["_ok1"], "$._ok1"),
]


@pytest.mark.parametrize(("location", "expected"), PATHS, ids=[v[1] for v in PATHS])
def test_json_paths(location: list[Any], expected: str) -> None:
    assert json_path(location) == expected


MEDIA = [
    ("application/json", True),
    ("APPLICATION/JSON", True),
    ("application/problem+json", True),
    ("application/+json", False),
    ("text/plain", True),
    ("text/", False),
    ("application/xml", False),
    ("", False),
]


@pytest.mark.parametrize(("media", "allowed"), MEDIA, ids=[v[0] or "none" for v in MEDIA])
def test_media_type_patterns(media: str, allowed: bool) -> None:
    policy = provision({"content_types": ["application/json", "application/*+json", "text/*"]})
    assert policy._type_allowed(media.lower()) is allowed


def test_only_a_schema_buffers_the_body() -> None:
    assert provision({"max_body_bytes": "1KiB"}).needs_body == 0
    assert provision({"max_body_bytes": "1KiB", "json_schema": {}}).needs_body == 1024
    assert provision({"json_schema": {}}).needs_body == 1 << 20


@pytest.mark.parametrize(
    ("route_limit", "policy_limit", "effective"),
    [(None, "1KiB", 1024), (100, "1KiB", 100), (5000, "1KiB", 1024), (None, None, 10485760)],
)
def test_the_route_body_limit_is_the_smaller_one(
    route_limit: int | None, policy_limit: str | None, effective: int
) -> None:
    options: dict[str, Any] = {"required_headers": ["x-tenant"]}
    if policy_limit is not None:
        options["max_body_bytes"] = policy_limit
    route = {"limits": {"max_body_bytes": route_limit}} if route_limit is not None else {}
    plan = build_plan(config_for(options, route))
    (info,) = plan.routes
    assert info.max_body_bytes == effective
