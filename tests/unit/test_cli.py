"""The `fastgw` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
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


def fastgw_cli(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # From the repo root by default, so "examples.custom_policy:TenantGuard" imports as in
    # the docs.
    return subprocess.run(
        [sys.executable, "-m", "fastgw", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


EXAMPLE_CONFIGS = sorted(
    path.name for pattern in ("*.yaml", "*.toml", "*.json") for path in EXAMPLES.glob(pattern)
)


@pytest.mark.parametrize("name", EXAMPLE_CONFIGS)
def test_check_valid(name: str) -> None:
    """Every example config passes `fastgw check` as shipped."""
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
        "uploads",
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
    lines = result.stdout.splitlines()
    # Route names and the rule that decided, not internal ids.
    assert "winner: route 'user' '/api/users/{id}' [priority 0, any host]" in lines
    assert lines[-1] == "=> route 'user' (/api/users/{id}) -> upstream 'backend' with id=7"
    assert "pattern 0" not in result.stdout and "match()" not in result.stdout


EXPLAIN_ROUTES = """
upstreams:
  u: {targets: [{url: "http://127.0.0.1:9001"}]}
routes:
  - {name: one, match: {paths: ["/a/{id}"], methods: [GET]}, upstream: u}
  - {name: rest, match: {paths: ["/a/{*rest}"]}, upstream: u}
"""


@pytest.mark.parametrize(
    ("method", "url", "winner", "why"),
    [
        ("GET", "/a/x", "winner: route 'one' '/a/{id}'", "{param} beats {*rest} at segment 2"),
        ("POST", "/a/x", "winner: route 'rest' '/a/{*rest}'", "the path patterns before it"),
        ("get", "http://any.example/a/x", "winner: route 'one'", "over route 'rest'"),
    ],
    ids=["path-only", "method-decides", "absolute-url"],
)
def test_routes_explain_says_why(
    tmp_path: Path, method: str, url: str, winner: str, why: str
) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(EXPLAIN_ROUTES)
    result = fastgw_cli("routes", file, "--explain", method, url)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith(winner) for line in result.stdout.splitlines()), result.stdout
    assert why in result.stdout


@pytest.mark.parametrize(
    ("method", "url"),
    [("GET", "ftp://x/a"), ("GET", "a/x"), ("GE T", "/a/x")],
    ids=["other-scheme", "relative", "bad-method"],
)
def test_routes_explain_refuses_what_is_no_request(tmp_path: Path, method: str, url: str) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(EXPLAIN_ROUTES)
    result = fastgw_cli("routes", file, "--explain", method, url)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("fastgw: error: not ")


ALL_ERRORS = """
timeouts: {upstream_read: 10x}
upstreams:
  users: {targets: [{url: "http://127.0.0.1:9001"}]}
routes:
  - name: a
    match: {paths: ["/a"]}
    upstrem: users
  - name: b
    match: {paths: ["/b"]}
    upstream: nope
  - name: b
    match: {paths: ["/c"]}
    upstream: users
    policies:
      - rate_limit: {limits: [{rate: many}]}
"""


def test_check_reports_every_error_in_one_run(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(ALL_ERRORS)
    result = fastgw_cli("check", file)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    expected = [
        "$.timeouts.upstream_read: invalid duration",
        "$.routes[0]: unknown field 'upstrem', did you mean 'upstream'?",
        "$.routes[0]: missing required field 'upstream'",
        "$.routes[1].upstream: unknown upstream 'nope'",
        "$.routes[2].name: duplicate route name 'b' (also $.routes[1].name)",
        "$.routes[2].policies[0].rate_limit.limits[0].rate: wrong type",
    ]
    assert len(lines) == len(expected), result.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"{file}: {start}"), line


BROKEN_ROUTE = """
upstreams:
  users: {targets: [{url: "http://127.0.0.1:9001"}]}
routes:
  - {name: a, match: {paths: ["/a"]}, upstream: users}
  - name: a
    match: {paths: ["/b/{id"]}
    upstream: users
    timeouts: {connect: forever, read: 5s}
    limits: {max_body_bytes: lots}
    policies:
      - rate_limit: {limits: [{rate: -1}]}
"""


def test_check_keeps_a_route_whose_own_section_fails_to_decode(tmp_path: Path) -> None:
    """A bad `timeouts` or `limits` does not drop its route from the later checks: its
    duplicate name, path pattern and policy config are reported in the same run, once."""
    file = tmp_path / "gateway.yaml"
    file.write_text(BROKEN_ROUTE)
    result = fastgw_cli("check", file)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    expected = [
        "$.routes[1].timeouts.connect: invalid duration",
        "$.routes[1].limits.max_body_bytes: wrong type",
        "$.routes[1].name: duplicate route name 'a' (also $.routes[0].name)",
        "$.routes[1].match.paths[0]: path pattern '/b/{id'",
        "$.routes[1].policies[0].rate_limit.limits[0].rate: value out of range",
    ]
    assert len(lines) == len(expected), result.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"{file}: {start}"), line


def test_check_fails_a_config_that_cannot_be_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected failure while building the plan is an error of its own when nothing
    else is wrong: a config that cannot be built never passes `fastgw check`."""
    import fastgw.plan
    from fastgw.validate import check_file

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no plan today (redis://:pw-77@db)")

    file = tmp_path / "gateway.yaml"
    file.write_text(BROKEN_ROUTE.split("  - name: a")[0])  # the valid first route alone
    assert check_file(str(file)) == ([], [])
    monkeypatch.setattr(fastgw.plan, "build_plan", broken)
    errors, _ = check_file(str(file))
    assert [str(error) for error in errors] == [
        f"{file}: $: the configuration cannot be built: RuntimeError: no plan today "
        "(redis://:***redacted***@db)"
    ]
    # With errors of its own the file reports those, not the failure they caused.
    file.write_text(INVALID)
    errors, _ = check_file(str(file))
    assert errors and not any("cannot be built" in str(error) for error in errors)


def test_check_warns_about_a_glob_segment(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(EXPLAIN_ROUTES.replace('"/a/{*rest}"', '"/y/*"'))
    result = fastgw_cli("check", file)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{file}: ok\n"
    assert result.stderr.startswith(f"warning: {file}: $.routes[1].match.paths[0]: ")
    assert "did you mean '/y/{*rest}'" in result.stderr


def test_check_explains_a_chain_order_that_cannot_work(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(
        "consumers: [{name: a, credentials: [{key_auth: {key: k-0123456789}}]}]\n"
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:9001'}]}}\n"
        "routes:\n"
        "  - {name: r, match: {paths: [/a]}, upstream: u,\n"
        "     policies: [{acl: {allow: [g]}}, {key_auth: {}}]}\n"
    )
    result = fastgw_cli("check", file)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{file}: ok\n"
    assert f"warning: {file}: $.routes[0].policies[0]: acl on route 'r' runs before any " in (
        result.stderr
    )
    assert f"warning: {file}: $.routes[0].policies[1]: key_auth on route 'r' runs after" in (
        result.stderr
    )
    assert "k-0123456789" not in result.stderr


def test_check_never_prints_a_secret(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(
        'admin: {listen: "127.0.0.1:9901", token: "${FASTGW_ADMIN_TOKEN}"}\n' + EXPLAIN_ROUTES
    )
    env = {**os.environ, "FASTGW_ADMIN_TOKEN": "short"}
    result = fastgw_cli("check", file, env=env)
    assert result.returncode == 1
    assert "$.admin.token" in result.stderr
    assert "short" not in result.stderr


def test_run_takes_the_file_without_c(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(INVALID)
    result = fastgw_cli("run", file)
    assert result.returncode == 1
    assert f"{file}: $.routes[0].upstream" in result.stderr


def test_version_flag() -> None:
    result = fastgw_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"fastgw {fastgw.__version__}\n"


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
                "connect_timeout": 0.25,
                "read_timeout": 30.0,
                "send_timeout": 90.0,
                "max_body_bytes": 1048576,
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
        "CONNECT/READ/SEND",
        "MAX_BODY",
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
        "250ms/30s/90s",
        "1MiB",
        "rewrite",
        "/v2/users/{id}",
    ]
    # a row without the values (an older admin API) shows "-"
    assert lines[2].split()[7:9] == ["-", "-"]
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
    assert chains["tenants"] == "response_headers,custom_policy:TenantGuard"
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


POLICY_MODULE = """
from fastgw.policy import Policy, PolicyConfig


class Stamp(Policy):
    class Config(PolicyConfig):
        value: str = "x"

    def on_request(self, request):
        request.set_header("x-stamp", self.config.value)
"""


def _policy_config(reference: str, python_path: str | None = None) -> str:
    lines = [f"python_path: [{python_path}]"] if python_path else []
    lines += [
        "upstreams:",
        '  u: {targets: [{url: "http://127.0.0.1:9001"}]}',
        "routes:",
        '  - {name: r, match: {paths: ["/r"]}, upstream: u, policies: [{"' + reference + '": {}}]}',
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("layout", "reference", "python_path"),
    [
        ("beside", "stamp_policy:Stamp", None),
        ("package-beside", "mypolicies.stamp:Stamp", None),
        ("python-path", "stamp_policy:Stamp", "../lib"),
    ],
    ids=["module-beside-config", "package-beside-config", "python_path-relative"],
)
def test_check_finds_policies_from_the_config_folder(
    tmp_path: Path, layout: str, reference: str, python_path: str | None
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    if layout == "beside":
        (conf / "stamp_policy.py").write_text(POLICY_MODULE)
    elif layout == "package-beside":
        (conf / "mypolicies").mkdir()
        (conf / "mypolicies" / "__init__.py").write_text("")
        (conf / "mypolicies" / "stamp.py").write_text(POLICY_MODULE)
    else:
        (tmp_path / "lib").mkdir()
        (tmp_path / "lib" / "stamp_policy.py").write_text(POLICY_MODULE)
    file = conf / "gateway.yaml"
    file.write_text(_policy_config(reference, python_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Run from another folder: only the config's own folder and python_path can find it.
    result = fastgw_cli("check", file, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{file}: ok\n"


def test_check_says_where_it_looked_for_a_policy(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(_policy_config("no_such_policy_module:X", "lib"))
    result = fastgw_cli("check", file, cwd=tmp_path)
    assert result.returncode == 1
    assert "No module named 'no_such_policy_module'" in result.stderr
    assert f"a module on sys.path or in {tmp_path / 'lib'}, {tmp_path}" in result.stderr


def test_example_gateway_checks_from_any_folder(tmp_path: Path) -> None:
    result = fastgw_cli("check", EXAMPLES / "gateway.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_testing_kit_example_passes() -> None:
    """The README's fastgw.testing example, run the way a user runs it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "examples/test_custom_policy.py",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
