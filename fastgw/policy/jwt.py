"""The `jwt` policy: bearer tokens (JWS) verified with PyJWT against configured or fetched keys.

    policies:
      - jwt:
          issuer: "https://idp.example.com/"    # iss checked; alone, OIDC discovery finds the keys
          jwks_url: "https://idp.example.com/keys"   # or keys: [{kid, alg, secret | public_key}]
          audience: [orders-api]
          algorithms: [RS256, ES256]            # required: nothing else is accepted
          leeway: 30s
          required_claims: [sub, exp]
          consumer_claim: sub                   # the claim naming a consumer (name or id)
          forward_claims: {sub: x-user-id}      # claims to upstream headers

The token comes from `Authorization: Bearer ...` (or `header`, `cookie`, `query`). Its
`alg` must be one of `algorithms` ("none" never is), and it is checked only with keys of
that algorithm's kind: an HS token is never checked against an RSA or EC public key (the
algorithm confusion attack), an ES256 token only with a P-256 key. Claims: exp and nbf with
`leeway`, iss, aud, `required_claims`. A refusal is 401 with `WWW-Authenticate: Bearer`
(RFC 6750: `error="invalid_token"` and a fixed description that never repeats the token)
and a stable code: credentials_missing, credentials_invalid, token_expired,
token_not_yet_valid, token_audience, token_issuer; 503 auth_unavailable while no key set
was ever fetched (fastgw.policy.jwks fetches and refreshes key sets).

Verified tokens are kept in a bounded LRU cache keyed on the whole token, so a repeated token
costs a dict lookup and a clock read: an entry is used only between the token's nbf and exp
(with leeway), and only while the key set it was verified with is unchanged.

`on_request` is an `async def` that awaits only when it must wait for a key set fetch (an
unknown kid, no key set yet); every other request, the cache hits and the verifications
with keys in memory, runs to its end without suspending and costs no Task.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections import OrderedDict
from typing import Annotated, Any
from urllib.parse import parse_qsl

import jwt
import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msgspec import Meta

from fastgw import _core
from fastgw.config.schema import Duration
from fastgw.policy import jwks
from fastgw.policy.auth import AuthConfig, AuthPolicy
from fastgw.policy.base import (
    PolicyConfig,
    PolicyConfigError,
    ProvisionContext,
    Response,
    check_header_name,
)
from fastgw.policy.consumers import Consumer

__all__ = ["Jwt", "JwtConfig", "JwtKey"]

_QUERY_NAME = r"^[A-Za-z0-9_.~-]+$"
_COOKIE_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# A token without exp is kept this long at most (required_claims: [] allows one).
_NO_EXP_CACHE = 300.0
_MAX_TOKEN = 16384
_NEED_KEYS = "need_keys"


class _Refusal:
    """Why a token was refused: the stable code and the WWW-Authenticate challenge."""

    __slots__ = ("challenge", "code")

    def __init__(self, code: str, challenge: str) -> None:
        self.code = code
        self.challenge = challenge


# The description each failure carries in WWW-Authenticate (fixed text: never the token).
_DESCRIPTIONS = {
    "malformed": "the token is malformed",
    "algorithm": "the token's algorithm is not accepted",
    "signature": "the token's signature is invalid",
    "no_key": "no known key matches the token",
    "claims": "the token lacks a required claim or has an invalid one",
    "consumer": "the token names no known consumer",
    "token_expired": "the token has expired",
    "token_not_yet_valid": "the token is not valid yet",
    "token_audience": "the token is not meant for this audience",
    "token_issuer": "the token's issuer is not accepted",
}


class JwtKey(PolicyConfig, kw_only=True):
    """One verification key: an HMAC `secret`, or a PEM public key (or certificate)."""

    kid: str | None = None
    alg: str | None = None
    secret: str | None = None
    public_key: str | None = None
    public_key_file: str | None = None


class JwtConfig(AuthConfig, kw_only=True):
    """See the module docstring; `algorithms` is required."""

    algorithms: tuple[str, ...]
    issuer: str | None = None
    # None: discovery when `issuer` is the only source of keys.
    discovery: bool | None = None
    jwks_url: str | None = None
    keys: tuple[JwtKey, ...] = ()
    audience: str | tuple[str, ...] | None = None
    leeway: Duration | None = None
    required_claims: tuple[str, ...] = ("exp",)
    consumer_claim: str | None = None
    forward_claims: dict[str, str] = {}
    scope_claim: str | None = "scope"
    header: str | None = "authorization"
    cookie: Annotated[str, Meta(pattern=_COOKIE_NAME)] | None = None
    query: Annotated[str, Meta(pattern=_QUERY_NAME)] | None = None
    realm: str | None = None
    jwks_refresh: Duration = 300.0
    jwks_timeout: Duration = 5.0
    cache_size: Annotated[int, Meta(ge=0)] = 10000


def _check_algorithms(names: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        raise PolicyConfigError(
            "algorithms may not be empty",
            "algorithms",
            expected="the algorithms your issuer signs with, like [RS256] or [ES256, EdDSA]",
        )
    for index, name in enumerate(names):
        if name.lower() == "none":
            raise PolicyConfigError(
                'algorithm "none" (unsigned tokens) is never accepted', ("algorithms", index)
            )
        if name not in jwks.ALGORITHMS:
            raise PolicyConfigError(
                f"unknown algorithm {name!r}",
                ("algorithms", index),
                expected="one of: " + ", ".join(jwks.ALGORITHMS),
            )
    return tuple(dict.fromkeys(names))


def _load_public_key(pem: bytes) -> Any:
    if b"-----BEGIN CERTIFICATE-----" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


def _static_key(
    entry: JwtKey, index: int, algorithms: tuple[str, ...], base: str
) -> jwks.VerifyKey:
    at: tuple[str | int, ...] = ("keys", index)
    given = [name for name in ("secret", "public_key", "public_key_file") if getattr(entry, name)]
    if len(given) != 1:
        raise PolicyConfigError(
            "a key needs exactly one of secret, public_key, public_key_file",
            at,
            got=", ".join(given) or "none",
        )
    if entry.alg is not None:
        if entry.alg not in jwks.ALGORITHMS:
            raise PolicyConfigError(
                f"unknown algorithm {entry.alg!r}",
                (*at, "alg"),
                expected="one of: " + ", ".join(jwks.ALGORITHMS),
            )
        if entry.alg not in algorithms:
            raise PolicyConfigError(f"the key's alg {entry.alg} is not in algorithms", (*at, "alg"))
    wanted = algorithms if entry.alg is None else (entry.alg,)
    if entry.secret is not None:
        key: Any = entry.secret.encode()
        where = (*at, "secret")
    else:
        if entry.alg is not None and entry.alg.startswith("HS"):
            raise PolicyConfigError(
                f"{entry.alg} needs a secret: a public key is never an HMAC secret "
                "(that is the algorithm confusion attack)",
                (*at, "alg"),
            )
        if entry.public_key is not None:
            where = (*at, "public_key")
            pem = entry.public_key.encode()
        else:
            assert entry.public_key_file is not None
            where = (*at, "public_key_file")
            path = os.path.join(base, entry.public_key_file)
            try:
                with open(path, "rb") as file:
                    pem = file.read()
            except OSError as exc:
                raise PolicyConfigError(
                    f"cannot read the key file {entry.public_key_file!r}: {exc.strerror}", where
                ) from None
        try:
            key = _load_public_key(pem)
        except (ValueError, TypeError):
            raise PolicyConfigError(
                "not a PEM public key or certificate",
                where,
                expected="-----BEGIN PUBLIC KEY----- ... (RSA, EC P-256/P-384/P-521, Ed25519)",
            ) from None
    usable = jwks.key_algorithms(key, wanted)
    if not usable:
        kind = "an HMAC secret" if isinstance(key, bytes) else f"a {type(key).__name__} key"
        raise PolicyConfigError(
            f"{kind} cannot verify any of {', '.join(wanted)}",
            where,
            expected="a secret for HS*, an RSA key for RS*/PS*, an EC key of the curve for "
            "ES*, an Ed25519/Ed448 key for EdDSA",
        )
    return jwks.VerifyKey(entry.kid, usable, key)


def _unverified_header(token: str) -> dict[str, Any] | None:
    """The JOSE header, read only to choose the key: jwt.decode checks the token itself
    (and refuses an alg other than the one chosen here). PERF: PyJWT's own
    get_unverified_header validates every segment character by character, as decode then
    does again; this reads the first segment alone."""
    head, dot, rest = token.partition(".")
    if not dot or "." not in rest or len(head) > 4096:
        return None
    try:
        header = msgspec.json.decode(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, msgspec.DecodeError):
        return None
    return header if isinstance(header, dict) else None


def _header_value(value: Any) -> str | None:
    """A claim as an upstream field value; None when it cannot be one safely."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    elif isinstance(value, list):
        items = [_header_value(item) for item in value]
        if any(item is None for item in items):
            return None
        text = ", ".join(item for item in items if item is not None)
    else:
        return None
    if _CONTROL.search(text):
        return None
    text = text.strip(" \t")
    # The core writes field values as Latin-1: UTF-8 bytes go through unchanged.
    return text.encode().decode("latin-1")


def _scope(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = " ".join(value)
    if not isinstance(value, str) or _CONTROL.search(value):
        return None
    value = value.strip(" \t")
    return value.encode().decode("latin-1") if value else None


class Jwt(AuthPolicy):
    """JWT bearer authentication (see the module docstring)."""

    name = "jwt"
    Config = JwtConfig

    def __init__(self, config: JwtConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        self.algorithms = _check_algorithms(config.algorithms)
        base = (
            os.path.dirname(os.path.abspath(context.file))
            if context.file is not None
            else os.getcwd()
        )
        self.static = jwks.KeySet(
            _static_key(entry, index, self.algorithms, base)
            for index, entry in enumerate(config.keys)
        )
        discovery = config.discovery
        if discovery is None:
            discovery = config.issuer is not None and config.jwks_url is None and not config.keys
        if discovery and config.issuer is None:
            raise PolicyConfigError("discovery needs the issuer", "discovery")
        if discovery and config.jwks_url is not None:
            raise PolicyConfigError("give jwks_url or discovery: true, not both", "discovery")
        if config.jwks_url is not None and not config.jwks_url.lower().startswith(
            ("https://", "http://")
        ):
            raise PolicyConfigError(
                "jwks_url must be an http(s) URL", "jwks_url", got=repr(config.jwks_url)
            )
        if discovery and not config.issuer.lower().startswith(("https://", "http://")):  # type: ignore[union-attr]
            raise PolicyConfigError(
                "discovery needs an http(s) issuer URL", "issuer", got=repr(config.issuer)
            )
        if not config.keys and config.jwks_url is None and not discovery:
            raise PolicyConfigError(
                "jwt needs keys to verify with",
                (),
                expected="keys: [...], jwks_url: URL, or issuer: URL (OIDC discovery)",
            )
        if config.header is None and config.cookie is None and config.query is None:
            raise PolicyConfigError(
                "jwt needs a header, a cookie or a query parameter to read the token from", ()
            )
        self.header: str | None = None
        self.bearer_only = False
        if config.header is not None:
            try:
                self.header = check_header_name(config.header)
            except ValueError as exc:
                raise PolicyConfigError(str(exc), "header") from None
            self.bearer_only = self.header == "authorization"
        self.forward: tuple[tuple[str, str], ...] = ()
        forward = []
        for claim, field in config.forward_claims.items():
            try:
                _core.check_field(field)
            except ValueError as exc:
                raise PolicyConfigError(str(exc), ("forward_claims", claim)) from None
            forward.append((claim, field.lower()))
        self.forward = tuple(forward)
        self.remove_fields = tuple(dict.fromkeys(field for _, field in self.forward))
        if config.realm is not None and ('"' in config.realm or "\\" in config.realm):
            raise PolicyConfigError("realm may not hold a double quote or a backslash", "realm")
        realm = "" if config.realm is None else f'realm="{config.realm}"'
        self.challenge = f"Bearer {realm}" if realm else "Bearer"
        self._refusals = {
            reason: _Refusal(
                reason if reason.startswith("token_") else "credentials_invalid",
                "Bearer "
                + (realm + ", " if realm else "")
                + f'error="invalid_token", error_description="{text}"',
            )
            for reason, text in _DESCRIPTIONS.items()
        }
        self._unavailable = _Refusal("auth_unavailable", self.challenge)
        audience = config.audience
        self.audience: list[str] | None = (
            None
            if audience is None
            else [audience]
            if isinstance(audience, str)
            else list(audience)
        )
        self.leeway = float(config.leeway or 0.0)
        self.options: dict[str, Any] = {
            "require": list(config.required_claims),
            "verify_aud": self.audience is not None,
        }
        self.cache: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self.cache_size = config.cache_size
        self.fetcher: jwks.KeySetFetcher | None = None
        if config.jwks_url is not None or discovery:
            self.fetcher = jwks.acquire(
                jwks_url=config.jwks_url,
                issuer=config.issuer if discovery else None,
                algorithms=self.algorithms,
                refresh=float(config.jwks_refresh),
                timeout=float(config.jwks_timeout),
            )
            self.fetcher.ensure_running()

    def close(self) -> None:
        fetcher, self.fetcher = self.fetcher, None
        if fetcher is not None:
            jwks.release(fetcher)
        self.cache.clear()

    # --- the request ------------------------------------------------------------------

    async def on_request(self, request: Any) -> Response | None:
        if request.authenticated:
            self._drop_client_copies(request)
            return None
        token = self._token(request)
        if token is None:
            return self._refuse(request, "credentials_missing", self.challenge)
        fetcher = self.fetcher
        entry = self.cache.get(token)
        if entry is not None:
            expires, not_before, generation, consumer, claims, scope, fields = entry
            now = time.time()
            if not_before <= now < expires and (
                fetcher is None or generation == fetcher.generation
            ):
                self.cache.move_to_end(token)
                for field, value in fields:
                    if value is None:
                        request.remove_header(field)
                    else:
                        request.set_header(field, value)
                request.authenticate(consumer, claims, "jwt", scope)
                return None
            del self.cache[token]
        if fetcher is not None:
            fetcher.ensure_running()
        result = self._verify(token)
        if result is _NEED_KEYS:
            assert fetcher is not None
            await fetcher.refresh()
            if fetcher.keys is None:
                self._drop_client_copies(request)
                return self.reject(request, "auth_unavailable")
            result = self._verify(token, refreshed=True)
        if isinstance(result, _Refusal):
            return self._refuse(request, result.code, result.challenge)
        consumer, claims, scope, fields = result
        return self._accept(request, consumer, claims, scope, fields)

    def _accept(
        self,
        request: Any,
        consumer: Consumer | None,
        claims: dict[str, Any],
        scope: str | None,
        fields: tuple[tuple[str, str | None], ...],
    ) -> None:
        for field, value in fields:
            if value is None:
                request.remove_header(field)
            else:
                request.set_header(field, value)
        return self.accept(request, consumer, claims, scope=scope)

    def _refuse(self, request: Any, code: str, challenge: str) -> Response | None:
        self._drop_client_copies(request)
        return self.reject(request, code, challenge)

    def _drop_client_copies(self, request: Any) -> None:
        for field in self.remove_fields:
            request.remove_header(field)

    def _token(self, request: Any) -> str | None:
        if self.header is not None:
            value = request.headers.get(self.header)
            if value is not None:
                if value[:7].lower() == "bearer ":
                    value = value[7:].strip()
                    if value:
                        return value
                elif not self.bearer_only and value.strip():
                    return value.strip()
        cookie = self.config.cookie
        if cookie is not None:
            for value in request.headers.getall("cookie"):
                for part in value.split(";"):
                    name, _, found = part.strip().partition("=")
                    if name == cookie and found:
                        return found.strip('"')
        query = self.config.query
        if query is not None and request.query:
            for name, found in parse_qsl(request.query, keep_blank_values=False):
                if name == query and found:
                    return found
        return None

    def _verify(self, token: str, refreshed: bool = False) -> Any:
        """(consumer, claims, scope, fields) and the token cached; a _Refusal; or
        _NEED_KEYS when a key set fetch could tell more."""
        refusals = self._refusals
        if len(token) > _MAX_TOKEN:
            return refusals["malformed"]
        header = _unverified_header(token)
        if header is None:
            return refusals["malformed"]
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return refusals["algorithm"]
        if kid is not None and not isinstance(kid, str):
            return refusals["malformed"]
        candidates = self.static.find(kid, alg)
        fetcher = self.fetcher
        generation = -1
        if fetcher is not None:
            fetched = fetcher.keys
            if fetched is None:
                if not candidates:
                    return self._unavailable if refreshed else _NEED_KEYS
            else:
                generation = fetched.generation
                candidates += fetched.find(kid, alg)
                if (
                    kid is not None
                    and not refreshed
                    and not fetched.knows(kid)
                    and not self.static.knows(kid)
                ):
                    return _NEED_KEYS
        if not candidates:
            return refusals["no_key"]
        claims = None
        for candidate in candidates:
            try:
                claims = jwt.decode(
                    token,
                    candidate.key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.config.issuer,
                    leeway=self.leeway,
                    options=self.options,
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                return refusals["token_expired"]
            except jwt.ImmatureSignatureError:
                return refusals["token_not_yet_valid"]
            except jwt.InvalidAudienceError:
                return refusals["token_audience"]
            except jwt.InvalidIssuerError:
                return refusals["token_issuer"]
            except jwt.DecodeError:
                return refusals["malformed"]
            except jwt.InvalidTokenError:
                return refusals["claims"]
            except (jwt.PyJWTError, ValueError, TypeError):
                return refusals["signature"]
        if claims is None:
            return refusals["signature"]
        consumer = None
        if self.config.consumer_claim is not None:
            value = claims.get(self.config.consumer_claim)
            consumer = self.consumers.get(value) if isinstance(value, str) else None
            if consumer is None:
                return refusals["consumer"]
        scope = None
        if self.config.scope_claim is not None and self.config.scope_claim in claims:
            scope = _scope(claims[self.config.scope_claim])
        fields = tuple(
            (field, _header_value(claims[claim]) if claim in claims else None)
            for claim, field in self.forward
        )
        if self.cache_size:
            self._remember(token, claims, generation, consumer, scope, fields)
        return consumer, claims, scope, fields

    def _remember(
        self,
        token: str,
        claims: dict[str, Any],
        generation: int,
        consumer: Consumer | None,
        scope: str | None,
        fields: tuple[tuple[str, str | None], ...],
    ) -> None:
        now = time.time()
        exp = claims.get("exp")
        nbf = claims.get("nbf")
        expires = (
            float(exp) + self.leeway
            if isinstance(exp, int | float) and not isinstance(exp, bool)
            else now + _NO_EXP_CACHE
        )
        not_before = (
            float(nbf) - self.leeway
            if isinstance(nbf, int | float) and not isinstance(nbf, bool)
            else float("-inf")
        )
        cache = self.cache
        cache[token] = (expires, not_before, generation, consumer, claims, scope, fields)
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
