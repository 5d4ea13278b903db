"""jwt with key sets fetched over HTTP: a JWKS and an OIDC discovery document served by a
real server on 127.0.0.1, and a gateway in the same event loop. Rotation (a new kid is
accepted after one forced fetch, shared by concurrent requests, rate limited), unknown kids,
a server that is down, slow, answers 500 or garbage (the last good set keeps serving; with
none ever fetched: 503 auth_unavailable), Cache-Control max-age, and close()."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fastgw.policy import jwks
from fastgw.testing import EchoUpstream, running_gateway

K1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
K2 = ec.generate_private_key(ec.SECP256R1())
K3 = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        data = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**data, "kid": kid, "use": "sig"}


def sign(key: Any, kid: str, issuer: str = "http://idp", **claims: Any) -> str:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    payload = {"sub": "alice", "iss": issuer, "exp": int(time.time()) + 300, **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


class KeyServer:
    """A JWKS at /keys and a discovery document at /idp/.well-known/openid-configuration."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [jwk(K1, "k1")]
        self.mode = "ok"
        self.delay = 0.0
        self.cache_control: str | None = None
        self.hits: dict[str, int] = {"keys": 0, "discovery": 0}
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> KeyServer:
        app = web.Application()
        app.router.add_get("/keys", self._keys)
        app.router.add_get("/idp/.well-known/openid-configuration", self._discovery)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _keys(self, request: web.Request) -> web.StreamResponse:
        self.hits["keys"] += 1
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        if self.mode == "garbage":
            return web.Response(text='{"keys": [', content_type="application/json")
        headers = {"cache-control": self.cache_control} if self.cache_control else {}
        return web.json_response({"keys": self.keys}, headers=headers)

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        self.hits["discovery"] += 1
        return web.json_response({"issuer": f"{self.base}/idp", "jwks_uri": f"{self.base}/keys"})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, gw: Any, server: KeyServer) -> None:
        self.gw = gw
        self.server = server

    async def get(self, path: str, token: str | None) -> Any:
        headers = [] if token is None else [("authorization", f"Bearer {token}")]
        return await self.gw.request("GET", path, headers)


def code(response: Any) -> str:
    return response.json()["error"]["code"]


@contextlib.asynccontextmanager
async def stack(routes: Callable[[KeyServer], list[dict[str, Any]]]) -> AsyncIterator[Stack]:
    server = await KeyServer().start()
    upstream = await EchoUpstream().start()
    config = {
        "upstreams": {"echo": {"targets": [{"url": upstream.url}]}},
        "routes": [
            {
                "name": name,
                "match": {"paths": [f"/{name}"]},
                "upstream": "echo",
                "policies": [{"jwt": options}],
            }
            for name, options in routes(server)
        ],
    }
    try:
        async with running_gateway(config) as gw:
            yield Stack(gw, server)
    finally:
        await upstream.close()
        await server.stop()


def run(test: Callable[[], Awaitable[None]]) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())  # type: ignore[arg-type]
    assert not jwks._FETCHERS, "every fetcher is released when its plan is"


def jwks_route(server: KeyServer, **more: Any) -> dict[str, Any]:
    return {"algorithms": ["RS256", "ES256"], "jwks_url": f"{server.base}/keys", **more}


def test_discovery_from_the_issuer_finds_the_key_set() -> None:
    async def body() -> None:
        def routes(server: KeyServer) -> list[Any]:
            return [("oidc", {"algorithms": ["RS256"], "issuer": f"{server.base}/idp"})]

        async with stack(routes) as s:
            issuer = f"{s.server.base}/idp"
            response = await s.get("/oidc", sign(K1, "k1", issuer))
            assert response.status == 200, response.body
            assert s.server.hits == {"keys": 1, "discovery": 1}
            wrong = await s.get("/oidc", sign(K1, "k1", "http://other/"))
            assert code(wrong) == "token_issuer"

    run(body)


def test_discovery_refuses_a_document_of_another_issuer(caplog: Any) -> None:
    async def body() -> None:
        def routes(server: KeyServer) -> list[Any]:
            # The document says .../idp; configured with a trailing slash it is another one.
            return [("oidc", {"algorithms": ["RS256"], "issuer": f"{server.base}/idp/"})]

        async with stack(routes) as s:
            response = await s.get("/oidc", sign(K1, "k1", f"{s.server.base}/idp/"))
            assert response.status == 503
            assert code(response) == "auth_unavailable"
            assert s.server.hits["keys"] == 0

    with caplog.at_level(logging.WARNING, "fastgw.policy"):
        run(body)
    assert "names another issuer" in caplog.text


def test_rotation_a_new_kid_is_accepted_after_one_forced_fetch(monkeypatch: Any) -> None:
    monkeypatch.setattr(jwks, "FORCED_REFRESH_INTERVAL", 0.5)

    async def body() -> None:
        async with stack(lambda server: [("r", jwks_route(server))]) as s:
            assert (await s.get("/r", sign(K1, "k1"))).status == 200
            assert s.server.hits["keys"] == 1
            await asyncio.sleep(0.6)
            s.server.keys = [jwk(K1, "k1"), jwk(K2, "k2")]
            # Twenty requests with the new kid at once share one fetch.
            tokens = [sign(K2, "k2", jti=str(i)) for i in range(20)]
            answers = await asyncio.gather(*(s.get("/r", t) for t in tokens))
            assert [a.status for a in answers] == [200] * 20
            assert s.server.hits["keys"] == 2
            # An unknown kid right after: no new fetch (rate limited), refused.
            unknown = await s.get("/r", sign(K3, "k3"))
            assert unknown.status == 401
            assert code(unknown) == "credentials_invalid"
            assert "no known key" in unknown.headers["www-authenticate"]
            assert s.server.hits["keys"] == 2
            # Later, the unknown kid asks again, once; still unknown: refused.
            await asyncio.sleep(0.6)
            assert code(await s.get("/r", sign(K3, "k3"))) == "credentials_invalid"
            assert s.server.hits["keys"] == 3

    run(body)


def test_a_key_taken_out_of_the_set_no_longer_verifies_cached_tokens(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(jwks, "FORCED_REFRESH_INTERVAL", 0.0)

    async def body() -> None:
        async with stack(lambda server: [("r", jwks_route(server))]) as s:
            s.server.keys = [jwk(K1, "k1"), jwk(K2, "k2")]
            old = sign(K1, "k1")
            assert (await s.get("/r", old)).status == 200
            s.server.keys = [jwk(K2, "k2")]
            # The next fetch (an unknown kid asks for one) changes the key set...
            assert (await s.get("/r", sign(K3, "k3"))).status == 401
            # ...and the token verified with the removed key is checked again: refused.
            response = await s.get("/r", old)
            assert response.status == 401
            assert code(response) == "credentials_invalid"

    run(body)


@pytest.mark.parametrize("failure", ["500", "garbage", "slow", "down"])
def test_the_last_good_key_set_keeps_serving(failure: str, monkeypatch: Any, caplog: Any) -> None:
    monkeypatch.setattr(jwks, "FORCED_REFRESH_INTERVAL", 0.0)

    async def body() -> None:
        def routes(server: KeyServer) -> list[Any]:
            return [("r", jwks_route(server, jwks_timeout="300ms"))]

        async with stack(routes) as s:
            token = sign(K1, "k1")
            assert (await s.get("/r", token)).status == 200
            s.server.mode, s.server.delay = failure, 2.0
            if failure == "down":
                await s.server.stop()
            for i in range(3):
                # An unknown kid forces a fetch, which fails: refused, but not 503.
                started = time.monotonic()
                unknown = await s.get("/r", sign(K2, "k2", jti=str(i)))
                assert unknown.status == 401, unknown.body
                assert time.monotonic() - started < 1.5
                # Known tokens, new or cached, are still verified with the last good set.
                assert (await s.get("/r", sign(K1, "k1", jti=str(i)))).status == 200
                assert (await s.get("/r", token)).status == 200
            if failure != "down":
                assert s.server.hits["keys"] == 4

    with caplog.at_level(logging.INFO, "fastgw.policy"):
        run(body)
    warnings = [r for r in caplog.records if "fetching the key set" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once per streak of failures
    assert "last good key set keeps serving" in warnings[0].getMessage()
    described = {"500": "HTTP 500", "garbage": "not JSON", "slow": "timed out"}
    assert described.get(failure, "") in warnings[0].getMessage()


@pytest.mark.parametrize("failure", ["500", "garbage", "slow", "down", "empty"])
def test_with_no_key_set_ever_fetched_requests_are_refused_503(
    failure: str, monkeypatch: Any, caplog: Any
) -> None:
    monkeypatch.setattr(jwks, "FORCED_REFRESH_INTERVAL", 0.0)

    async def body() -> None:
        def routes(server: KeyServer) -> list[Any]:
            server.mode, server.delay = failure, 2.0
            if failure == "empty":
                server.keys = []
            url = f"http://127.0.0.1:{closed_port()}/keys" if failure == "down" else None
            return [("r", jwks_route(server, jwks_timeout="300ms", jwks_url=url or
                                     f"{server.base}/keys"))]  # fmt: skip

        async with stack(routes) as s:
            for _ in range(2):
                started = time.monotonic()
                response = await s.get("/r", sign(K1, "k1"))
                assert response.status == 503, response.body
                assert code(response) == "auth_unavailable"
                assert time.monotonic() - started < 1.5
            # A missing token is still just missing.
            assert code(await s.get("/r", None)) == "credentials_missing"
            # The server comes back: the next request fetches and passes.
            s.server.mode = "ok"
            s.server.keys = [jwk(K1, "k1")]
            if failure == "down":
                return
            response = await s.get("/r", sign(K1, "k1"))
            assert response.status == 200, response.body

    with caplog.at_level(logging.INFO, "fastgw.policy"):
        run(body)
    messages = [r.getMessage() for r in caplog.records if "key set" in r.getMessage()]
    assert "503 auth_unavailable" in messages[0]
    assert len([m for m in messages if "failed" in m]) == 1, messages
    if failure != "down":
        assert "is fetched again" in messages[-1]


def test_the_first_fetch_is_shared_by_the_first_requests() -> None:
    async def body() -> None:
        def routes(server: KeyServer) -> list[Any]:
            return [("a", jwks_route(server)), ("b", jwks_route(server))]

        async with stack(routes) as s:
            assert len(jwks._FETCHERS) == 1  # two routes, one fetcher
            (fetcher,) = jwks._FETCHERS.values()
            assert fetcher.refs == 2
            tokens = [sign(K1, "k1", jti=str(i)) for i in range(10)]
            answers = await asyncio.gather(*(s.get(f"/{'ab'[i % 2]}", t) for i, t in
                                             enumerate(tokens)))  # fmt: skip
            assert {a.status for a in answers} == {200}
            assert s.server.hits["keys"] == 1

    run(body)


def test_refresh_runs_in_the_background_and_honours_max_age(monkeypatch: Any) -> None:
    monkeypatch.setattr(jwks, "MIN_REFRESH", 0.2)

    async def body() -> None:
        server = await KeyServer().start()
        server.cache_control = "public, max-age=0"
        fetcher = jwks.acquire(
            jwks_url=f"{server.base}/keys", issuer=None, algorithms=["RS256"],
            refresh=60.0, timeout=1.0,
        )  # fmt: skip
        try:
            fetcher.ensure_running()
            await asyncio.sleep(0.9)
            # max-age=0 is held to MIN_REFRESH (0.2 s here): about four fetches, not one.
            assert 3 <= server.hits["keys"] <= 6, server.hits
            assert fetcher.keys is not None and fetcher.keys.knows("k1")
            generation = fetcher.generation
            server.keys = [jwk(K1, "k1"), jwk(K3, "k3")]
            await asyncio.sleep(0.4)
            assert fetcher.keys.knows("k3")
            assert fetcher.generation == generation + 1
            task = fetcher._task
        finally:
            jwks.release(fetcher)
        await asyncio.sleep(0)
        assert task is not None and task.cancelled()
        hits = server.hits["keys"]
        await asyncio.sleep(0.5)
        assert server.hits["keys"] == hits  # stopped: no more fetches
        await server.stop()

    run(body)


def test_reload_keeps_the_key_set_and_close_stops_the_fetcher() -> None:
    async def body() -> None:
        server = await KeyServer().start()
        upstream = await EchoUpstream().start()

        def config() -> dict[str, Any]:
            return {
                "timeouts": {"drain": 0.1},
                "upstreams": {"echo": {"targets": [{"url": upstream.url}]}},
                "routes": [
                    {"name": "r", "match": {"paths": ["/r"]}, "upstream": "echo",
                     "policies": [{"jwt": jwks_route(server)}]}
                ],
            }  # fmt: skip

        async with running_gateway(config()) as gw:
            headers = [("authorization", f"Bearer {sign(K1, 'k1')}")]
            assert (await gw.request("GET", "/r", headers)).status == 200
            await gw.gateway.reload(config())
            assert (await gw.request("GET", "/r", headers)).status == 200
            assert server.hits["keys"] == 1  # the new plan shares the fetcher
            (fetcher,) = jwks._FETCHERS.values()
            assert fetcher.refs == 2
            await asyncio.sleep(0.3)  # the old plan is closed after the drain time
            assert fetcher.refs == 1
        assert not jwks._FETCHERS
        assert fetcher._task is None
        await upstream.close()
        await server.stop()

    run(body)


def test_a_fetch_failure_is_logged_without_the_urls_password(caplog: Any) -> None:
    async def body() -> None:
        url = f"http://reader:hunter2-jwks-pass@127.0.0.1:{closed_port()}/keys"
        fetcher = jwks.acquire(
            jwks_url=url, issuer=None, algorithms=["RS256"], refresh=60.0, timeout=1.0
        )
        try:
            await fetcher.refresh()
            assert fetcher.keys is None
            assert fetcher.failures == 1
        finally:
            jwks.release(fetcher)

    with caplog.at_level(logging.WARNING, "fastgw.policy"):
        run(body)
    assert "fetching the key set" in caplog.text
    assert "hunter2-jwks-pass" not in caplog.text
