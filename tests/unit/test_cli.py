"""The `fastgw` command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastgw
from fastgw.cli import format_route_table

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

INVALID = """
workers: 1
upstreams:
  users: {targets: [{url: "http://127.0.0.1:9001"}]}
routes:
  - {name: a, match: {paths: ["/a"]}, upstream: orders}
  - {name: a, match: {paths: ["/b"]}, upstream: users}
"""


def fastgw_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # From the repo root, so "examples.custom_policy:TenantGuard" imports as in the docs.
    return subprocess.run(
        [sys.executable, "-m", "fastgw", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "name", ["gateway.yaml", "gateway.toml", "gateway.json", "behind-load-balancer.yaml"]
)
def test_check_valid(name: str) -> None:
    result = fastgw_cli("check", EXAMPLES / name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{EXAMPLES / name}: ok\n"


def test_check_rejects_proxy_protocol_nobody_may_use(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    text = (EXAMPLES / "behind-load-balancer.yaml").read_text()
    file.write_text(text.replace('trusted_proxies: ["10.0.0.0/24"]', "trusted_proxies: []"))
    result = fastgw_cli("check", file)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"{file}: $.listen[0].proxy_protocol: proxy_protocol needs trusted_proxies"
    )


def test_check_invalid_lists_every_error(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(INVALID)
    result = fastgw_cli("check", EXAMPLES / "gateway.json", file)
    assert result.returncode == 1
    assert result.stdout == f"{EXAMPLES / 'gateway.json'}: ok\n"
    assert result.stderr.splitlines() == [
        f"{file}: $.routes[0].upstream: unknown upstream 'orders' (expected one of: users)",
        f"{file}: $.routes[1].name: duplicate route name 'a' (also $.routes[0].name)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workers: [", "$: YAML syntax error at line 1, column 11"),
        (INVALID.replace("workers: 1", "workers: 1.5"), "$.workers: wrong type (expected int"),
    ],
    ids=["syntax", "type"],
)
def test_check_decode_errors(tmp_path: Path, text: str, expected: str) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(text)
    result = fastgw_cli("check", file)
    assert result.returncode == 1
    assert f"{file}: {expected}" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    result = fastgw_cli("check", tmp_path / "absent.yaml")
    assert result.returncode == 1
    assert "absent.yaml: $: cannot read the file" in result.stderr
    assert "Traceback" not in result.stderr


def test_routes_table() -> None:
    result = fastgw_cli("routes", EXAMPLES / "gateway.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "HOSTS", "METHODS", "PATTERN"]
    names = {line.split()[0] for line in lines[1:]}
    assert names == {
        "user",
        "users",
        "static",
        "orders-v1",
        "admin-site",
        "tenants",
        "maintenance",
        "moved",
    }


def test_routes_explain() -> None:
    result = fastgw_cli(
        "routes", EXAMPLES / "gateway.yaml", "--explain", "GET", "http://localhost/api/users/7"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_routes_invalid_config(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(INVALID)
    result = fastgw_cli("routes", file)
    assert result.returncode == 1
    assert f"{file}: $.routes[0].upstream" in result.stderr


def test_run_reports_config_errors(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(INVALID)
    result = fastgw_cli("run", "-c", file)
    assert result.returncode == 1
    assert "$.routes[0].upstream: unknown upstream 'orders'" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema() -> None:
    result = fastgw_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    properties = schema["$defs"]["Config"]["properties"]
    assert {"listen", "upstreams", "routes", "limits", "timeouts"} <= set(properties)
    assert result.stdout.startswith('{\n  "')


def test_version() -> None:
    result = fastgw_cli("version")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"fastgw {fastgw.__version__}"


@pytest.mark.parametrize(
    "args",
    [(), ("nope",), ("check",), ("run",), ("run", "-c", "x.yaml", "--workers", "0")],
    ids=["no-command", "unknown-command", "check-no-file", "run-no-config", "zero-workers"],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = fastgw_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: fastgw")
    assert "Traceback" not in result.stderr


def test_route_table_is_aligned() -> None:
    table = format_route_table(
        [
            {
                "name": "users",
                "hosts": [],
                "pattern": "/users/{id}",
                "methods": ["GET", "POST"],
                "priority": 0,
                "upstream": "backend",
                "rewrite": "/v2/users/{id}",
                "strip_prefix": None,
            },
            {
                "name": "static-files",
                "hosts": ["a.example.com", "*.example.com"],
                "pattern": "/static/{*path}",
                "methods": [],
                "priority": 10,
                "upstream": "cdn",
                "rewrite": None,
                "strip_prefix": "/static",
            },
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "NAME",
        "HOSTS",
        "METHODS",
        "PATTERN",
        "PRIORITY",
        "UPSTREAM",
        "POLICIES",
        "FORWARD",
    ]
    assert lines[1].split() == [
        "users",
        "*",
        "GET,POST",
        "/users/{id}",
        "0",
        "backend",
        "-",
        "rewrite",
        "/v2/users/{id}",
    ]
    assert lines[2].split()[1] == "a.example.com,*.example.com"
    assert lines[2].endswith("strip_prefix /static")
    column = lines[0].index("PATTERN")
    assert lines[1][column:].startswith("/users/{id}")
    assert lines[2][column:].startswith("/static/{*path}")


POLICY_FAILURES = """
upstreams:
  app: {targets: [{url: "http://127.0.0.1:9001"}]}
global_policies:
  - response_headers: {set: {x-served-by: fastgw}}
routes:
  - {name: ok, match: {paths: ["/ok"]}, upstream: app}
  - name: vars
    match: {paths: ["/v/{id}"]}
    upstream: app
    policies:
      - request_headers: {set: {x-user: "{id}", x-a: "$nope"}}
  - name: tenants
    match: {paths: ["/t/{*rest}"]}
    upstream: app
    policies:
      - "examples.custom_policy:TenantGuard": {allow: []}
"""


def test_check_reports_policies_that_fail_provisioning(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(POLICY_FAILURES)
    result = fastgw_cli("check", file)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(
        f"{file}: $.routes[1].policies[0].request_headers.set['x-a']: unknown variable $nope"
    )
    assert lines[1] == (
        f"{file}: $.routes[2].policies[0]['examples.custom_policy:TenantGuard'].allow: "
        "no tenant is allowed: list at least one"
    )
    assert "Traceback" not in result.stderr


def test_routes_lists_each_policy_chain() -> None:
    result = fastgw_cli("routes", EXAMPLES / "gateway.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    column = lines[0].index("POLICIES")
    chains = {line.split()[0]: line[column:].split()[0] for line in lines[1:]}
    # global policies first, then the groups' (traced), then the route's own
    assert chains["user"] == "response_headers,request_headers,request_headers,rate_limit"
    assert chains["users"] == "response_headers"
    assert chains["tenants"] == "response_headers,examples.custom_policy:TenantGuard"
    assert chains["maintenance"] == "response_headers,direct_response"
    assert chains["moved"] == "response_headers,redirect"


def test_route_table_marks_disabled_chains() -> None:
    row = {
        "name": "t",
        "hosts": [],
        "pattern": "/t",
        "methods": [],
        "priority": 0,
        "upstream": "app",
        "rewrite": None,
        "strip_prefix": None,
    }
    table = format_route_table(
        [
            {**row, "policies": ("request_headers", "mod:Guard"), "disabled": True},
            {**row, "name": "u", "policies": ("redirect",), "disabled": False},
            {**row, "name": "v", "policies": (), "disabled": False},
        ]
    )
    rows = [line.split() for line in table.splitlines()[1:]]
    assert [r[6] for r in rows] == ["DISABLED:request_headers,mod:Guard", "redirect", "-"]
