"""Configuration loading: formats, ${VAR}, durations, and every error with its $.path."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw.config import (
    Config,
    Listener,
    Match,
    Route,
    Target,
    Upstream,
    load_config,
    parse_config,
    parse_duration,
    parse_listen_address,
    parse_target_url,
    substitute_env,
)
from fastgw.errors import ConfigError, ConfigErrors, FastgwError
from fastgw.schema import config_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MINIMAL = """
upstreams:
  users: {targets: [{url: "http://127.0.0.1:9001"}]}
routes:
  - {name: users, match: {paths: ["/users/{id}"]}, upstream: users}
"""

# The same configuration as examples/gateway.toml and examples/gateway.json.
SMALL_YAML = """
listen: 127.0.0.1:8080
timeouts: {upstream_read: 30s, drain: 5}
upstreams:
  backend:
    targets: [{url: "http://127.0.0.1:9001", weight: 2}]
routes:
  - name: user
    match: {paths: ["/api/users/{id}"]}
    upstream: backend
  - name: users
    match: {paths: ["/api/users"], methods: [get, post]}
    upstream: backend
  - name: static
    match: {paths: ["/static/{*path}"]}
    upstream: backend
    strip_prefix: /static
"""


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def with_route(**fields: str) -> str:
    """MINIMAL with extra YAML fields added to its route."""
    extra = "".join(f", {key}: {value}" for key, value in fields.items())
    return MINIMAL.replace("upstream: users}", f"upstream: users{extra}}}")


# (id, YAML text, expected $.path, substring of the message, substring of str(error))
ERROR_CASES = [
    ("not-a-mapping", "[1, 2]", "$", "top level must be a mapping", "got list"),
    ("empty-file", "", "$", "top level must be a mapping", "an empty file"),
    ("yaml-syntax", "routes: [\n  - a: b\n  c", "$", "YAML syntax error at line", ""),
    (
        "yaml-unquoted-wildcard",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], hosts: [*.example.com]'),
        "$",
        "YAML syntax error at line 5",
        "quote values that start with '*'",
    ),
    (
        "yaml-duplicate-key",
        MINIMAL + "workers: 1\nworkers: 2\n",
        "$",
        "duplicate key 'workers'",
        "",
    ),
    ("missing-routes", "upstreams: {}", "$", "missing required field 'routes'", ""),
    ("unknown-top-field", MINIMAL + "listn: []\n", "$", "unknown field 'listn'", "did you mean"),
    (
        "unknown-limit",
        MINIMAL + "limits: {max_header: 10}\n",
        "$.limits",
        "unknown field 'max_header'",
        "expected one of: max_header_bytes, max_headers",
    ),
    ("wrong-type", MINIMAL + "listen: 8080\n", "$.listen", "wrong type", "got 8080"),
    ("workers-word", MINIMAL + "workers: many\n", "$.workers", "invalid enum value", "many"),
    ("workers-zero", MINIMAL + "workers: 0\n", "$.workers", "out of range", "int >= 1"),
    (
        "max-headers-type",
        MINIMAL + "limits: {max_headers: lots}\n",
        "$.limits.max_headers",
        "wrong type",
        "expected int",
    ),
    (
        "header-bytes-too-small",
        MINIMAL + "limits: {max_header_bytes: 10}\n",
        "$.limits.max_header_bytes",
        "out of range",
        "int >= 1024",
    ),
    (
        "target-longer-than-header",
        MINIMAL + "limits: {max_header_bytes: 2048, max_target_bytes: 4096}\n",
        "$.limits.max_target_bytes",
        "cannot be longer than the whole header",
        "got 4096",
    ),
    (
        "negative-body",
        MINIMAL + "limits: {max_body_bytes: -1}\n",
        "$.limits.max_body_bytes",
        "out of range",
        "",
    ),
    (
        "bad-duration",
        MINIMAL + "timeouts: {client_header: 10 seconds}\n",
        "$.timeouts.client_header",
        "invalid duration",
        "got '10 seconds'",
    ),
    (
        "zero-duration",
        MINIMAL + "timeouts: {drain: 0}\n",
        "$.timeouts.drain",
        "invalid duration",
        "",
    ),
    ("listen-empty", MINIMAL + "listen: []\n", "$.listen", "must not be empty", ""),
    ("listen-no-port", MINIMAL + "listen: [localhost]\n", "$.listen[0]", "missing ':PORT'", ""),
    (
        "listen-bare-ipv6",
        MINIMAL + "listen: ['::1:80']\n",
        "$.listen[0]",
        "[ADDRESS]:PORT",
        "",
    ),
    ("listen-bad-port", MINIMAL + "listen: ['0.0.0.0:99999']\n", "$.listen[0]", "port", ""),
    (
        "listen-duplicate",
        MINIMAL + "listen: ['127.0.0.1:80', '0.0.0.0:80', '127.0.0.1:80']\n",
        "$.listen[2]",
        "duplicate listen address",
        "also $.listen[0]",
    ),
    (
        "listener-unknown-key",
        MINIMAL + "listen: [{address: '127.0.0.1:80', proxy: true}]\n",
        "$.listen[0]",
        "unknown field 'proxy'",
        "expected one of: address, proxy_protocol",
    ),
    (
        "listener-no-address",
        MINIMAL + "listen: [{proxy_protocol: true}]\n",
        "$.listen[0]",
        "missing required field 'address'",
        "",
    ),
    (
        "listener-proxy-protocol-type",
        MINIMAL + "listen: {address: '127.0.0.1:80', proxy_protocol: 'yes'}\n",
        "$.listen.proxy_protocol",
        "wrong type",
        "expected bool",
    ),
    (
        "listener-bad-address",
        MINIMAL + "listen: ['127.0.0.1:80', {address: '127.0.0.1'}]\n",
        "$.listen[1].address",
        "missing ':PORT'",
        "got '127.0.0.1'",
    ),
    (
        "listener-duplicate-of-string",
        MINIMAL + "listen: ['127.0.0.1:80', {address: '127.0.0.1:80'}]\n",
        "$.listen[1].address",
        "duplicate listen address",
        "also $.listen[0]",
    ),
    (
        "proxy-protocol-without-trusted-proxies",
        MINIMAL + "listen: ['127.0.0.1:80', {address: '127.0.0.1:81', proxy_protocol: true}]\n",
        "$.listen[1].proxy_protocol",
        "proxy_protocol needs trusted_proxies",
        "got trusted_proxies: []",
    ),
    (
        "bad-cidr",
        MINIMAL + "trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]\n",
        "$.trusted_proxies[1]",
        "invalid CIDR",
        "got '10.0.0.0/33'",
    ),
    (
        "upstream-name",
        MINIMAL.replace("routes:", "  'bad name': {targets: [{url: 'http://a'}]}\nroutes:"),
        "$.upstreams['bad name']",
        "invalid name",
        "letters, digits",
    ),
    (
        "no-targets",
        MINIMAL.replace('[{url: "http://127.0.0.1:9001"}]', "[]"),
        "$.upstreams.users.targets",
        "must not be empty",
        "",
    ),
    (
        "https-target",
        MINIMAL.replace("http://127.0.0.1:9001", "https://127.0.0.1:9001"),
        "$.upstreams.users.targets[0].url",
        "not supported yet",
        "",
    ),
    (
        "target-with-path",
        MINIMAL.replace("http://127.0.0.1:9001", "http://127.0.0.1:9001/api"),
        "$.upstreams.users.targets[0].url",
        "no path",
        "",
    ),
    (
        "target-no-host",
        MINIMAL.replace("http://127.0.0.1:9001", "http://:9001"),
        "$.upstreams.users.targets[0].url",
        "missing host",
        "",
    ),
    (
        "target-bad-port",
        MINIMAL.replace("http://127.0.0.1:9001", "http://127.0.0.1:http"),
        "$.upstreams.users.targets[0].url",
        "invalid port",
        "",
    ),
    (
        "target-weight",
        MINIMAL.replace('url: "http://127.0.0.1:9001"', 'url: "http://a", weight: 1001'),
        "$.upstreams.users.targets[0].weight",
        "out of range",
        "int <= 1000",
    ),
    (
        "keepalive-max-idle",
        MINIMAL.replace("}]}", "}], keepalive: {max_idle: -1}}"),
        "$.upstreams.users.keepalive.max_idle",
        "out of range",
        "",
    ),
    (
        "unknown-upstream",
        MINIMAL.replace("upstream: users", "upstream: orders"),
        "$.routes[0].upstream",
        "unknown upstream 'orders'",
        "(expected one of: users)",
    ),
    (
        "no-routes",
        MINIMAL.split("routes:")[0] + "routes: []\n",
        "$.routes",
        "must not be empty",
        "",
    ),
    (
        "route-missing-name",
        MINIMAL.replace("name: users, ", ""),
        "$.routes[0]",
        "missing required field 'name'",
        "",
    ),
    (
        "duplicate-route-name",
        MINIMAL + "  - {name: users, match: {paths: ['/other']}, upstream: users}\n",
        "$.routes[1].name",
        "duplicate route name 'users'",
        "also $.routes[0].name",
    ),
    (
        "relative-path",
        MINIMAL.replace('"/users/{id}"', '"users"'),
        "$.routes[0].match.paths[0]",
        "invalid value",
        "starting with '/'",
    ),
    (
        "duplicate-path",
        MINIMAL.replace('["/users/{id}"]', '["/users/{id}", "/users/{id}"]'),
        "$.routes[0].match.paths[1]",
        "duplicate path",
        "",
    ),
    (
        "no-paths",
        MINIMAL.replace('paths: ["/users/{id}"]', "paths: []"),
        "$.routes[0].match.paths",
        "must not be empty",
        "",
    ),
    (
        "bad-method",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], methods: [get, "FE TCH"]'),
        "$.routes[0].match.methods[1]",
        "invalid method",
        "an HTTP token",
    ),
    (
        "bad-host",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], hosts: ["api.example.com:80"]'),
        "$.routes[0].match.hosts[0]",
        "invalid host",
        "",
    ),
    (
        "strip-prefix-trailing-slash",
        with_route(strip_prefix="/users/"),
        "$.routes[0].strip_prefix",
        "invalid value",
        "without a trailing '/'",
    ),
    (
        "strip-prefix-not-prefix",
        with_route(strip_prefix="/use"),
        "$.routes[0].strip_prefix",
        "not a prefix of path '/users/{id}'",
        "",
    ),
    (
        "strip-and-rewrite",
        with_route(strip_prefix="/users", rewrite="'/v2/{id}'"),
        "$.routes[0].rewrite",
        "cannot be combined",
        "",
    ),
    (
        "rewrite-unknown-capture",
        with_route(rewrite="'/v2/{user}'"),
        "$.routes[0].rewrite",
        "rewrite uses {user}",
        "shared by every path: {id}",
    ),
    (
        "rewrite-capture-not-in-every-path",
        MINIMAL.replace('["/users/{id}"]', '["/users/{id}", "/me"]').replace(
            "upstream: users}", "upstream: users, rewrite: '/v2/{id}'}"
        ),
        "$.routes[0].rewrite",
        "path '/me' does not capture it",
        "",
    ),
    (
        "rewrite-star",
        with_route(rewrite="'/v2/{*id}'"),
        "$.routes[0].rewrite",
        "write {id} in rewrite",
        "",
    ),
    (
        "rewrite-unbalanced",
        with_route(rewrite="'/v2/{id'"),
        "$.routes[0].rewrite",
        "unbalanced",
        "",
    ),
    (
        "unknown-policy-group",
        with_route(groups="[public]"),
        "$.routes[0].groups[0]",
        "unknown policy group 'public'",
        "(expected a group defined under policy_groups)",
    ),
    (
        "unknown-policy-group-lists-known",
        "policy_groups: {a: [], b: []}\n" + with_route(groups="[a, c]"),
        "$.routes[0].groups[1]",
        "unknown policy group 'c'",
        "(expected one of: a, b)",
    ),
    (
        "policy-group-twice",
        "policy_groups: {a: []}\n" + with_route(groups="[a, a]"),
        "$.routes[0].groups[1]",
        "group 'a' is listed twice (also $.routes[0].groups[0])",
        "",
    ),
    (
        "policy-group-name",
        "policy_groups: {'a b': []}\n" + MINIMAL,
        "$.policy_groups['a b']",
        "invalid name",
        "letters, digits",
    ),
    (
        "global-policy-two-keys",
        "global_policies: [{a: {}, b: {}}]\n" + MINIMAL,
        "$.global_policies[0]",
        "exactly one key",
        "(expected {name: {options}}, got 2 keys)",
    ),
    (
        "group-policy-not-a-mapping",
        "policy_groups: {g: [request_headers]}\n" + MINIMAL,
        "$.policy_groups.g[0]",
        "wrong type",
        "(expected mapping, got 'request_headers')",
    ),
    (
        "policy-two-keys",
        with_route(policies="[{a: 1, b: 2}]"),
        "$.routes[0].policies[0]",
        "exactly one key",
        "",
    ),
    (
        "routes-not-a-list",
        MINIMAL.split("routes:")[0] + "routes: {users: {}}\n",
        "$.routes",
        "wrong type",
        "(expected list, got a mapping)",
    ),
    (
        "priority-type",
        with_route(priority="high"),
        "$.routes[0].priority",
        "wrong type",
        "expected int",
    ),
    (
        "preserve-host-type",
        with_route(preserve_host="'yes'"),
        "$.routes[0].preserve_host",
        "wrong type",
        "expected bool",
    ),
    (
        "match-header-name",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], headers: {"x y": "1"}'),
        "$.routes[0].match.headers['x y']",
        "invalid header name",
        "expected a token",
    ),
    (
        "match-header-value-spaces",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], headers: {x-env: " a"}'),
        "$.routes[0].match.headers['x-env']",
        "invalid header value",
        "'*' for any value",
    ),
    (
        "match-header-twice",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], headers: {X-Env: a, x-env: b}'),
        "$.routes[0].match.headers['x-env']",
        "listed twice",
        "",
    ),
    (
        "match-query-name",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], query: {"a&b": "1"}'),
        "$.routes[0].match.query['a&b']",
        "invalid query parameter name",
        "without '&'",
    ),
    (
        "match-query-value",
        MINIMAL.replace('paths: ["/users/{id}"]', 'paths: ["/u"], query: {v: "1=2"}'),
        "$.routes[0].match.query.v",
        "invalid query value",
        "",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "message", "rendered"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_config_errors(tmp_path: Path, text: str, path: str, message: str, rendered: str) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    matching = [error for error in caught.value.errors if error.path == path]
    assert matching, f"no error at {path}: {caught.value}"
    error = matching[0]
    assert message in error.message
    assert error.file == str(file)
    assert str(error).startswith(f"{file}: {path}: ")
    assert rendered in str(error)


def test_all_cross_check_errors_reported_at_once(tmp_path: Path) -> None:
    text = """
    listen: ["127.0.0.1:80", "127.0.0.1:80"]
    trusted_proxies: [nope]
    upstreams:
      users: {targets: [{url: "https://a"}]}
    routes:
      - {name: a, match: {paths: ["/a"]}, upstream: x}
      - {name: a, match: {paths: ["/b"]}, upstream: y}
    """
    with pytest.raises(ConfigErrors) as caught:
        load_config(write(tmp_path, text))
    paths = [error.path for error in caught.value.errors]
    assert paths == [
        "$.listen[1]",
        "$.trusted_proxies[0]",
        "$.upstreams.users.targets[0].url",
        "$.routes[0].upstream",
        "$.routes[1].name",
        "$.routes[1].upstream",
    ]
    assert len(str(caught.value).splitlines()) == len(paths)


def test_error_format_and_tree() -> None:
    error = ConfigError(
        "unknown upstream 'x'",
        "$.routes[2].upstream",
        file="gateway.yaml",
        expected="one of: users, orders",
    )
    assert str(error) == (
        "gateway.yaml: $.routes[2].upstream: unknown upstream 'x' (expected one of: users, orders)"
    )
    assert isinstance(error, FastgwError)
    both = ConfigErrors([error, ConfigError("bad", "$.workers", expected="int", got="'x'")])
    assert str(both).splitlines()[1] == "$.workers: bad (expected int, got 'x')"
    copied = pickle.loads(pickle.dumps(both))
    assert [str(e) for e in copied.errors] == [str(e) for e in both.errors]
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("toml", "workers = \nroutes = []", "TOML syntax error at line 1, column 11"),
        ("toml", "routes = [", "TOML syntax error at the end of the file"),
        ("json", '{"routes": [}', "JSON syntax error at line 1, column 13"),
        ("json", '{"workers": 1, "workers": 2}', "duplicate key 'workers'"),
        ("ini", "[x]", "unsupported file type"),
    ],
    ids=["toml-syntax", "toml-truncated", "json-syntax", "json-duplicate-key", "unknown-extension"],
)
def test_file_format_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    file = write(tmp_path, text, f"gateway.{name}")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert caught.value.path == "$"
    assert caught.value.file == str(file)
    assert message in caught.value.message


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "workers: 1\nroutes: [a\nlisten: x\n"))
    assert (caught.value.line, caught.value.column) == (3, 7)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.yaml")


def test_examples_in_every_format_are_equal(tmp_path: Path) -> None:
    from_yaml = load_config(write(tmp_path, SMALL_YAML))
    assert load_config(EXAMPLES / "gateway.toml") == from_yaml
    assert load_config(EXAMPLES / "gateway.json") == from_yaml
    assert from_yaml.listen == ("127.0.0.1:8080",)
    assert from_yaml.routes[1].match.methods == ("GET", "POST")
    assert from_yaml.timeouts.upstream_read == 30.0
    assert from_yaml.timeouts.client_header == 10.0


def test_annotated_example_loads() -> None:
    config = load_config(EXAMPLES / "gateway.yaml")
    assert config.listen == ("127.0.0.1:8080",)
    assert list(config.upstreams) == ["backend"]
    assert config.upstreams["backend"].targets[0].url == "http://127.0.0.1:9001"
    by_name = {route.name: route for route in config.routes}
    assert by_name["static"].strip_prefix == "/static"
    assert by_name["orders-v1"].rewrite == "/orders/{order_id}"
    assert "*.admin.example.com" in by_name["admin-site"].match.hosts


def test_defaults_and_normalisation() -> None:
    config = parse_config(
        {
            "upstreams": {"u": {"targets": [{"url": "http://h"}]}},
            "routes": [
                {
                    "name": "r",
                    "match": {"paths": ["/"], "hosts": ["API.Example.COM"], "methods": ["get"]},
                    "upstream": "u",
                }
            ],
        }
    )
    assert config.listen == ("127.0.0.1:8080",)
    assert config.workers == 1
    assert config.limits.max_header_bytes == 32768
    assert config.limits.max_body_bytes == 10485760
    assert config.timeouts.keepalive_idle == 75.0
    assert config.timeouts.drain == 30.0
    assert config.upstreams["u"].keepalive.max_idle == 64
    assert config.upstreams["u"].targets[0].weight == 1
    route = config.routes[0]
    assert route.match.hosts == ("api.example.com",)
    assert route.match.methods == ("GET",)
    assert (route.preserve_host, route.priority, route.policies) == (False, 0, ())
    assert (route.groups, config.global_policies, config.policy_groups) == ((), (), {})
    assert parse_config(config) == config


DURATIONS = [
    ("250ms", 0.25),
    ("10s", 10.0),
    ("5m", 300.0),
    ("1h", 3600.0),
    ("1.5s", 1.5),
    (".5s", 0.5),
    (3, 3.0),
    (0.1, 0.1),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS, ids=[str(d[0]) for d in DURATIONS])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


BAD_DURATIONS = ["10", "10 s", "10sec", "-1s", "0s", "1w", "", 0, -5, True, None, "nan", [1]]


@pytest.mark.parametrize("value", BAD_DURATIONS, ids=[repr(v) for v in BAD_DURATIONS])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)


def test_duration_in_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + "timeouts: {client_header: 250ms}\n"))
    assert config.timeouts.client_header == 0.25


def env_config(value: str) -> str:
    """MINIMAL with `value` as its target URL."""
    return MINIMAL.replace("http://127.0.0.1:9001", value)


@pytest.mark.parametrize(
    ("value", "env", "url"),
    [
        ("http://${HOST}:9001", {"HOST": "10.0.0.1"}, "http://10.0.0.1:9001"),
        ("http://${HOST:-127.0.0.2}", {}, "http://127.0.0.2"),
        ("http://${HOST:-127.0.0.2}", {"HOST": ""}, "http://127.0.0.2"),
        ("http://${HOST:-127.0.0.2}", {"HOST": "h1"}, "http://h1"),
        ("http://${A}${B}", {"A": "h", "B": ":81"}, "http://h:81"),
        ("http://h$x", {}, "http://h$x"),
    ],
    ids=["set", "default-unset", "default-empty", "default-ignored", "two", "lone-dollar"],
)
def test_env_substitution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, env: dict[str, str], url: str
) -> None:
    monkeypatch.delenv("HOST", raising=False)
    for name, content in env.items():
        monkeypatch.setenv(name, content)
    config = load_config(write(tmp_path, env_config(value)))
    assert config.upstreams["users"].targets[0].url == url


def test_env_escape_keeps_literal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("B", "not-used")
    config = load_config(write(tmp_path, MINIMAL.replace("name: users", "name: 'a$${B}$$c'")))
    assert config.routes[0].name == "a${B}$$c"


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="${}:-aZ_1 ", max_size=30))
def test_env_escaping_round_trips_any_text(text: str) -> None:
    escaped = text.replace("${", "$${")
    assert substitute_env({"value": escaped}, environ={}) == {"value": text}


def test_env_not_substituted_in_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME", "users")
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "upstreams": {"${NAME}": {"targets": [{"url": "http://h"}]}},
                "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "${NAME}"}],
            }
        )
    assert caught.value.path == "$.upstreams['${NAME}']"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://${FASTGW_TEST_UNSET}", "environment variable FASTGW_TEST_UNSET is not set"),
        ("http://${1BAD}", "invalid environment reference '${1BAD}'"),
        ("http://${OPEN", "invalid environment reference '${'"),
        ("http://${A:-${B}}", "invalid environment reference"),
    ],
    ids=["unset", "bad-name", "unterminated", "nested"],
)
def test_env_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.delenv("FASTGW_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, env_config(value)))
    assert caught.value.path == "$.upstreams.users.targets[0].url"
    assert message in caught.value.message


def test_env_errors_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTGW_TEST_A", raising=False)
    monkeypatch.delenv("FASTGW_TEST_B", raising=False)
    with pytest.raises(ConfigErrors) as caught:
        parse_config({"listen": ["${FASTGW_TEST_A}", "${FASTGW_TEST_B}"]}, file="g.yaml")
    # The unset references first; then the rest of the file's errors, in the same run.
    assert [e.path for e in caught.value.errors][:2] == ["$.listen[0]", "$.listen[1]"]
    assert all(e.file == "g.yaml" for e in caught.value.errors)


LISTEN = [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("localhost:80", ("localhost", 80)),
    ("[::1]:9000", ("::1", 9000)),
]


@pytest.mark.parametrize(("address", "parts"), LISTEN, ids=[a for a, _ in LISTEN])
def test_listen_addresses(address: str, parts: tuple[str, int]) -> None:
    assert parse_listen_address(address) == parts


TARGETS = [
    ("http://127.0.0.1:9001", ("127.0.0.1", 9001)),
    ("http://backend", ("backend", 80)),
    ("HTTP://Backend.Local/", ("backend.local", 80)),
    ("http://[::1]:81", ("::1", 81)),
    ("http://[::1]", ("::1", 80)),
]


@pytest.mark.parametrize(("url", "parts"), TARGETS, ids=[u for u, _ in TARGETS])
def test_target_urls(url: str, parts: tuple[str, int]) -> None:
    assert parse_target_url(url) == parts


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:80", [("127.0.0.1:80", False)]),
        ({"address": "127.0.0.1:80", "proxy_protocol": True}, [("127.0.0.1:80", True)]),
        (["127.0.0.1:80", "[::1]:80"], [("127.0.0.1:80", False), ("[::1]:80", False)]),
        (
            ["127.0.0.1:80", {"address": "127.0.0.1:81", "proxy_protocol": True}],
            [("127.0.0.1:80", False), ("127.0.0.1:81", True)],
        ),
        ([{"address": "127.0.0.1:81"}], [("127.0.0.1:81", False)]),
    ],
    ids=["string", "mapping", "strings", "mixed", "mapping-default"],
)
def test_listen_entries(listen: object, expected: list[tuple[str, bool]]) -> None:
    data = yaml.safe_load(MINIMAL)
    config = parse_config({**data, "listen": listen, "trusted_proxies": ["10.0.0.0/8"]})
    assert [(entry.address, entry.proxy_protocol) for entry in config.listeners] == expected
    assert all(isinstance(entry, Listener) for entry in config.listeners)


def test_config_built_in_python_is_checked() -> None:
    route = Route(name="r", match=Match(paths=("/",)), upstream="u")
    config = Config(
        listen="127.0.0.1:0",
        upstreams={"u": Upstream(targets=(Target(url="http://h", weight=0),))},
        routes=(route,),
    )
    assert config.listen == ("127.0.0.1:0",)
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    assert caught.value.path == "$.upstreams.u.targets[0].weight"


def test_config_is_frozen() -> None:
    config = parse_config(
        {
            "upstreams": {"u": {"targets": [{"url": "http://h"}]}},
            "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "u"}],
        }
    )
    with pytest.raises(AttributeError):
        config.workers = 2  # type: ignore[misc]
    assert isinstance(config, Config)


def test_schema() -> None:
    schema = config_schema()
    text = json.dumps(schema)
    assert json.loads(text) == schema
    config = schema["$defs"]["Config"]
    assert set(config["required"]) == {"upstreams", "routes"}
    assert config["additionalProperties"] is False
    assert "Route" in schema["$defs"] and "Upstream" in schema["$defs"]
    assert "anyOf" in schema["$defs"]["Timeouts"]["properties"]["client_header"]
    assert schema["title"] == "fastgw configuration"
    assert "fastgw check" in schema["description"]


def _schema_validator() -> Any:
    import jsonschema

    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in EXAMPLES.glob("*.yaml")), ids=lambda name: name
)
def test_examples_validate_against_the_schema(name: str) -> None:
    data = yaml.safe_load((EXAMPLES / name).read_text())
    errors = [error.message for error in _schema_validator().iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize(
    ("entry", "valid"),
    [
        ({"rate_limit": {"limits": [{"rate": 10, "per": "1s"}]}}, True),
        ({"rate_limit": {"limits": [{"rate": 10}], "fail_opn": True}}, False),
        ({"request_headers": {"set": {"x-a": "b"}}}, True),
        ({"request_headers": {"sett": {"x-a": "b"}}}, False),
        ({"ip_restriction": {"allow": ["10.0.0.0/8"], "deny": []}}, True),
        ({"ip_restriction": {"alow": ["10.0.0.0/8"]}}, False),
        ({"examples.custom_policy:TenantGuard": {"allow": ["a"]}}, True),
        ({"no_such_builtin": {}}, False),
    ],
    ids=[
        "rate-limit",
        "rate-limit-typo",
        "headers",
        "headers-typo",
        "ip-restriction",
        "ip-restriction-typo",
        "python-policy",
        "unknown",
    ],
)
def test_schema_knows_each_builtin_policy(entry: dict[str, Any], valid: bool) -> None:
    data = {
        "upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9"}]}},
        "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "u", "policies": [entry]}],
    }
    assert _schema_validator().is_valid(data) is valid


def test_an_error_inside_a_reported_section_is_not_reported_again() -> None:
    from fastgw.config.schema import reported_at

    reported = ["$", "$.routes[1].timeouts"]
    assert reported_at("$.routes[1].timeouts", reported)
    assert reported_at("$.routes[1].timeouts.read", reported)
    assert reported_at("$.routes[1].timeouts[0]", reported)
    assert not reported_at("$.routes[1].timeouts_x", reported)
    assert not reported_at("$.routes[1].name", reported)
    # "$" (a whole-file error such as a missing field) covers only itself
    assert not reported_at("$.routes[0].name", reported)
