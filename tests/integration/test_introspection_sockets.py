"""oauth2_introspection over real sockets, against a real RFC 7662 endpoint this test
serves on 127.0.0.1 (aiohttp.web): active and inactive tokens, exp, client authentication
(HTTP Basic and form fields), the scope and forwarded claims upstream, a consumer named by a
claim, caching and shared calls (the endpoint counts its hits), and every way the endpoint
can fail (down, slow, 500, garbage) answered 503 without the token or the secret in a log,
in GET /config or in an answer."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

CLIENT_ID = "orders-gateway"
SECRET = "introspection-secret-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
ENV = "FASTGW_TEST_INTROSPECTION_SECRET"


class Introspector:
    """An introspection endpoint whose answer depends on the token's name."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/introspect", self.introspect)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/introspect"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def introspect(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        token = str(form.get("token", ""))
        self.hits[token] += 1
        self.seen.append({"authorization": request.headers.get("Authorization"), "form": form})
        basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
        by_form = form.get("client_id") == CLIENT_ID and form.get("client_secret") == SECRET
        if request.headers.get("Authorization") != basic and not by_form:
            return web.json_response({"error": "invalid_client"}, status=401)
        now = int(time.time())
        kind = token.split("-", 1)[0]
        if kind == "slow":
            await asyncio.sleep(1.5)
        if kind == "shared":
            await asyncio.sleep(0.3)
        if kind == "garbage":
            return web.Response(text="<html>not json", content_type="text/html")
        if kind == "list":
            return web.json_response([{"active": True}])
        if kind == "error":
            return web.json_response({"error": "server_error"}, status=500)
        if kind == "inactive":
            return web.json_response({"active": False})
        claims: dict[str, Any] = {
            "active": True,
            "sub": token.split("-", 1)[1] if "-" in token else "someone",
            "scope": "orders:read orders:write",
            "client_id": "app-1",
            "exp": now + 3600,
        }
        if kind == "expired":
            claims["exp"] = now - 10
        if kind == "brief":
            claims["exp"] = now + 1
        if kind == "future":
            claims["nbf"] = now + 3600
        return web.json_response(claims)


@pytest.fixture(scope="module")
def idp(upstream_loop: Any) -> Any:
    server = Introspector()
    upstream_loop.run(server.start())
    yield server
    upstream_loop.run(server.stop())


@pytest.fixture(scope="module")
def gw(module_gateway: Any, module_upstream: Any, idp: Introspector, http: Any) -> Any:
    up = module_upstream("echo", name="be")
    refused, refused_port = http.refused_port()
    logdir = module_gateway.workdir
    os.environ[ENV] = SECRET
    common = {
        "url": idp.url,
        "client_id": CLIENT_ID,
        "client_secret": "${" + ENV + "}",
        "timeout": "500ms",
    }
    try:
        proc = module_gateway(
            consumers=[{"name": "alice", "groups": ["billing"]}, {"name": "bob"}],
            access_log={
                "path": str(logdir / "introspection-access.log"),
                "fields": ["path", "status", "consumer", "auth"],
                "flush_interval": "50ms",
            },
            admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
            routes=[
                module_gateway.route(
                    "cached",
                    ["/cached"],
                    "be",
                    policies=[
                        {
                            "oauth2_introspection": {
                                **common,
                                "cache": "60s",
                                "forward_claims": {"sub": "x-user-id", "client_id": "x-client-id"},
                            }
                        }
                    ],
                ),
                module_gateway.route(
                    "uncached", ["/uncached"], "be", policies=[{"oauth2_introspection": common}]
                ),
                module_gateway.route(
                    "consumer",
                    ["/consumer"],
                    "be",
                    policies=[
                        {"oauth2_introspection": {**common, "consumer_claim": "sub"}},
                        {"acl": {"allow": ["billing"]}},
                    ],
                ),
                module_gateway.route(
                    "post",
                    ["/post"],
                    "be",
                    policies=[{"oauth2_introspection": {**common, "client_auth": "post"}}],
                ),
                module_gateway.route(
                    "wrong-secret",
                    ["/wrong-secret"],
                    "be",
                    policies=[
                        {
                            "oauth2_introspection": {
                                **common,
                                "client_secret": "not-the-secret-0000",
                            }
                        }
                    ],
                ),
                module_gateway.route(
                    "down",
                    ["/down"],
                    "be",
                    policies=[
                        {
                            "oauth2_introspection": {
                                **common,
                                "url": f"http://127.0.0.1:{refused_port}/introspect",
                            }
                        }
                    ],
                ),
            ],
            upstreams={"be": up},
        )
    finally:
        del os.environ[ENV]
    proc.access_log_path = logdir / "introspection-access.log"
    yield proc
    refused.close()


def get(http: Any, gw: Any, target: str, token: str | None = None, **extra: str) -> Any:
    headers = [] if token is None else [("Authorization", f"Bearer {token}")]
    headers += list(extra.items())
    host, port = gw.addresses[0]
    with http.RawClient(host, port, timeout=10) as client:
        return client.request("GET", target, headers)


def upstream_headers(response: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def test_an_active_token_passes_with_its_scope_and_claims(
    http: Any, gw: Any, idp: Introspector
) -> None:
    response = get(http, gw, "/cached", "active-alice", **{"X-User-Id": "root"})
    assert response.status == 200, response
    seen = upstream_headers(response)
    assert seen["x-authenticated-scope"] == "orders:read orders:write"
    assert seen["x-user-id"] == "alice"  # the token's, never the client's copy
    assert seen["x-client-id"] == "app-1"
    assert "x-consumer-id" not in seen  # no consumer_claim: a token of no consumer
    form = idp.seen[-1]["form"]
    assert form == {"token": "active-alice", "token_type_hint": "access_token"}
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert idp.seen[-1]["authorization"] == expected


def test_client_authentication_by_form_fields(http: Any, gw: Any, idp: Introspector) -> None:
    assert get(http, gw, "/post", "active-post").status == 200
    assert idp.seen[-1]["authorization"] is None
    assert idp.seen[-1]["form"]["client_id"] == CLIENT_ID


@pytest.mark.parametrize(
    ("token", "code", "description"),
    [
        ("inactive-1", "credentials_invalid", "the token is not active"),
        ("expired-1", "token_expired", "the token expired"),
        ("future-1", "token_not_yet_valid", "the token is not valid yet"),
    ],
)
def test_tokens_that_are_not_good_now_are_401(
    http: Any, gw: Any, token: str, code: str, description: str
) -> None:
    response = get(http, gw, "/uncached", token)
    assert response.status == 401
    assert response.error()["code"] == code
    assert response.header("www-authenticate") == (
        f'Bearer error="invalid_token", error_description="{description}"'
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([], "credentials_missing"),
        ([("Authorization", "Basic YTpi")], "credentials_missing"),
        ([("Authorization", "Bearer not a token")], "credentials_invalid"),
        ([("Authorization", "Bearer ")], "credentials_invalid"),
    ],
    ids=["absent", "basic", "spaces", "empty"],
)
def test_a_missing_or_malformed_token_never_reaches_the_endpoint(
    http: Any, gw: Any, idp: Introspector, headers: list[tuple[str, str]], code: str
) -> None:
    before = sum(idp.hits.values())
    host, port = gw.addresses[0]
    with http.RawClient(host, port) as client:
        response = client.request("GET", "/uncached", headers)
    assert response.status == 401
    assert response.error()["code"] == code
    assert response.header("www-authenticate").startswith("Bearer")
    assert sum(idp.hits.values()) == before


def test_answers_are_cached_for_the_configured_time(http: Any, gw: Any, idp: Introspector) -> None:
    for _ in range(3):
        assert get(http, gw, "/cached", "active-cache").status == 200
        assert get(http, gw, "/uncached", "active-nocache").status == 200
    assert idp.hits["active-cache"] == 1
    assert idp.hits["active-nocache"] == 3
    for _ in range(2):
        assert get(http, gw, "/cached", "inactive-cache").status == 401
    assert idp.hits["inactive-cache"] == 1


def test_a_cached_answer_is_never_used_past_its_exp(http: Any, gw: Any, idp: Introspector) -> None:
    assert get(http, gw, "/cached", "brief-1").status == 200
    assert get(http, gw, "/cached", "brief-1").status == 200
    assert idp.hits["brief-1"] == 1
    time.sleep(2.1)
    # Asked again: the cached answer's exp passed, though `cache` (60s) has not.
    assert get(http, gw, "/cached", "brief-1").status == 200
    assert idp.hits["brief-1"] == 2


def test_concurrent_requests_with_one_token_share_one_call(
    http: Any, gw: Any, idp: Introspector
) -> None:
    statuses: list[int] = []

    def one() -> None:
        statuses.append(get(http, gw, "/uncached", "shared-1").status)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 8
    assert idp.hits["shared-1"] == 1


def test_a_consumer_named_by_a_claim(http: Any, gw: Any) -> None:
    alice = get(http, gw, "/consumer", "active-alice", **{"X-Consumer-ID": "root"})
    assert alice.status == 200
    seen = upstream_headers(alice)
    assert (seen["x-consumer-id"], seen["x-consumer-groups"]) == ("alice", "billing")
    assert get(http, gw, "/consumer", "active-bob").status == 403  # acl: not in billing
    stranger = get(http, gw, "/consumer", "active-stranger")
    assert stranger.status == 401
    assert stranger.error()["code"] == "credentials_invalid"


@pytest.mark.parametrize(
    ("target", "token"),
    [
        ("/down", "active-down"),
        ("/uncached", "slow-1"),
        ("/uncached", "error-1"),
        ("/uncached", "garbage-1"),
        ("/uncached", "list-1"),
        ("/wrong-secret", "active-wrong"),
    ],
    ids=["down", "slow", "500", "garbage", "not-an-object", "rejected-client"],
)
def test_an_endpoint_that_fails_is_503_fail_closed(
    http: Any, gw: Any, target: str, token: str
) -> None:
    start = time.monotonic()
    response = get(http, gw, target, token)
    assert response.status == 503
    assert response.error()["code"] == "auth_unavailable"
    assert time.monotonic() - start < 1.4  # the 500ms timeout, not the 1.5s answer
    assert token not in response.body.decode()


def admin_address(gw: Any) -> tuple[str, int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = re.search(r"fastgw admin on http://([0-9.]+):(\d+)", gw.stdout)
        if found:
            return found.group(1), int(found.group(2))
        time.sleep(0.02)
    raise AssertionError(f"no admin address on stdout:\n{gw.stdout}")


def test_no_secret_or_token_in_config_or_logs(http: Any, gw: Any) -> None:
    get(http, gw, "/down", "active-logged")
    get(http, gw, "/uncached", "garbage-logged")
    get(http, gw, "/uncached", "active-ok-logged")
    with http.RawClient(*admin_address(gw)) as client:
        config = client.request("GET", "/config", [("Authorization", f"Bearer {ADMIN_TOKEN}")])
    assert config.status == 200, config
    text = config.body.decode()
    policy = json.loads(text)["routes"][0]["policies"][0]["oauth2_introspection"]
    assert policy["client_secret"] == "***redacted***"
    assert policy["client_id"] == CLIENT_ID
    deadline = time.monotonic() + 5
    while "not JSON" not in gw.stderr:
        assert time.monotonic() < deadline, gw.stderr
        time.sleep(0.05)
    logs = gw.stderr + gw.stdout
    assert "oauth2_introspection" in logs and "cannot reach the endpoint" in logs
    log_file = gw.access_log_path
    deadline = time.monotonic() + 5
    while not (log_file.exists() and "/down" in log_file.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    everything = logs + text + log_file.read_text()
    secret_b64 = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    for secret in (SECRET, secret_b64, "not-the-secret-0000", "active-logged", "garbage-logged"):
        assert secret not in everything
