"""jwt: config errors at their $.path, the key families each algorithm is bound to, and the
policy deciding real tokens (signed here with generated keys) in a gateway on a loopback
socket: algorithms, claims with leeway, the WWW-Authenticate answers, the verified-token
cache, consumers, forwarded claims and token sources."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fastgw.config import parse_config
from fastgw.errors import ConfigError
from fastgw.policy import build_route_chains, jwks
from fastgw.testing import EchoUpstream, running_gateway

BASE: dict[str, Any] = {"upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9001"}]}}}
AT = "$.routes[0].policies[0].jwt"
SECRET = "hs-secret-" + "0123456789abcdef" * 4
ISSUER = "https://idp.test/"


def pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
ED = ed25519.Ed25519PrivateKey.generate()


def provision(options: dict[str, Any], consumers: list[Any] | None = None) -> Any:
    config = parse_config(
        {
            **BASE,
            **({"consumers": consumers} if consumers else {}),
            "routes": [
                {
                    "name": "r",
                    "match": {"paths": ["/a"]},
                    "upstream": "u",
                    "policies": [{"jwt": options}],
                }
            ],
        }
    )
    chains = build_route_chains(config, [()], file="gw.yaml")
    if chains.errors:
        raise chains.errors[0]
    return chains[0].policies[0].policy


RS_KEY = {"kid": "r1", "public_key": pem(RSA)}

INVALID = [
    ({"keys": [{"secret": SECRET}]}, "", "algorithms"),
    ({"algorithms": [], "keys": [{"secret": SECRET}]}, ".algorithms", "may not be empty"),
    ({"algorithms": ["none"], "keys": [{"secret": SECRET}]}, ".algorithms[0]", '"none"'),
    ({"algorithms": ["HS256", "RS1"], "keys": [{"secret": SECRET}]}, ".algorithms[1]", "unknown"),
    ({"algorithms": ["RS256"]}, "", "needs keys"),
    ({"algorithms": ["RS256"], "keys": [{"kid": "a"}]}, ".keys[0]", "exactly one"),
    (
        {"algorithms": ["HS256"], "keys": [{"alg": "HS256", "public_key": pem(RSA)}]},
        ".keys[0].alg",
        "algorithm confusion",
    ),
    (
        {"algorithms": ["HS256"], "keys": [{"public_key": pem(RSA)}]},
        ".keys[0].public_key",
        "cannot verify any of HS256",
    ),
    (
        {"algorithms": ["RS256"], "keys": [{"secret": SECRET}]},
        ".keys[0].secret",
        "cannot verify any of RS256",
    ),
    (
        {"algorithms": ["ES384"], "keys": [{"public_key": pem(P256)}]},
        ".keys[0].public_key",
        "cannot verify any of ES384",
    ),
    (
        {"algorithms": ["RS256"], "keys": [{"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA"}]},
        ".keys[0].public_key",
        "not a PEM public key",
    ),
    (
        {"algorithms": ["RS256"], "keys": [{"public_key_file": "/nonexistent/k.pem"}]},
        ".keys[0].public_key_file",
        "cannot read the key file",
    ),
    (
        {"algorithms": ["RS256"], "keys": [{"alg": "RS384", "public_key": pem(RSA)}]},
        ".keys[0].alg",
        "not in algorithms",
    ),
    ({"algorithms": ["RS256"], "jwks_url": "ftp://x/keys"}, ".jwks_url", "http(s)"),
    (
        {"algorithms": ["RS256"], "issuer": ISSUER, "discovery": False},
        "",
        "needs keys",
    ),
    (
        {"algorithms": ["RS256"], "keys": [RS_KEY], "forward_claims": {"sub": "host"}},
        ".forward_claims.sub",
        "managed",
    ),
    (
        {"algorithms": ["RS256"], "keys": [RS_KEY], "forward_claims": {"sub": "x y"}},
        ".forward_claims.sub",
        "invalid header name",
    ),
    ({"algorithms": ["RS256"], "keys": [RS_KEY], "realm": 'a"b'}, ".realm", "double quote"),
    ({"algorithms": ["RS256"], "keys": [RS_KEY], "anonymous": "nobody"}, ".anonymous", "not in"),
    (
        {"algorithms": ["RS256"], "keys": [RS_KEY], "header": None},
        "",
        "header, a cookie or a query",
    ),
]


@pytest.mark.parametrize(("options", "at", "fragment"), INVALID)
def test_config_errors_name_their_path(options: dict[str, Any], at: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        provision(options)
    text = str(info.value)
    assert f"{AT}{at}" in text, text
    assert fragment in text, text
    assert SECRET not in text


def test_a_key_file_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text(pem(ED))
    config = parse_config(
        {
            **BASE,
            "routes": [
                {
                    "name": "r",
                    "match": {"paths": ["/a"]},
                    "upstream": "u",
                    "policies": [
                        {"jwt": {"algorithms": ["EdDSA"], "keys": [{"public_key_file": "k.pem"}]}}
                    ],
                }
            ],
        }
    )
    chains = build_route_chains(config, [()], file=str(tmp_path / "gw.yaml"))
    assert not chains.errors
    (key,) = chains[0].policies[0].policy.static.keys
    assert key.algorithms == {"EdDSA"}


def test_a_garbled_key_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key at all")
    with pytest.raises(ConfigError) as info:
        provision({"algorithms": ["RS256"], "keys": [{"public_key_file": str(bad)}]})
    assert f"{AT}.keys[0].public_key_file" in str(info.value)
    assert "not a PEM public key" in str(info.value)


def test_each_key_is_bound_to_the_algorithms_of_its_kind() -> None:
    allowed = tuple(jwks.ALGORITHMS)
    assert jwks.key_algorithms(SECRET.encode(), allowed) == {"HS256", "HS384", "HS512"}
    assert jwks.key_algorithms(RSA.public_key(), allowed) == {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"
    }  # fmt: skip
    assert jwks.key_algorithms(P256.public_key(), allowed) == {"ES256"}
    assert jwks.key_algorithms(P384.public_key(), allowed) == {"ES384"}
    assert jwks.key_algorithms(ED.public_key(), allowed) == {"EdDSA"}
    # A JWK: kty and crv decide, alg narrows, keys for encryption verify nothing.
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(RSA.public_key(), as_dict=True)
    assert jwks.jwk_algorithms(rsa_jwk, ["RS256", "PS256", "HS256", "ES256"]) == {"RS256", "PS256"}
    assert jwks.jwk_algorithms({**rsa_jwk, "alg": "PS256"}, ["RS256", "PS256"]) == {"PS256"}
    assert jwks.jwk_algorithms({**rsa_jwk, "use": "enc"}, ["RS256"]) == set()
    ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(P384.public_key(), as_dict=True)
    assert jwks.jwk_algorithms(ec_jwk, ["ES256", "ES384"]) == {"ES384"}
    keys = jwks.parse_jwks({"keys": [rsa_jwk, ec_jwk, {"kty": "oct", "k": "c2VjcmV0"}]}, ["RS256"])
    assert [k.algorithms for k in keys] == [{"RS256"}]
    with pytest.raises(ValueError, match="not a JWKS"):
        jwks.parse_jwks({"kty": "RSA"}, ["RS256"])


def test_the_config_repr_and_errors_never_show_a_secret() -> None:
    policy = provision({"algorithms": ["HS256"], "keys": [{"kid": "h", "secret": SECRET}]})
    assert SECRET not in repr(policy.config)
    assert SECRET not in repr(policy.config.keys)


# --- tokens through a gateway on a loopback socket ------------------------------------------


def sign(key: Any, alg: str, kid: str | None = "r1", **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": "orders", "exp": now + 300}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


CONSUMERS = [
    {"name": "alice", "id": "u-1", "groups": ["billing"]},
    {"name": "guest"},
]
ALL_KEYS = [
    {"kid": "r1", "public_key": pem(RSA)},
    {"kid": "e256", "public_key": pem(P256)},
    {"kid": "e384", "public_key": pem(P384)},
    {"kid": "ed", "public_key": pem(ED)},
    {"kid": "h1", "secret": SECRET},
]
ALL_ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
            "ES256", "ES384", "EdDSA"]  # fmt: skip


def route(name: str, path: str, options: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"paths": [path]},
        "upstream": "echo",
        "policies": [{"jwt": options}, *more.get("after", [])],
    }


BASIC = {"algorithms": ALL_ALGS, "keys": ALL_KEYS, "issuer": ISSUER, "audience": "orders"}


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    import uvloop

    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


class Stack:
    def __init__(self, loop: asyncio.AbstractEventLoop, gw: Any, upstream: Any) -> None:
        self.loop = loop
        self.gw = gw
        self.upstream = upstream

    def get(self, path: str, headers: list[tuple[str, str]] | None = None) -> Any:
        before = len(self.upstream.requests)
        response = self.loop.run_until_complete(self.gw.request("GET", path, headers or []))
        response.upstream = (
            self.upstream.requests[-1] if len(self.upstream.requests) > before else None
        )
        return response

    def bearer(self, path: str, token: str, *more: tuple[str, str]) -> Any:
        return self.get(path, [("authorization", f"Bearer {token}"), *more])


@pytest.fixture(scope="module")
def stack(loop: asyncio.AbstractEventLoop) -> Iterator[Stack]:
    config = {
        "consumers": CONSUMERS,
        "upstreams": {"echo": {"targets": [{"url": "http://127.0.0.1:1"}]}},
        "routes": [
            route("basic", "/basic", BASIC),
            route("rs-only", "/rs", {**BASIC, "algorithms": ["RS256"], "keys": ALL_KEYS[:1]}),
            route(
                "confusion",
                "/confusion",
                {**BASIC, "algorithms": ["RS256", "HS256"], "keys": [ALL_KEYS[0]]},
            ),  # fmt: skip
            route("leeway", "/leeway", {**BASIC, "leeway": "30s"}),
            route("required", "/required", {**BASIC, "required_claims": ["sub", "exp", "tenant"]}),
            route("consumer", "/consumer", {**BASIC, "consumer_claim": "sub", "realm": "orders"}),
            route(
                "forward",
                "/forward",
                {
                    **BASIC,
                    "forward_claims": {
                        "sub": "x-user-id",
                        "roles": "x-roles",
                        "tenant": "x-tenant",
                    },
                },  # fmt: skip
            ),
            route("anon", "/anon", {**BASIC, "anonymous": "guest"}),
            route(
                "sources",
                "/sources",
                {**BASIC, "header": "x-token", "cookie": "at", "query": "access_token"},
            ),  # fmt: skip
            route("nocache", "/nocache", {**BASIC, "cache_size": 0}),
            route("small", "/small", {**BASIC, "cache_size": 2}),
        ],
    }

    async def start() -> tuple[Any, Any, Any]:
        upstream = await EchoUpstream().start()
        config["upstreams"]["echo"]["targets"][0]["url"] = upstream.url
        manager = running_gateway(config)
        gw = await manager.__aenter__()
        return upstream, manager, gw

    upstream, manager, gw = loop.run_until_complete(start())
    yield Stack(loop, gw, upstream)
    loop.run_until_complete(manager.__aexit__(None, None, None))
    loop.run_until_complete(upstream.close())


def error(response: Any) -> str:
    return response.json()["error"]["code"]


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [
        (SECRET, "HS256", "h1"),
        (SECRET, "HS384", "h1"),
        (SECRET, "HS512", "h1"),
        (RSA, "RS256", "r1"),
        (RSA, "RS384", "r1"),
        (RSA, "RS512", "r1"),
        (RSA, "PS256", "r1"),
        (RSA, "PS384", "r1"),
        (RSA, "PS512", "r1"),
        (P256, "ES256", "e256"),
        (P384, "ES384", "e384"),
        (ED, "EdDSA", "ed"),
        (ED, "EdDSA", None),  # no kid: every key of the kind is tried
    ],
)
def test_every_algorithm_verifies(stack: Stack, key: Any, alg: str, kid: str | None) -> None:
    response = stack.bearer("/basic", sign(key, alg, kid))
    assert response.status == 200, response.body
    assert response.upstream is not None


def test_a_missing_token_is_401_with_a_bare_bearer_challenge(stack: Stack) -> None:
    response = stack.get("/basic")
    assert response.status == 401
    assert error(response) == "credentials_missing"
    assert response.headers["www-authenticate"] == "Bearer"
    basic = stack.get("/basic", [("authorization", "Basic YWxpY2U6c2VjcmV0")])
    assert error(basic) == "credentials_missing"
    realm = stack.get("/consumer")
    assert realm.headers["www-authenticate"] == 'Bearer realm="orders"'


def refused(stack: Stack, path: str, token: str, code: str, description: str) -> None:
    response = stack.bearer(path, token)
    assert response.status == 401, response.body
    assert error(response) == code
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    assert description in challenge
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in challenge and part.encode() not in response.body
    assert response.upstream is None


def unsigned(alg: str = "none", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iss": ISSUER, "aud": "orders", "exp": now + 300, **claims}
    parts = [{"alg": alg, "kid": "r1", "typ": "JWT"}, payload]
    encoded = [jwt.utils.base64url_encode(json.dumps(part).encode()) for part in parts]
    return b".".join(encoded).decode() + "."


def test_alg_none_and_algorithms_outside_the_list_are_refused(stack: Stack) -> None:
    refused(stack, "/basic", unsigned(), "credentials_invalid", "algorithm is not accepted")
    # "none" spelled otherwise, and an empty signature with a listed alg.
    refused(stack, "/basic", unsigned("NONE"), "credentials_invalid", "not accepted")
    header, payload, _ = sign(RSA, "RS256").split(".")
    refused(stack, "/basic", f"{header}.{payload}.", "credentials_invalid", "signature")
    refused(stack, "/rs", sign(P256, "ES256", "e256"), "credentials_invalid", "not accepted")
    refused(stack, "/rs", sign(SECRET, "HS256", "h1"), "credentials_invalid", "not accepted")


def test_an_hs_token_signed_with_the_rsa_public_key_is_refused(stack: Stack) -> None:
    """Algorithm confusion: the attacker signs HS256 with the server's public key PEM."""
    public_pem = pem(RSA).encode()
    hmac = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    forged_parts = [
        jwt.utils.base64url_encode(b'{"alg":"HS256","kid":"r1","typ":"JWT"}'),
        jwt.utils.base64url_encode(
            jwt.utils.force_bytes(
                f'{{"sub":"alice","iss":"{ISSUER}","aud":"orders","exp":{int(time.time()) + 300}}}'
            )
        ),
    ]
    signing_input = b".".join(forged_parts)
    forged = (
        signing_input + b"." + jwt.utils.base64url_encode(hmac.sign(signing_input, public_pem))
    ).decode()
    refused(stack, "/confusion", forged, "credentials_invalid", "no known key")
    refused(stack, "/rs", forged, "credentials_invalid", "not accepted")


def test_bad_signatures_and_malformed_tokens(stack: Stack) -> None:
    refused(stack, "/basic", sign(RSA_OTHER, "RS256"), "credentials_invalid", "signature")
    refused(stack, "/basic", "not-a-token", "credentials_invalid", "malformed")
    refused(stack, "/basic", "a.b.c", "credentials_invalid", "malformed")
    refused(stack, "/basic", sign(RSA, "RS256", kid="nope"), "credentials_invalid", "no known key")
    # ES256 with a P-384 key's kid: the key is not of that kind.
    refused(stack, "/basic", sign(P256, "ES256", "e384"), "credentials_invalid", "no known key")


def test_claims_with_leeway(stack: Stack) -> None:
    now = int(time.time())
    refused(stack, "/basic", sign(RSA, "RS256", exp=now - 10), "token_expired", "expired")
    refused(stack, "/basic", sign(RSA, "RS256", nbf=now + 60), "token_not_yet_valid", "not valid")
    refused(stack, "/basic", sign(RSA, "RS256", aud="billing"), "token_audience", "audience")
    refused(stack, "/basic", sign(RSA, "RS256", aud=None), "credentials_invalid", "claim")
    refused(stack, "/basic", sign(RSA, "RS256", iss="https://evil/"), "token_issuer", "issuer")
    refused(stack, "/basic", sign(RSA, "RS256", exp=None), "credentials_invalid", "claim")
    refused(stack, "/required", sign(RSA, "RS256"), "credentials_invalid", "required claim")
    assert stack.bearer("/required", sign(RSA, "RS256", tenant="t1")).status == 200
    # 30 s of leeway: 10 s late or 20 s early passes, 40 s does not.
    assert stack.bearer("/leeway", sign(RSA, "RS256", exp=now - 10)).status == 200
    assert stack.bearer("/leeway", sign(RSA, "RS256", nbf=now + 20)).status == 200
    assert error(stack.bearer("/leeway", sign(RSA, "RS256", exp=now - 40))) == "token_expired"
    assert error(stack.bearer("/leeway", sign(RSA, "RS256", nbf=now + 40))) == (
        "token_not_yet_valid"
    )
    # A list audience: one match is enough.
    assert stack.bearer("/basic", sign(RSA, "RS256", aud=["x", "orders"])).status == 200


def test_a_cached_token_is_refused_once_it_expires(stack: Stack) -> None:
    token = sign(RSA, "RS256", exp=int(time.time()) + 2)
    assert stack.bearer("/basic", token).status == 200
    assert stack.bearer("/basic", token).status == 200  # from the cache
    deadline = time.time() + 5
    while time.time() < deadline:
        response = stack.bearer("/basic", token)
        if response.status != 200:
            break
        time.sleep(0.1)
    assert error(response) == "token_expired"


def test_a_cached_token_is_not_used_before_its_nbf_with_leeway() -> None:
    policy = provision(BASIC)
    now = time.time()
    token = sign(RSA, "RS256", nbf=int(now) - 1)
    result = policy._verify(token)
    assert isinstance(result[1], dict), result
    expires, not_before, *_ = policy.cache[token]
    assert not_before == int(now) - 1
    assert expires == result[1]["exp"]
    leeway = provision({**BASIC, "leeway": "30s"})
    leeway._verify(token)
    expires, not_before, *_ = leeway.cache[token]
    assert (not_before, expires) == (int(now) - 31, result[1]["exp"] + 30)


def test_the_cache_is_bounded_and_failures_are_not_cached() -> None:
    policy = provision({**BASIC, "cache_size": 2})
    tokens = [sign(RSA, "RS256", jti=str(i)) for i in range(3)]
    for token in tokens:
        policy._verify(token)
    assert list(policy.cache) == tokens[1:]
    assert policy._verify(sign(RSA_OTHER, "RS256")).code == "credentials_invalid"
    assert list(policy.cache) == tokens[1:]
    off = provision({**BASIC, "cache_size": 0})
    off._verify(tokens[0])
    assert not off.cache


def test_a_consumer_named_by_a_claim(stack: Stack) -> None:
    response = stack.bearer("/consumer", sign(RSA, "RS256", sub="alice", scope="orders:read a"))
    assert response.status == 200
    headers = response.upstream.headers
    assert headers["x-consumer-id"] == "u-1"
    assert headers["x-consumer-username"] == "alice"
    assert headers["x-consumer-groups"] == "billing"
    assert headers["x-authenticated-scope"] == "orders:read a"
    by_id = stack.bearer("/consumer", sign(RSA, "RS256", sub="u-1", scope=["a", "b"]))
    assert by_id.upstream.headers["x-consumer-id"] == "u-1"
    assert by_id.upstream.headers["x-authenticated-scope"] == "a b"
    response = stack.bearer("/consumer", sign(RSA, "RS256", sub="mallory"))
    assert response.status == 401
    assert error(response) == "credentials_invalid"
    assert "no known consumer" in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].startswith('Bearer realm="orders", error=')
    # Without consumer_claim a valid token is accepted with no consumer.
    plain = stack.bearer("/basic", sign(RSA, "RS256", sub="mallory"))
    assert plain.status == 200
    assert "x-consumer-id" not in plain.upstream.headers


def test_forward_claims_replace_the_clients_copies(stack: Stack) -> None:
    token = sign(RSA, "RS256", roles=["admin", "billing"], tenant="t\r\nx-evil: 1")
    response = stack.bearer(
        "/forward", token, ("x-user-id", "root"), ("X-Roles", "god"), ("x-tenant", "t0")
    )
    assert response.status == 200
    headers = response.upstream.headers
    assert headers.getall("x-user-id") == ["alice"]
    assert headers.getall("x-roles") == ["admin, billing"]
    # A claim with control characters is not forwarded, and the client's copy is gone.
    assert "x-tenant" not in headers and "x-evil" not in headers
    # A claim the token lacks: the client's copy is removed too (also from the cache).
    for _ in range(2):
        bare = stack.bearer("/forward", sign(RSA, "RS256"), ("x-roles", "god"), ("x-tenant", "a"))
        assert "x-roles" not in bare.upstream.headers
        assert "x-tenant" not in bare.upstream.headers
        assert bare.upstream.headers["x-user-id"] == "alice"


def test_a_failure_falls_back_to_the_anonymous_consumer_without_client_copies(
    stack: Stack,
) -> None:
    response = stack.get("/anon")
    assert response.status == 200
    assert response.upstream.headers["x-anonymous-consumer"] == "true"
    bad = stack.bearer("/anon", sign(RSA_OTHER, "RS256"))
    assert bad.status == 200
    assert bad.upstream.headers["x-consumer-username"] == "guest"


def test_token_sources(stack: Stack) -> None:
    token = sign(ED, "EdDSA", "ed")
    assert stack.get("/sources", [("x-token", token)]).status == 200
    assert stack.get("/sources", [("x-token", f"Bearer {token}")]).status == 200
    assert stack.get("/sources", [("cookie", f"a=1; at={token}; b=2")]).status == 200
    assert stack.get(f"/sources?x=1&access_token={token}").status == 200
    assert error(stack.get("/sources", [("authorization", f"Bearer {token}")])) == (
        "credentials_missing"
    )


def test_without_a_cache_every_request_verifies(stack: Stack) -> None:
    token = sign(P256, "ES256", "e256")
    for _ in range(3):
        assert stack.bearer("/nocache", token).status == 200
    for i in range(4):
        assert stack.bearer("/small", sign(P256, "ES256", "e256", jti=str(i))).status == 200
