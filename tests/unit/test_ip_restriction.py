"""ip_restriction: config errors at their $.path, and the core's CIDR tables deciding
addresses (IPv4, IPv6, IPv4-mapped IPv6, /0, /32, /128, deny over allow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from fastgw import _core
from fastgw.config import parse_config
from fastgw.errors import ConfigError
from fastgw.policy import build_route_chains
from fastgw.policy.compiled import CompileContext

BASE: dict[str, Any] = {"upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9001"}]}}}
AT = "$.routes[0].policies[0].ip_restriction"


def provision(options: dict[str, Any]) -> Any:
    config = parse_config(
        {
            **BASE,
            "routes": [
                {
                    "name": "r",
                    "match": {"paths": ["/a"]},
                    "upstream": "u",
                    "policies": [{"ip_restriction": options}],
                }
            ],
        }
    )
    chains = build_route_chains(config, [()], file="gw.yaml")
    if chains.errors:
        raise chains.errors[0]
    return chains[0].policies[0].policy


def step(allow: Sequence[str] = (), deny: Sequence[str] = ()) -> Any:
    parts = provision({"allow": list(allow), "deny": list(deny)}).compile_core(
        CompileContext((7,), {7: ()}, None)
    )
    (only,) = parts.steps
    assert isinstance(only, _core.IpRestrictionStep)
    return only


def test_compiles_to_one_step_with_packed_networks() -> None:
    compiled = step(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], ["::1"])
    assert compiled.allow == (
        (bytes([10, 0, 0, 0]), 8),
        (bytes.fromhex("20010db8") + bytes(12), 32),
        (bytes([192, 0, 2, 7]), 32),
    )
    assert compiled.deny == ((bytes(15) + b"\x01", 128),)


INVALID = [
    ("empty", {}, AT, "at least one network"),
    ("both-empty", {"allow": [], "deny": []}, AT, "at least one network"),
    ("host-bits", {"allow": ["10.0.0.1/8"]}, f"{AT}.allow[0]", "'10.0.0.1/8'"),
    ("not-an-address", {"allow": ["10.0.0.0/8", "nope"]}, f"{AT}.allow[1]", "'nope'"),
    ("prefix-too-long", {"deny": ["10.0.0.0/33"]}, f"{AT}.deny[0]", "invalid network"),
    ("v6-host-bits", {"deny": ["2001:db8::1/32"]}, f"{AT}.deny[0]", "host bits"),
    ("wrong-type", {"allow": "10.0.0.0/8"}, f"{AT}.allow", "wrong type"),
    ("unknown-key", {"allow": ["10.0.0.0/8"], "except": []}, AT, "except"),
]


@pytest.mark.parametrize(
    ("options", "path", "message"), [v[1:] for v in INVALID], ids=[v[0] for v in INVALID]
)
def test_invalid_configs(options: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        provision(options)
    error = caught.value
    assert error.file == "gw.yaml"
    assert str(error).startswith(f"gw.yaml: {path}")
    assert message in str(error)


MATCHING = [
    # allow, deny, address, passes
    (["10.0.0.0/8"], [], "10.1.2.3", True),
    (["10.0.0.0/8"], [], "11.0.0.1", False),
    (["10.0.0.0/8"], [], "::ffff:10.1.2.3", True),
    (["10.0.0.0/8"], [], "::ffff:11.1.2.3", False),
    (["10.0.0.0/8"], [], "::10.1.2.3", False),  # IPv4-compatible, not mapped
    (["10.0.0.0/8"], [], "2001:db8::1", False),
    (["10.0.0.0/8"], ["10.9.0.0/16"], "10.9.1.1", False),  # deny wins
    (["10.0.0.0/8"], ["10.9.0.0/16"], "10.8.1.1", True),
    (["10.0.0.0/8"], ["10.9.0.0/16"], "::ffff:10.9.1.1", False),
    ([], ["10.9.0.0/16"], "192.0.2.1", True),
    ([], ["10.9.0.0/16"], "10.9.255.255", False),
    ([], ["10.9.0.0/16"], "2001:db8::1", True),
    (["0.0.0.0/0"], [], "255.255.255.255", True),
    (["0.0.0.0/0"], [], "2001:db8::1", False),
    (["::/0"], [], "2001:db8::1", True),
    (["::/0"], [], "10.0.0.1", False),
    (["0.0.0.0/0", "::/0"], ["0.0.0.0/0"], "10.0.0.1", False),
    (["192.0.2.7"], [], "192.0.2.7", True),
    (["192.0.2.7/32"], [], "192.0.2.8", False),
    (["2001:db8::/32"], [], "2001:db8:ffff::1", True),
    (["2001:db8::/32"], [], "2001:db9::1", False),
    (["2001:db8::/64"], [], "2001:db8::ffff:ffff:ffff:ffff", True),
    (["2001:db8::/64"], [], "2001:db8:0:1::", False),
    (["2001:db8::/65"], [], "2001:db8::7fff:0:0:1", True),
    (["2001:db8::/65"], [], "2001:db8::8000:0:0:1", False),
    (["::1"], [], "::1", True),
    (["::1/128"], [], "::2", False),
    (["2001:db8::1/128"], [], "2001:db8::1", True),
    (["10.0.0.0/8"], [], "not-an-ip", False),  # no address: refused when allow is set
    ([], ["10.0.0.0/8"], "not-an-ip", True),
    (["10.0.0.0/8"], [], "010.1.2.3", False),  # strict text form only
    (["10.0.0.0/8"], [], "", False),
]


@pytest.mark.parametrize(("allow", "deny", "address", "passes"), MATCHING)
def test_matching(allow: list[str], deny: list[str], address: str, passes: bool) -> None:
    assert step(allow, deny).allows(address.encode()) is passes


def test_the_core_refuses_an_empty_table() -> None:
    with pytest.raises(ValueError, match="allow or deny"):
        _core.IpRestrictionStep((), ())
    with pytest.raises(ValueError, match="host bits"):
        _core.IpRestrictionStep([(bytes([10, 0, 0, 1]), 8)], ())
    with pytest.raises(ValueError, match="out of range"):
        _core.IpRestrictionStep([(bytes(4), 33)], ())


def test_error_code_is_in_the_table() -> None:
    rows = [row for row in _core.ERROR_TABLE.values() if row[1] == "ip_forbidden"]
    assert [row[0] for row in rows] == [403]
