"""The `oauth2_introspection` policy: opaque bearer tokens checked by the authorization
server's introspection endpoint (RFC 7662).

    policies:
      - oauth2_introspection:
          url: https://idp.example.com/oauth2/introspect
          client_id: orders-gateway
          client_secret: "${INTROSPECTION_SECRET}"
          cache: 60s                       # how long an answer is reused (default: not at all)
          consumer_claim: sub              # optional: the claim naming a consumer
          forward_claims: {sub: x-user-id} # optional: claims to upstream header fields

The token comes from `Authorization: Bearer <token>` (RFC 6750 2.1). The gateway POSTs it,
form-encoded with `token_type_hint=access_token`, authenticating itself with HTTP Basic
(client_id and client_secret form-encoded first, RFC 6749 2.3.1) or, with
`client_auth: post`, as form fields. An `active: true` answer accepts the client: the answer
is `request.claims`, its `scope` goes upstream as X-Authenticated-Scope, `consumer_claim`
maps it to a consumer (by name or id; a token naming no consumer is refused) and
`forward_claims` copies claims to header fields (the client's own copies of those fields
never reach the upstream). `active: false`, or an `exp` in the past, is 401
`credentials_invalid` (`token_expired`) with `WWW-Authenticate: Bearer error="invalid_token"`.

Answers are cached for `cache` (bounded, LRU), keyed by a keyed hash of the token, and an
active answer is never used past its `exp`; concurrent requests with the same uncached
token share one call. An endpoint that cannot be reached, is slow beyond `timeout`, or
answers anything but 200 with a JSON object holding a boolean `active` fails closed: 503
`auth_unavailable`, logged without the token or the client secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus, urlsplit

import msgspec
from msgspec import Meta

from fastgw.config.schema import Duration
from fastgw.policy.auth import AuthConfig, AuthPolicy
from fastgw.policy.base import (
    PolicyConfigError,
    ProvisionContext,
    Response,
    check_header_name,
    check_header_value,
)
from fastgw.policy.compiled import CompileContext, CoreParts, HeaderOp
from fastgw.policy.consumers import Consumer

__all__ = ["IntrospectionConfig", "OAuth2Introspection"]

_log = logging.getLogger("fastgw")

# RFC 6750 2.1: b64token.
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
# An introspection answer is a small JSON object; a bigger one is refused, not buffered.
MAX_ANSWER_BYTES = 256 * 1024

_INVALID = 'Bearer error="invalid_token"'


class _Unavailable(Exception):
    """The endpoint gave no usable answer (why, without the token or the secret)."""


class IntrospectionConfig(AuthConfig, kw_only=True):
    """Where and how to introspect, how long to trust an answer, what to forward."""

    url: Annotated[str, Meta(min_length=1)]
    client_id: str | None = None
    client_secret: str | None = None
    # client_secret_basic (HTTP Basic, the default) or client_secret_post (form fields).
    client_auth: Literal["basic", "post"] = "basic"
    token_type_hint: str | None = "access_token"
    timeout: Duration = 2.0
    # How long an answer (active or not) is reused; none: every request asks.
    cache: Duration | None = None
    cache_size: Annotated[int, Meta(ge=1)] = 10_000
    realm: Annotated[str, Meta(pattern=r'^[^"\\\x00-\x1f\x7f]*$')] | None = None
    scope_claim: Annotated[str, Meta(min_length=1)] = "scope"
    consumer_claim: Annotated[str, Meta(min_length=1)] | None = None
    forward_claims: dict[str, str] = {}


class OAuth2Introspection(AuthPolicy):
    """RFC 7662 token introspection (see the module docstring)."""

    name = "oauth2_introspection"
    Config = IntrospectionConfig

    def __init__(self, config: IntrospectionConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        parts = urlsplit(config.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PolicyConfigError(
                "url is not an http or https URL", "url", expected="https://idp.example/introspect"
            )
        if parts.username is not None or parts.password is not None:
            raise PolicyConfigError(
                "url may not hold credentials",
                "url",
                expected="client_id and client_secret",
                got="a URL with user:password@ (hidden)",
            )
        if (config.client_id is None) != (config.client_secret is None):
            raise PolicyConfigError(
                "client_id and client_secret go together",
                "client_secret" if config.client_secret is None else "client_id",
            )
        self.challenge = "Bearer" if config.realm is None else f'Bearer realm="{config.realm}"'
        self._invalid = (
            _INVALID
            if config.realm is None
            else f'Bearer realm="{config.realm}", error="invalid_token"'
        )
        self._forward: list[tuple[str, str]] = []
        for claim, field in config.forward_claims.items():
            try:
                self._forward.append((claim, check_header_name(field)))
            except ValueError as exc:
                raise PolicyConfigError(str(exc), ("forward_claims", claim)) from None
        self._form: dict[str, str] = {}
        if config.token_type_hint is not None:
            self._form["token_type_hint"] = config.token_type_hint
        self._headers = {"accept": "application/json"}
        if config.client_id is not None and config.client_secret is not None:
            if config.client_auth == "basic":
                pair = f"{quote_plus(config.client_id)}:{quote_plus(config.client_secret)}"
                self._headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            else:
                self._form["client_id"] = config.client_id
                self._form["client_secret"] = config.client_secret
        self._session: Any = None
        self._cache: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        # Cache keys are a MAC (BLAKE2s) of the token with a random key: never the token.
        self._keyed_hash = hashlib.blake2s(key=secrets.token_bytes(32))
        self._in_flight: dict[bytes, asyncio.Task[Any]] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        self.calls = 0  # introspection requests sent (tests, diagnostics)

    def __repr__(self) -> str:
        return f"OAuth2Introspection(url={self.config.url!r})"

    def compile_core(self, context: CompileContext) -> CoreParts:
        parts = context.hook_parts(self)
        # Forwarded claims replace whatever the client sent: its copies are dropped first,
        # the hook sets the token's values after (hook changes apply last).
        ops = tuple(HeaderOp("remove", field.encode()) for _, field in self._forward)
        return CoreParts(steps=parts.steps, request_ops=ops, response_hooks=parts.response_hooks)

    async def on_request(self, request: Any) -> Response | None:
        if request.authenticated:
            return None
        values = request.headers.getall("authorization")
        if not values:
            return self.reject(request, "credentials_missing")
        if len(values) > 1:
            return self.reject(request, "credentials_invalid", self._invalid)
        scheme, _, token = values[0].partition(" ")
        if scheme.lower() != "bearer":
            return self.reject(request, "credentials_missing")
        token = token.lstrip(" ")
        if not _B64TOKEN.match(token):
            return self.reject(request, "credentials_invalid", self._invalid)
        keyed = self._keyed_hash.copy()
        keyed.update(token.encode("ascii"))
        key = keyed.digest()
        now = time.time()
        # PERF: a cached answer returns before any await: no Task.
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(key)
                return self._decide(request, cached[1], now)
            del self._cache[key]
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._introspect(key, token))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        try:
            answer = await asyncio.shield(task)
        except _Unavailable:
            return self.reject(request, "auth_unavailable")
        return self._decide(request, answer, time.time())

    async def _introspect(self, key: bytes, token: str) -> Any:
        """The decoded answer for `token`, cached; raise _Unavailable (logged once here,
        without the token or the secret)."""
        try:
            answer = await self._ask(token)
        except _Unavailable as exc:
            _log.warning("oauth2_introspection %s: %s", self.config.url, exc)
            raise
        if self.config.cache is not None:
            expires = time.time() + float(self.config.cache)
            exp = _number(answer.get("exp"))
            if answer["active"] and exp is not None:
                expires = min(expires, exp)
            self._cache[key] = (expires, answer)
            if len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        return answer

    async def _ask(self, token: str) -> dict[str, Any]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=float(self.config.timeout)),
                trust_env=False,
            )
        self.calls += 1
        form = {"token": token, **self._form}
        body = bytearray()
        try:
            async with self._session.post(
                self.config.url, data=form, headers=self._headers, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise _Unavailable(f"the endpoint answered {response.status}")
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise _Unavailable(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
        except TimeoutError:
            raise _Unavailable(f"no answer within {float(self.config.timeout):g}s") from None
        except aiohttp.ClientError as exc:
            raise _Unavailable(f"cannot reach the endpoint ({type(exc).__name__})") from None
        try:
            answer = msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise _Unavailable("the answer is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise _Unavailable("the answer is not a JSON object with a boolean 'active'")
        return answer

    def _decide(self, request: Any, answer: dict[str, Any], now: float) -> Response | None:
        if not answer["active"]:
            return self.reject(
                request,
                "credentials_invalid",
                self._invalid + ', error_description="the token is not active"',
            )
        exp = _number(answer.get("exp"))
        if exp is not None and exp <= now:
            return self.reject(
                request, "token_expired", self._invalid + ', error_description="the token expired"'
            )
        nbf = _number(answer.get("nbf"))
        if nbf is not None and nbf > now:
            return self.reject(
                request,
                "token_not_yet_valid",
                self._invalid + ', error_description="the token is not valid yet"',
            )
        consumer: Consumer | None = None
        if self.config.consumer_claim is not None:
            name = answer.get(self.config.consumer_claim)
            consumer = self.consumers.get(name) if isinstance(name, str) else None
            if consumer is None:
                return self.reject(
                    request,
                    "credentials_invalid",
                    self._invalid + ', error_description="the token names no known consumer"',
                )
        self.accept(request, consumer, answer, _scope(answer.get(self.config.scope_claim)))
        for claim, field in self._forward:
            value = _header_text(answer.get(claim))
            if value is not None:
                request.set_header(field, value)
        return None

    def close(self) -> None:
        for task in self._in_flight.values():
            task.cancel()
        self._in_flight.clear()
        self._cache.clear()
        session, self._session = self._session, None
        if session is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop left to close on: the process is ending, the sockets with it
        task = loop.create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _scope(value: Any) -> str | None:
    """RFC 7662 2.2: a space-separated string; a list is joined the same way."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = " ".join(value)
    return value if isinstance(value, str) and _header_text(value) is not None else None


def _header_text(value: Any) -> str | None:
    """A claim as a header field value, or None when it has no safe single-line form."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ", ".join(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        check_header_value(value)
        value.encode("latin-1")
    except (ValueError, UnicodeEncodeError):
        return None
    return value
