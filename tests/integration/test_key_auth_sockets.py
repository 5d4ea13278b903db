"""key_auth and acl over real sockets: keys from a header or the query, rotation, the
identity fields the upstream gets (never a copy the client sent), hide_credentials, the
401/403 answers with their stable codes and WWW-Authenticate, alternatives with an
anonymous fallback, and secrets absent from GET /config and the access log."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

ALICE = "alice-key-0123456789abcdef"
ALICE_OLD = "alice-old-key-9876543210"
BOB = "bob-key-abcdef0123456789"
ADMIN_TOKEN = "admin-token-0123456789"


@pytest.fixture(scope="module")
def gw(module_gateway: Any, module_upstream: Any, tmp_path_factory: Any) -> Any:
    up = module_upstream("echo", name="be")
    keyfile = tmp_path_factory.mktemp("keys") / "carol.keys"
    keyfile.write_text("# carol's keys\n\ncarol-key-from-a-file-000\n")
    proc = module_gateway(
        consumers=[
            {
                "name": "alice",
                "groups": ["admins", "billing"],
                "metadata": {"tier": "gold"},
                "credentials": [{"key_auth": {"keys": [ALICE, ALICE_OLD]}}],
            },
            {"name": "bob", "id": "u-2", "credentials": [{"key_auth": {"key": BOB}}]},
            {"name": "carol", "credentials": [{"key_auth": {"key_file": str(keyfile)}}]},
            {"name": "guest", "groups": ["public"]},
        ],
        access_log={
            "path": str(keyfile.parent / "access.log"),
            "fields": ["path", "status", "consumer", "auth"],
            "flush_interval": "50ms",
        },
        admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
        routes=[
            module_gateway.route(
                "keyed",
                ["/keyed/{*rest}"],
                "be",
                policies=[
                    {"key_auth": {"query": "api_key"}},
                    {"request_headers": {"set": {"x-who": "consumer $consumer"}}},
                ],
            ),
            module_gateway.route(
                "hidden",
                ["/hidden"],
                "be",
                policies=[{"key_auth": {"query": "api_key", "hide_credentials": True}}],
            ),
            module_gateway.route(
                "billing",
                ["/billing"],
                "be",
                policies=[{"key_auth": {}}, {"acl": {"allow": ["billing"]}}],
            ),
            module_gateway.route(
                "anon",
                ["/anon"],
                "be",
                policies=[{"key_auth": {"anonymous": "guest"}}],
            ),
            module_gateway.route(
                "either",
                ["/either"],
                "be",
                policies=[
                    {"key_auth": {"header": "x-first-key"}},
                    {"key_auth": {"header": "x-second-key", "realm": "second"}},
                ],
            ),
            module_gateway.route(
                "limited",
                ["/limited"],
                "be",
                policies=[
                    {"key_auth": {}},
                    {"rate_limit": {"limits": [{"rate": 2, "per": "1m"}], "key": "consumer"}},
                ],
            ),
        ],
        upstreams={"be": up},
    )
    proc.access_log_path = keyfile.parent / "access.log"
    return proc


def get(http: Any, gw: Any, target: str, headers: list[tuple[str, str]] | None = None) -> Any:
    host, port = gw.addresses[0]
    with http.RawClient(host, port) as client:
        return client.request("GET", target, headers or [])


def upstream_headers(response: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def test_a_key_in_the_header_authenticates_and_names_the_consumer(http: Any, gw: Any) -> None:
    response = get(http, gw, "/keyed/x", [("X-API-Key", ALICE)])
    assert response.status == 200, response
    seen = upstream_headers(response)
    assert seen["x-consumer-id"] == "alice"
    assert seen["x-consumer-username"] == "alice"
    assert seen["x-consumer-groups"] == "admins, billing"
    assert "x-anonymous-consumer" not in seen
    # Not hidden: the upstream sees the key too.
    assert seen["x-api-key"] == ALICE
    # $consumer in a header template is the consumer's id.
    assert seen["x-who"] == "consumer alice"


@pytest.mark.parametrize("key", [ALICE, ALICE_OLD])
def test_every_key_of_a_consumer_works_for_rotation(http: Any, gw: Any, key: str) -> None:
    response = get(http, gw, "/keyed/x", [("x-api-key", key)])
    assert upstream_headers(response)["x-consumer-id"] == "alice"


def test_a_key_file_and_an_explicit_id(http: Any, gw: Any) -> None:
    carol = get(http, gw, "/keyed/x", [("x-api-key", "carol-key-from-a-file-000")])
    assert upstream_headers(carol)["x-consumer-id"] == "carol"
    bob = get(http, gw, "/keyed/x", [("x-api-key", BOB)])
    seen = upstream_headers(bob)
    assert (seen["x-consumer-id"], seen["x-consumer-username"]) == ("u-2", "bob")
    assert "x-consumer-groups" not in seen


def test_a_key_in_the_query_is_kept_unless_hidden(http: Any, gw: Any) -> None:
    kept = get(http, gw, f"/keyed/x?a=1&api_key={BOB}&b=2")
    assert kept.status == 200
    assert kept.json()["target"] == f"/keyed/x?a=1&api_key={BOB}&b=2"
    for query, forwarded in [
        (f"a=1&api_key={BOB}&b=2", "/hidden?a=1&b=2"),
        (f"api_key={BOB}&b=2", "/hidden?b=2"),
        (f"a=1&api_key={BOB}", "/hidden?a=1"),
        (f"api_key={BOB}", "/hidden"),
    ]:
        response = get(http, gw, f"/hidden?{query}")
        assert response.status == 200, (query, response)
        assert response.json()["target"] == forwarded
        assert upstream_headers(response)["x-consumer-id"] == "u-2"


def test_a_percent_encoded_key_in_the_query(http: Any, gw: Any) -> None:
    encoded = "".join(f"%{byte:02X}" for byte in BOB.encode())
    assert get(http, gw, f"/keyed/x?api_key={encoded}").status == 200


def test_missing_and_wrong_keys_are_401_with_a_challenge(http: Any, gw: Any) -> None:
    missing = get(http, gw, "/keyed/x")
    assert missing.status == 401
    assert missing.error()["code"] == "credentials_missing"
    assert missing.header("www-authenticate") == "Key"
    wrong = get(http, gw, "/keyed/x", [("x-api-key", ALICE + "x")])
    assert wrong.status == 401
    assert wrong.error()["code"] == "credentials_invalid"
    assert ALICE not in wrong.body.decode()
    empty = get(http, gw, "/keyed/x?api_key=")
    assert empty.error()["code"] == "credentials_missing"


def test_client_copies_of_identity_fields_never_reach_the_upstream(http: Any, gw: Any) -> None:
    spoofed = [
        ("X-Consumer-ID", "root"),
        ("X-Consumer-Username", "root"),
        ("X-Consumer-Groups", "admins"),
        ("X-Authenticated-Scope", "everything"),
        ("X-Anonymous-Consumer", "false"),
    ]
    response = get(http, gw, "/keyed/x", [("x-api-key", BOB), *spoofed])
    pairs = [(name.lower(), value) for name, value in response.json()["headers"]]
    assert ("x-consumer-id", "u-2") in pairs
    for name, value in spoofed:
        assert (name.lower(), value) not in pairs


def test_acl_allows_a_group_and_refuses_a_known_caller(http: Any, gw: Any) -> None:
    assert get(http, gw, "/billing", [("x-api-key", ALICE)]).status == 200
    refused = get(http, gw, "/billing", [("x-api-key", BOB)])
    assert refused.status == 403
    assert refused.error()["code"] == "forbidden"
    assert refused.header("www-authenticate") is None
    assert get(http, gw, "/billing").error()["code"] == "credentials_missing"


def test_the_anonymous_consumer_takes_a_failure(http: Any, gw: Any) -> None:
    anonymous = get(http, gw, "/anon", [("x-api-key", "nobody's key")])
    assert anonymous.status == 200
    seen = upstream_headers(anonymous)
    assert seen["x-consumer-username"] == "guest"
    assert seen["x-anonymous-consumer"] == "true"
    known = upstream_headers(get(http, gw, "/anon", [("x-api-key", ALICE)]))
    assert known["x-consumer-id"] == "alice" and "x-anonymous-consumer" not in known


def test_alternatives_pass_when_one_authenticates(http: Any, gw: Any) -> None:
    first = get(http, gw, "/either", [("x-first-key", ALICE)])
    second = get(http, gw, "/either", [("x-second-key", BOB)])
    assert upstream_headers(first)["x-consumer-id"] == "alice"
    assert upstream_headers(second)["x-consumer-id"] == "u-2"
    # A wrong key in one and none in the other: the wrong key is the telling failure.
    refused = get(http, gw, "/either", [("x-second-key", "wrong")])
    assert refused.status == 401
    assert refused.error()["code"] == "credentials_invalid"
    assert refused.header("www-authenticate") == 'Key, Key realm="second"'


def test_rate_limit_by_consumer(http: Any, gw: Any) -> None:
    statuses = [get(http, gw, "/limited", [("x-api-key", ALICE)]).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert get(http, gw, "/limited", [("x-api-key", BOB)]).status == 200


def admin_address(gw: Any) -> tuple[str, int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = re.search(r"fastgw admin on http://([0-9.]+):(\d+)", gw.stdout)
        if found:
            return found.group(1), int(found.group(2))
        time.sleep(0.02)
    raise AssertionError(f"no admin address on stdout:\n{gw.stdout}")


def access_lines(gw: Any, until: Any) -> list[dict[str, Any]]:
    log = gw.access_log_path
    deadline = time.monotonic() + 5
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if log.exists():
            records = [json.loads(line) for line in log.read_text().splitlines() if line]
            if until(records):
                return records
        time.sleep(0.05)
    raise AssertionError(f"access log lines never matched: {records}")


def test_no_key_in_admin_config_or_access_log(http: Any, gw: Any) -> None:
    get(http, gw, f"/hidden?api_key={BOB}")
    get(http, gw, "/keyed/x", [("x-api-key", "wrong-key-zzz")])
    with http.RawClient(*admin_address(gw)) as client:
        config = client.request("GET", "/config", [("Authorization", f"Bearer {ADMIN_TOKEN}")])
    assert config.status == 200, config
    text = config.body.decode()
    for secret in (ALICE, ALICE_OLD, BOB, "carol-key-from-a-file-000"):
        assert secret not in text
    keys = json.loads(text)["consumers"][0]["credentials"][0]["key_auth"]["keys"]
    assert keys == ["***redacted***", "***redacted***"]
    wanted = {"path": "/keyed/x", "status": 401, "consumer": None, "auth": "credentials_invalid"}
    records = access_lines(gw, lambda rs: wanted in rs and any(r["path"] == "/hidden" for r in rs))
    assert {"path": "/hidden", "status": 200, "consumer": "u-2", "auth": "key_auth"} in records
    log = gw.access_log_path.read_text()
    assert BOB not in log and "wrong-key-zzz" not in log
