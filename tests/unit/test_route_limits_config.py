"""A route's own `timeouts` and `limits`: errors with their `$.path`, inheritance of the
global values, and the effective values in the compiled route and in `fastgw routes`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fastgw.cli import format_route_table
from fastgw.config import load_config, parse_config
from fastgw.errors import ConfigError
from fastgw.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]

BASE = """
upstreams:
  app: {targets: [{url: "http://127.0.0.1:9001"}]}
routes:
  - {name: first, match: {paths: ["/first"]}, upstream: app}
  - {name: second, match: {paths: ["/second"]}, upstream: app%s}
"""


def second_route(extra: str) -> str:
    return BASE % f", {extra}"


# (id, YAML for the second route, expected $.path, part of the message, part of str(error))
ERRORS = [
    (
        "unknown-timeout",
        "timeouts: {write: 5s}",
        "$.routes[1].timeouts",
        "unknown field 'write'",
        "expected one of: connect, read, send",
    ),
    (
        "misspelt-timeout",
        "timeouts: {conect: 5s}",
        "$.routes[1].timeouts",
        "did you mean 'connect'?",
        "",
    ),
    (
        "bad-read",
        "timeouts: {read: 30 seconds}",
        "$.routes[1].timeouts.read",
        "invalid duration",
        "got '30 seconds'",
    ),
    ("zero-connect", "timeouts: {connect: 0}", "$.routes[1].timeouts.connect", "duration", ""),
    (
        "negative-send",
        "timeouts: {send: -1s}",
        "$.routes[1].timeouts.send",
        "invalid duration",
        "got '-1s'",
    ),
    ("timeouts-not-mapping", "timeouts: 5s", "$.routes[1].timeouts", "wrong type", ""),
    (
        "unknown-limit",
        "limits: {max_header_bytes: 1024}",
        "$.routes[1].limits",
        "unknown field 'max_header_bytes'",
        "expected one of: max_body_bytes",
    ),
    (
        "negative-body",
        "limits: {max_body_bytes: -1}",
        "$.routes[1].limits.max_body_bytes",
        "out of range",
        "got -1",
    ),
    (
        "body-not-int",
        "limits: {max_body_bytes: 10MiB}",
        "$.routes[1].limits.max_body_bytes",
        "wrong type",
        "got '10MiB'",
    ),
]


@pytest.mark.parametrize(
    ("extra", "path", "message", "rendered"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_route_limit_errors_name_their_path(
    tmp_path: Path, extra: str, path: str, message: str, rendered: str
) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(second_route(extra))
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    matching = [error for error in caught.value.errors if error.path == path]
    assert matching, f"no error at {path}: {caught.value}"
    assert message in matching[0].message
    assert str(matching[0]).startswith(f"{file}: {path}: ")
    assert rendered in str(matching[0])


GLOBAL = {
    "limits": {"max_body_bytes": 4096},
    "timeouts": {"upstream_connect": "2s", "upstream_read": "30s", "upstream_send": "20s"},
}


def plan_for(second: dict[str, Any], **top: Any) -> Any:
    data = {
        "upstreams": {"app": {"targets": [{"url": "http://127.0.0.1:9001"}]}},
        "routes": [
            {"name": "first", "match": {"paths": ["/first"]}, "upstream": "app"},
            {"name": "second", "match": {"paths": ["/second"]}, "upstream": "app", **second},
        ],
        **top,
    }
    return build_plan(parse_config(data))


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param({}, (2.0, 30.0, 20.0, 4096), id="nothing-set-inherits-all"),
        pytest.param(
            {"timeouts": {"read": "500ms"}}, (2.0, 0.5, 20.0, 4096), id="read-only-overrides-read"
        ),
        pytest.param(
            {"timeouts": {"connect": "250ms", "read": "5m", "send": "1s"}},
            (0.25, 300.0, 1.0, 4096),
            id="all-timeouts",
        ),
        pytest.param(
            {"limits": {"max_body_bytes": 100}}, (2.0, 30.0, 20.0, 100), id="smaller-body"
        ),
        pytest.param(
            {"limits": {"max_body_bytes": 1 << 20}}, (2.0, 30.0, 20.0, 1 << 20), id="larger-body"
        ),
        pytest.param({"limits": {"max_body_bytes": 0}}, (2.0, 30.0, 20.0, 0), id="no-body"),
    ],
)
def test_missing_keys_inherit_the_global_values(
    second: dict[str, Any], expected: tuple[float, float, float, int]
) -> None:
    plan = plan_for(second, **GLOBAL)
    first, other = (plan.core.actions[i] for i in (0, 1))
    for action, values in ((first, (2.0, 30.0, 20.0, 4096)), (other, expected)):
        assert (
            action.connect_timeout,
            action.read_timeout,
            action.send_timeout,
            action.max_body_bytes,
        ) == values
    rows = {row["name"]: row for row in plan.describe_routes()}
    row = rows["second"]
    described = (row["connect_timeout"], row["read_timeout"], row["send_timeout"])
    assert (*described, row["max_body_bytes"]) == expected


def test_upstream_send_defaults_to_sixty_seconds() -> None:
    config = parse_config(
        {
            "upstreams": {"app": {"targets": [{"url": "http://127.0.0.1:9001"}]}},
            "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "app"}],
        }
    )
    assert config.timeouts.upstream_send == 60.0
    assert config.routes[0].timeouts.send is None
    assert config.routes[0].limits.max_body_bytes is None


@pytest.mark.parametrize(
    ("row", "timeouts", "max_body"),
    [
        pytest.param(
            {"connect_timeout": 5.0, "read_timeout": 60.0, "send_timeout": 60.0},
            "5s/60s/60s",
            10485760,
            id="defaults",
        ),
        pytest.param(
            {"connect_timeout": 0.25, "read_timeout": 1.5, "send_timeout": 7200.0},
            "250ms/1500ms/2h",
            1000,
            id="ms-and-hours",
        ),
        pytest.param(
            {"connect_timeout": 0.0015, "read_timeout": 90.0, "send_timeout": 86400.0},
            "1.5ms/90s/24h",
            65536,
            id="fractions-and-days",
        ),
    ],
)
def test_route_table_shows_effective_values_in_readable_units(
    row: dict[str, float], timeouts: str, max_body: int
) -> None:
    base = {"name": "r", "hosts": [], "pattern": "/", "methods": [], "priority": 0}
    table = format_route_table([{**base, "upstream": "app", **row, "max_body_bytes": max_body}])
    header, line = table.splitlines()
    cells = dict(zip(header.split(), line.split(), strict=False))
    assert cells["CONNECT/READ/SEND"] == timeouts
    assert cells["MAX_BODY"] == {10485760: "10MiB", 1000: "1000B", 65536: "64KiB"}[max_body]


def route_table(file: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """`fastgw routes FILE`: its rows, and each route's cells by column name."""
    result = subprocess.run(
        [sys.executable, "-m", "fastgw", "routes", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    names = header.split()
    cells = {line.split()[0]: dict(zip(names, line.split(), strict=False)) for line in lines}
    return lines, cells


def test_fastgw_routes_prints_each_routes_effective_values(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(
        second_route("timeouts: {read: 500ms}, limits: {max_body_bytes: 1048576}")
        + "limits: {max_body_bytes: 10485760}\n"
        + "timeouts: {upstream_connect: 2s}\n"
    )
    lines, cells = route_table(file)
    assert cells["first"]["CONNECT/READ/SEND"] == "2s/60s/60s"
    assert cells["first"]["MAX_BODY"] == "10MiB"
    assert cells["second"]["CONNECT/READ/SEND"] == "2s/500ms/60s"
    assert cells["second"]["MAX_BODY"] == "1MiB"
    # one row stays within a terminal's width when nothing else is long
    assert max(len(line) for line in lines) <= 120


def test_annotated_example_shows_the_uploads_routes_own_values() -> None:
    example = ROOT / "examples" / "gateway.yaml"
    _, cells = route_table(example)
    assert cells["uploads"]["CONNECT/READ/SEND"] == "2s/5m/30s"
    assert cells["uploads"]["MAX_BODY"] == "100MiB"
    assert cells["users"]["CONNECT/READ/SEND"] == "5s/60s/60s"
    assert cells["users"]["MAX_BODY"] == "10MiB"
