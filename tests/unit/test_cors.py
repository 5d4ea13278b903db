"""cors: config errors at their $.path, origin normalisation and the origin table
(exact origins, `*.example.com` patterns, `*`, `null`)."""

from __future__ import annotations

from typing import Any

import pytest

from fastgw.config import parse_config
from fastgw.errors import ConfigError
from fastgw.plan import build_plan, chain_order
from fastgw.policy import build_route_chains
from fastgw.policy.cors import Cors, normalise_origin

BASE: dict[str, Any] = {"upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9001"}]}}}
AT = "$.routes[0].policies[0].cors"


def chains(policies: list[dict[str, Any]]) -> Any:
    config = parse_config(
        {
            **BASE,
            "routes": [
                {"name": "r", "match": {"paths": ["/a"]}, "upstream": "u", "policies": policies}
            ],
        }
    )
    built = build_route_chains(config, [()], file="gw.yaml")
    if built.errors:
        raise built.errors[0]
    return built


def provision(options: dict[str, Any]) -> Cors:
    policy = chains([{"cors": options}])[0].policies[0].policy
    assert isinstance(policy, Cors)
    return policy


INVALID = [
    ("no-origins", {"origins": []}, f"{AT}.origins", "at least one origin"),
    ("missing-origins", {}, AT, "origins"),
    (
        "star-with-credentials",
        {"origins": ["*"], "credentials": True},
        f"{AT}.origins[0]",
        "credentials",
    ),
    ("star-with-others", {"origins": ["https://a.test", "*"]}, f"{AT}.origins[1]", "only"),
    (
        "any-header-with-credentials",
        {"origins": ["https://a.test"], "credentials": True, "headers": "*"},
        f"{AT}.headers",
        "credentials",
    ),
    ("path", {"origins": ["https://a.test/app"]}, f"{AT}.origins[0]", "not an origin"),
    ("trailing-slash", {"origins": ["https://a.test/"]}, f"{AT}.origins[0]", "not an origin"),
    ("no-scheme", {"origins": ["a.test"]}, f"{AT}.origins[0]", "not an origin"),
    ("userinfo", {"origins": ["https://u@a.test"]}, f"{AT}.origins[0]", "not an origin"),
    ("bad-port", {"origins": ["https://a.test:99999"]}, f"{AT}.origins[0]", "not an origin"),
    ("inner-star", {"origins": ["https://a*.test.com"]}, f"{AT}.origins[0]", "not an origin"),
    (
        "two-stars",
        {"origins": ["https://*.*.example.com"]},
        f"{AT}.origins[0]",
        "not an origin",
    ),
    ("tld-star", {"origins": ["https://*.com"]}, f"{AT}.origins[0]", "top-level"),
    ("unicode-host", {"origins": ["https://bücher.example"]}, f"{AT}.origins[0]", "xn--"),
    ("bad-method", {"origins": ["https://a.test"], "methods": ["GE T"]}, f"{AT}.methods[0]", ""),
    ("no-methods", {"origins": ["https://a.test"], "methods": []}, f"{AT}.methods", ""),
    (
        "bad-header",
        {"origins": ["https://a.test"], "headers": ["ok", "bad header"]},
        f"{AT}.headers[1]",
        "invalid header name",
    ),
    (
        "bad-expose",
        {"origins": ["https://a.test"], "expose_headers": ["x:y"]},
        f"{AT}.expose_headers[0]",
        "invalid header name",
    ),
    ("bad-max-age", {"origins": ["https://a.test"], "max_age": "soon"}, f"{AT}.max_age", ""),
    ("unknown-key", {"origins": ["https://a.test"], "allow_origin": []}, AT, "allow_origin"),
]


@pytest.mark.parametrize(
    ("options", "path", "message"), [v[1:] for v in INVALID], ids=[v[0] for v in INVALID]
)
def test_invalid_configs(options: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        provision(options)
    text = str(caught.value)
    assert text.startswith(f"gw.yaml: {path}"), text
    assert message in text


NORMALISED = [
    ("https://App.Example.COM", ("https", "app.example.com", 443)),
    ("HTTPS://app.example.com:443", ("https", "app.example.com", 443)),
    ("http://localhost:3000", ("http", "localhost", 3000)),
    ("http://127.0.0.1", ("http", "127.0.0.1", 80)),
    ("http://[::1]:8080", ("http", "[::1]", 8080)),
    ("https://a.test/", None),
    ("https://a.test/path", None),
    ("https://a.test?x", None),
    ("https://user@a.test", None),
    ("https://a..test", None),
    ("https://-a.test", None),
    ("https://a_b.test", None),
    ("https://a.test:0", None),
    ("https://a.test:", None),
    ("ftp://a.test", None),  # no default port known: not a web origin
    ("null", None),
    ("", None),
    ("https://a.test\r\nx-evil: 1", None),
]


@pytest.mark.parametrize(("text", "expected"), NORMALISED, ids=[v[0] for v in NORMALISED])
def test_normalise_origin(text: str, expected: Any) -> None:
    assert normalise_origin(text) == expected


TABLE = {
    "origins": ["https://app.example.com", "https://*.example.com", "http://localhost:3000"],
    "credentials": True,
}
DECISIONS = [
    ("exact", "https://app.example.com", "https://app.example.com"),
    ("exact-case", "HTTPS://APP.EXAMPLE.COM", "https://app.example.com"),
    ("exact-default-port", "https://app.example.com:443", "https://app.example.com"),
    ("one-label", "https://api.example.com", "https://api.example.com"),
    ("two-labels", "https://a.b.example.com", "https://a.b.example.com"),
    ("bare-domain", "https://example.com", None),
    ("lookalike", "https://evil-example.com", None),
    ("lookalike-label", "https://xexample.com", None),
    ("suffix-attack", "https://app.example.com.evil.test", None),
    ("other-scheme", "http://app.example.com", None),
    ("pattern-other-scheme", "http://api.example.com", None),
    ("other-port", "https://app.example.com:8443", None),
    ("pattern-other-port", "https://api.example.com:8443", None),
    ("localhost-port", "http://localhost:3000", "http://localhost:3000"),
    ("localhost-other-port", "http://localhost:3001", None),
    ("null-unlisted", "null", None),
    ("garbage", "not an origin", None),
    ("with-path", "https://app.example.com/", None),
]


@pytest.mark.parametrize(
    ("origin", "expected"), [v[1:] for v in DECISIONS], ids=[v[0] for v in DECISIONS]
)
def test_origin_table(origin: str, expected: str | None) -> None:
    assert provision(TABLE).allowed_origin(origin) == expected


def test_star_answers_star_never_the_origin() -> None:
    policy = provision({"origins": ["*"]})
    assert policy.allowed_origin("https://anyone.test") == "*"
    assert policy.allowed_origin("null") == "*"


def test_null_only_when_listed() -> None:
    policy = provision({"origins": ["null", "https://a.test"]})
    assert policy.allowed_origin("null") == "null"
    assert policy.allowed_origin("https://b.test") is None


def test_config_values_are_precomputed() -> None:
    policy = provision(
        {
            "origins": ["https://a.test"],
            "methods": ["get", "POST", "GET"],
            "headers": ["Content-Type", "authorization"],
            "expose_headers": ["X-Request-ID"],
            "max_age": "10m",
        }
    )
    assert policy.allow_methods == "GET, POST"
    assert policy.allow_headers == "content-type, authorization"
    assert policy.expose == "x-request-id"
    assert policy.max_age == "600"


def test_cors_moves_before_authentication() -> None:
    built = chains([{"key_auth": {}}, {"cors": {"origins": ["https://a.test"]}}])
    assert [p.name for p in chain_order(built[0])] == ["cors", "key_auth"]


@pytest.mark.parametrize(
    ("methods", "warned"),
    [([], False), (["GET", "OPTIONS"], False), (["GET", "POST"], True)],
    ids=["any", "with-options", "without-options"],
)
def test_a_route_that_refuses_options_is_a_warning(methods: list[str], warned: bool) -> None:
    config = parse_config(
        {
            **BASE,
            "routes": [
                {
                    "name": "r",
                    "match": {"paths": ["/a"], "methods": methods},
                    "upstream": "u",
                    "policies": [{"cors": {"origins": ["https://a.test"]}}],
                }
            ],
        }
    )
    plan = build_plan(config, "gw.yaml")
    messages = [str(w) for w in plan.warnings]
    if warned:
        assert messages == [
            f"gw.yaml: {AT[: -len('.cors')]}: cors on route 'r' needs OPTIONS requests, which "
            "the route's match.methods answers with 405 before any policy runs; add them to "
            "match.methods"
        ]
    else:
        assert messages == []
