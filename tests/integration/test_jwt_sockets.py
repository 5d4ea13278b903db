"""jwt in the gateway process over real sockets: keys from a JWKS and by OIDC discovery
served on 127.0.0.1, a consumer named by a claim (X-Consumer-ID upstream) or unknown,
forwarded claims replacing a client's copy, a key server never reached (503
auth_unavailable), and the token absent from the access log, the error log,
WWW-Authenticate and GET /config (which hides the HMAC secret)."""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ADMIN_TOKEN = "admin-token-jwt-0123456789"
SECRET = "jwt-hmac-secret-" + "abcdef0123456789" * 3
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        data = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**data, "kid": kid}


class KeyServer:
    def __init__(self) -> None:
        self.hits = 0
        self.port = 0
        self.runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> KeyServer:
        app = web.Application()
        app.router.add_get("/keys", self._keys)
        app.router.add_get("/idp/.well-known/openid-configuration", self._discovery)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _keys(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"keys": [jwk(RSA_KEY, "r1"), jwk(EC_KEY, "e1")]})

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": f"{self.base}/idp", "jwks_uri": f"{self.base}/keys"})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def keys(upstream_loop: Any) -> Any:
    server = upstream_loop.run(KeyServer().start())
    yield server
    upstream_loop.run(server.stop())


@pytest.fixture(scope="module")
def gw(module_gateway: Any, module_upstream: Any, keys: Any, tmp_path_factory: Any) -> Any:
    up = module_upstream("echo", name="be")
    logs = tmp_path_factory.mktemp("logs")
    jwks_url = f"{keys.base}/keys"
    common = {"algorithms": ["RS256", "ES256"], "jwks_url": jwks_url, "audience": "orders"}
    proc = module_gateway(
        consumers=[
            {"name": "alice", "id": "u-1", "groups": ["billing"]},
            {"name": "guest"},
        ],
        access_log={
            "path": str(logs / "access.log"),
            "fields": ["path", "status", "consumer", "auth", "code", "user_agent"],
            "flush_interval": "50ms",
        },
        error_log={"path": "stderr", "level": "debug"},
        admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
        routes=[
            module_gateway.route(
                "orders",
                ["/orders"],
                "be",
                policies=[
                    {
                        "jwt": {
                            **common,
                            "consumer_claim": "sub",
                            "forward_claims": {"sub": "x-user-id", "tenant": "x-tenant"},
                        }
                    }
                ],
            ),
            module_gateway.route(
                "oidc",
                ["/oidc"],
                "be",
                policies=[{"jwt": {"algorithms": ["ES256"], "issuer": f"{keys.base}/idp"}}],
            ),
            module_gateway.route(
                "never",
                ["/never"],
                "be",
                policies=[
                    {
                        "jwt": {
                            **common,
                            "jwks_url": f"http://127.0.0.1:{closed_port()}/keys",
                            "jwks_timeout": "500ms",
                        }
                    }
                ],
            ),
            module_gateway.route(
                "hmac",
                ["/hmac"],
                "be",
                policies=[
                    {
                        "jwt": {
                            "algorithms": ["HS256"],
                            "keys": [{"kid": "h", "secret": SECRET}],
                            "anonymous": "guest",
                        }
                    },
                ],  # fmt: skip
            ),
        ],
        upstreams={"be": up},
    )
    proc.access_log_path = logs / "access.log"
    return proc


def token(key: Any, kid: str, **claims: Any) -> str:
    alg = {"r1": "RS256", "e1": "ES256", "h": "HS256"}[kid]
    payload = {"sub": "alice", "aud": "orders", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def get(http: Any, gw: Any, path: str, headers: list[tuple[str, str]] | None = None) -> Any:
    host, port = gw.addresses[0]
    with http.RawClient(host, port) as client:
        return client.request("GET", path, headers or [])


def bearer(http: Any, gw: Any, path: str, value: str, *more: tuple[str, str]) -> Any:
    return get(http, gw, path, [("Authorization", f"Bearer {value}"), *more])


def upstream_headers(response: Any) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def test_a_token_from_the_jwks_names_the_consumer_and_forwards_claims(
    http: Any, gw: Any, keys: Any
) -> None:
    response = bearer(
        http, gw, "/orders", token(RSA_KEY, "r1"),
        ("X-User-ID", "root"), ("x-tenant", "t-forged"), ("X-Consumer-ID", "admin"),
    )  # fmt: skip
    assert response.status == 200, response
    seen = upstream_headers(response)
    assert seen["x-consumer-id"] == ["u-1"]
    assert seen["x-consumer-username"] == ["alice"]
    assert seen["x-user-id"] == ["alice"]
    assert "x-tenant" not in seen  # no such claim: the client's copy is removed
    es = bearer(http, gw, "/orders", token(EC_KEY, "e1", tenant="t-1"), ("x-tenant", "x"))
    assert upstream_headers(es)["x-tenant"] == ["t-1"]
    assert keys.hits >= 1


def test_an_unknown_consumer_is_401(http: Any, gw: Any) -> None:
    response = bearer(http, gw, "/orders", token(RSA_KEY, "r1", sub="mallory"))
    assert response.status == 401
    assert response.error()["code"] == "credentials_invalid"
    assert response.header("www-authenticate") == (
        'Bearer error="invalid_token", error_description="the token names no known consumer"'
    )


def test_discovery_over_http(http: Any, gw: Any, keys: Any) -> None:
    value = jwt.encode(
        {"sub": "x", "iss": f"{keys.base}/idp", "exp": int(time.time()) + 60},
        EC_KEY,
        algorithm="ES256",
        headers={"kid": "e1"},
    )
    assert bearer(http, gw, "/oidc", value).status == 200
    other = token(EC_KEY, "e1", iss="http://127.0.0.1:1/idp")
    assert bearer(http, gw, "/oidc", other).error()["code"] == "token_issuer"
    # A token without iss where an issuer is configured lacks a required claim.
    assert bearer(http, gw, "/oidc", token(EC_KEY, "e1")).error()["code"] == ("credentials_invalid")


def test_a_key_server_never_reached_fails_closed(http: Any, gw: Any) -> None:
    for _ in range(2):
        response = bearer(http, gw, "/never", token(RSA_KEY, "r1"))
        assert response.status == 503
        assert response.error()["code"] == "auth_unavailable"


def test_failures_and_the_anonymous_fallback(http: Any, gw: Any) -> None:
    missing = get(http, gw, "/orders")
    assert missing.status == 401
    assert missing.header("www-authenticate") == "Bearer"
    expired = bearer(http, gw, "/orders", token(RSA_KEY, "r1", exp=int(time.time()) - 5))
    assert expired.error()["code"] == "token_expired"
    wrong = bearer(http, gw, "/hmac", token(b"another-secret-" * 4, "h"))
    assert wrong.status == 200
    assert upstream_headers(wrong)["x-anonymous-consumer"] == ["true"]


def access_lines(gw: Any, until: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if gw.access_log_path.exists():
            text = gw.access_log_path.read_text()
            records = [json.loads(line) for line in text.splitlines() if line]
            if until(records):
                return records
        time.sleep(0.05)
    raise AssertionError(f"access log lines never matched: {records}")


def admin_address(gw: Any) -> tuple[str, int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = re.search(r"fastgw admin on http://([0-9.]+):(\d+)", gw.stdout)
        if found:
            return found.group(1), int(found.group(2))
        time.sleep(0.02)
    raise AssertionError(f"no admin address on stdout:\n{gw.stdout}")


def test_no_token_or_secret_in_logs_challenges_or_config(http: Any, gw: Any) -> None:
    good = token(RSA_KEY, "r1", jti="logged-good")
    bad = token(rsa.generate_private_key(public_exponent=65537, key_size=2048), "r1")
    malformed = "eyJhbGciOiJSUzI1NiJ9.bm90LWpzb24.c2lnbmF0dXJl"
    unknown = token(RSA_KEY, "r1", sub="nobody-known")
    answers = [bearer(http, gw, "/orders", value) for value in (good, bad, malformed, unknown)]
    answers.append(bearer(http, gw, "/never", good))
    assert [a.status for a in answers] == [200, 401, 401, 401, 503]
    with http.RawClient(*admin_address(gw)) as client:
        config = client.request("GET", "/config", [("Authorization", f"Bearer {ADMIN_TOKEN}")])
    assert config.status == 200, config
    text = config.body.decode()
    assert SECRET not in text
    hmac = json.loads(text)["routes"][3]["policies"][0]["jwt"]
    assert hmac["keys"][0]["secret"] == "***redacted***"
    records = access_lines(
        gw, lambda rs: sum(1 for r in rs if r["path"] == "/never") >= 3 and len(rs) >= 10
    )
    assert {"path": "/orders", "status": 200, "consumer": "u-1", "auth": "jwt",
            "code": None, "user_agent": None} in records  # fmt: skip
    assert any(r["auth"] == "auth_unavailable" and r["status"] == 503 for r in records)
    log = gw.access_log_path.read_text()
    errors = gw.stderr
    assert "jwt: fetching the key set" in errors  # the never-reached server is logged...
    assert errors.count("jwt: fetching the key set") == 1  # ...once per failure streak
    for value in (good, bad, malformed, unknown):
        for part in value.split("."):
            assert part not in log and part not in errors
        for answer in answers[1:]:  # the refusals (the 200 is the echo of the request)
            assert part not in (answer.header("www-authenticate") or "")
            assert part.encode() not in answer.body
    assert SECRET not in errors and SECRET not in log
