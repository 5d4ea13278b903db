"""basic_auth over real sockets: bcrypt and argon2 users made in the test, the identity
fields the upstream gets (never a copy the client sent), hide_credentials, the 401 answers
with their codes and challenge, acl by group after basic_auth, an anonymous fallback, an
alternative to key_auth, a user at bcrypt's default cost, and passwords absent from
GET /config, the access log and the error log."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import argon2
import bcrypt
import pytest

ALICE_PASSWORD = "alice-password-4711"
BOB_PASSWORD = "bøb-pässword"
CAROL_PASSWORD = "carol-at-cost-12"
DAVE_KEY = "dave-key-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789"
CHALLENGE = 'Basic realm="orders", charset="UTF-8"'


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


@pytest.fixture(scope="module")
def gw(module_gateway: Any, module_upstream: Any, tmp_path_factory: Any) -> Any:
    up = module_upstream("echo", name="be")
    logdir = tmp_path_factory.mktemp("logs")
    fast_argon2 = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    proc = module_gateway(
        consumers=[
            {
                "name": "alice",
                "groups": ["admins", "billing"],
                "credentials": [
                    {
                        "basic_auth": {
                            "username": "alice",
                            "password_hash": bcrypt.hashpw(
                                ALICE_PASSWORD.encode(), bcrypt.gensalt(4)
                            ).decode(),
                        }
                    }
                ],
            },
            {
                "name": "bob",
                "id": "u-2",
                "credentials": [
                    {
                        "basic_auth": {
                            "username": "bob",
                            "password_hash": fast_argon2.hash(BOB_PASSWORD),
                        }
                    }
                ],
            },
            {
                "name": "carol",
                "credentials": [
                    {
                        "basic_auth": {
                            "username": "carol",
                            # bcrypt's default cost, as `fastgw` users would make it.
                            "password_hash": bcrypt.hashpw(
                                CAROL_PASSWORD.encode(), bcrypt.gensalt()
                            ).decode(),
                        }
                    }
                ],
            },
            {"name": "dave", "credentials": [{"key_auth": {"key": DAVE_KEY}}]},
            {"name": "guest", "groups": ["public"]},
        ],
        access_log={
            "path": str(logdir / "access.log"),
            "fields": ["path", "status", "consumer", "auth"],
            "flush_interval": "50ms",
        },
        admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
        routes=[
            module_gateway.route(
                "orders", ["/orders/{*rest}"], "be", policies=[{"basic_auth": {"realm": "orders"}}]
            ),
            module_gateway.route(
                "hidden",
                ["/hidden"],
                "be",
                policies=[{"basic_auth": {"realm": "orders", "hide_credentials": True}}],
            ),
            module_gateway.route(
                "billing",
                ["/billing"],
                "be",
                policies=[{"basic_auth": {"realm": "orders"}}, {"acl": {"allow": ["billing"]}}],
            ),
            module_gateway.route(
                "anon",
                ["/anon"],
                "be",
                policies=[{"basic_auth": {"realm": "orders", "anonymous": "guest"}}],
            ),
            module_gateway.route(
                "either",
                ["/either"],
                "be",
                policies=[{"key_auth": {}}, {"basic_auth": {"realm": "orders"}}],
            ),
        ],
        upstreams={"be": up},
    )
    proc.access_log_path = logdir / "access.log"
    return proc


def get(http: Any, gw: Any, target: str, headers: list[tuple[str, str]] | None = None) -> Any:
    host, port = gw.addresses[0]
    with http.RawClient(host, port, timeout=10) as client:
        return client.request("GET", target, headers or [])


def upstream_headers(response: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


@pytest.mark.parametrize(
    ("user", "password", "consumer_id"),
    [("alice", ALICE_PASSWORD, "alice"), ("bob", BOB_PASSWORD, "u-2")],
    ids=["bcrypt", "argon2"],
)
def test_a_right_password_authenticates(
    http: Any, gw: Any, user: str, password: str, consumer_id: str
) -> None:
    for _ in range(2):  # the second is a cache hit
        response = get(http, gw, "/orders/1", [basic(user, password)])
        assert response.status == 200, response
        seen = upstream_headers(response)
        assert seen["x-consumer-id"] == consumer_id
        assert seen["x-consumer-username"] == user
        # Not hidden: the upstream sees the credentials too.
        assert seen["authorization"].startswith("Basic ")


def test_a_user_at_the_default_bcrypt_cost(http: Any, gw: Any) -> None:
    response = get(http, gw, "/orders/1", [basic("carol", CAROL_PASSWORD)])
    assert response.status == 200, response
    assert upstream_headers(response)["x-consumer-id"] == "carol"
    start = time.monotonic()
    again = get(http, gw, "/orders/1", [basic("carol", CAROL_PASSWORD)])
    assert again.status == 200
    # Cached: far below one cost-12 bcrypt (a quarter second to a second).
    assert time.monotonic() - start < 0.2


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([], "credentials_missing"),
        ([("Authorization", "Bearer abc")], "credentials_missing"),
        ([basic("alice", "wrong")], "credentials_invalid"),
        ([basic("nobody", ALICE_PASSWORD)], "credentials_invalid"),
        ([("Authorization", "Basic not*base64")], "credentials_invalid"),
        (
            [("Authorization", "Basic " + base64.b64encode(b"alicenocolon").decode())],
            "credentials_invalid",
        ),
        (
            [("Authorization", "Basic " + base64.b64encode(b"alice:\xc3\x28").decode())],
            "credentials_invalid",
        ),
    ],
    ids=["absent", "bearer", "wrong", "unknown-user", "bad-base64", "no-colon", "not-utf8"],
)
def test_refusals_are_401_with_the_basic_challenge(
    http: Any, gw: Any, headers: list[tuple[str, str]], code: str
) -> None:
    response = get(http, gw, "/orders/1", headers)
    assert response.status == 401
    assert response.error()["code"] == code
    assert response.header("www-authenticate") == CHALLENGE
    assert ALICE_PASSWORD not in response.body.decode()


def test_hide_credentials_removes_authorization(http: Any, gw: Any) -> None:
    response = get(http, gw, "/hidden", [basic("alice", ALICE_PASSWORD)])
    assert response.status == 200
    seen = upstream_headers(response)
    assert seen["x-consumer-id"] == "alice"
    assert "authorization" not in seen


def test_client_copies_of_identity_fields_never_reach_the_upstream(http: Any, gw: Any) -> None:
    spoofed = [
        ("X-Consumer-ID", "root"),
        ("X-Consumer-Username", "root"),
        ("X-Consumer-Groups", "admins"),
        ("X-Anonymous-Consumer", "false"),
    ]
    response = get(http, gw, "/orders/1", [basic("bob", BOB_PASSWORD), *spoofed])
    pairs = [(name.lower(), value) for name, value in response.json()["headers"]]
    assert ("x-consumer-id", "u-2") in pairs
    for name, value in spoofed:
        assert (name.lower(), value) not in pairs
    # Without credentials the spoofed identity gets nowhere either.
    assert get(http, gw, "/orders/1", spoofed).status == 401


def test_acl_by_group_after_basic_auth(http: Any, gw: Any) -> None:
    assert get(http, gw, "/billing", [basic("alice", ALICE_PASSWORD)]).status == 200
    refused = get(http, gw, "/billing", [basic("bob", BOB_PASSWORD)])
    assert refused.status == 403
    assert refused.error()["code"] == "forbidden"
    assert get(http, gw, "/billing").status == 401


def test_the_anonymous_consumer_takes_a_failure(http: Any, gw: Any) -> None:
    anonymous = get(http, gw, "/anon", [basic("alice", "wrong")])
    assert anonymous.status == 200
    seen = upstream_headers(anonymous)
    assert seen["x-consumer-username"] == "guest"
    assert seen["x-anonymous-consumer"] == "true"
    known = upstream_headers(get(http, gw, "/anon", [basic("alice", ALICE_PASSWORD)]))
    assert known["x-consumer-id"] == "alice" and "x-anonymous-consumer" not in known


def test_basic_auth_as_an_alternative_to_key_auth(http: Any, gw: Any) -> None:
    by_key = get(http, gw, "/either", [("x-api-key", DAVE_KEY)])
    assert upstream_headers(by_key)["x-consumer-id"] == "dave"
    by_password = get(http, gw, "/either", [basic("alice", ALICE_PASSWORD)])
    assert upstream_headers(by_password)["x-consumer-id"] == "alice"
    refused = get(http, gw, "/either", [basic("alice", "wrong")])
    assert refused.status == 401
    assert refused.error()["code"] == "credentials_invalid"
    assert refused.header("www-authenticate") == f"Key, {CHALLENGE}"


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


def test_no_password_in_admin_config_or_logs(http: Any, gw: Any) -> None:
    get(http, gw, "/hidden", [basic("alice", ALICE_PASSWORD)])
    get(http, gw, "/orders/zz", [basic("alice", "wrong-password-zzz")])
    with http.RawClient(*admin_address(gw)) as client:
        config = client.request("GET", "/config", [("Authorization", f"Bearer {ADMIN_TOKEN}")])
    assert config.status == 200, config
    text = config.body.decode()
    credential = json.loads(text)["consumers"][0]["credentials"][0]["basic_auth"]
    assert credential == {"username": "alice", "password_hash": "***redacted***"}
    assert "$2b$" not in text and "$argon2" not in text
    wanted = {"path": "/orders/zz", "status": 401, "consumer": None, "auth": "credentials_invalid"}
    records = access_lines(gw, lambda rs: wanted in rs)
    assert {"path": "/hidden", "status": 200, "consumer": "alice", "auth": "basic_auth"} in records
    logs = gw.access_log_path.read_text() + gw.stderr + gw.stdout + text
    for secret in (ALICE_PASSWORD, BOB_PASSWORD, CAROL_PASSWORD, "wrong-password-zzz"):
        assert secret not in logs
        assert base64.b64encode(secret.encode()).decode() not in logs
