"""Key sets the `jwt` policy fetches: a JWKS URL, or one found by OIDC discovery.

A `KeySetFetcher` holds the last good key set of one source and keeps it fresh without
ever blocking the event loop: the fetch is aiohttp, bounded by a timeout, in a background
task that runs again after the refresh interval (a shorter `Cache-Control: max-age` of
the response is honoured, never below MIN_REFRESH). A token whose `kid` is unknown asks for
a fetch at once (`refresh`), at most one per FORCED_REFRESH_INTERVAL per key set; requests
that ask together share one fetch. A failed fetch (refused, slow, HTTP 500, not a JWKS)
keeps the last good set serving and is logged once per streak of failures.

Fetchers are shared: policies of one process that read the same source (every route of
a plan, and the next plan after a reload) hold one fetcher, counted by `acquire` and
`release`; the last release stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from fastgw.errors import redact_text

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "ALGORITHMS",
    "FORCED_REFRESH_INTERVAL",
    "MIN_REFRESH",
    "KeySet",
    "KeySetFetcher",
    "VerifyKey",
    "acquire",
    "jwk_algorithms",
    "key_algorithms",
    "parse_jwks",
    "release",
]

_log = logging.getLogger("fastgw.policy")

# Every algorithm the policy accepts, by family: the JWK key type (and curve) each needs.
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "HS256": ("oct", None),
    "HS384": ("oct", None),
    "HS512": ("oct", None),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})

FORCED_REFRESH_INTERVAL = 10.0
MIN_REFRESH = 30.0
_RETRY_FIRST = 1.0
_RETRY_MAX = 60.0
_MAX_DOCUMENT = 1 << 20
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.I)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.I)


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """One key and the algorithms (of those the policy allows) it may verify."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any


class KeySet:
    """Keys by `kid`; `generation` changes whenever the keys do."""

    __slots__ = ("by_kid", "generation", "keys")

    def __init__(self, keys: Iterable[VerifyKey], generation: int = 0) -> None:
        self.keys = tuple(keys)
        self.generation = generation
        self.by_kid: dict[str, tuple[VerifyKey, ...]] = {}
        for key in self.keys:
            if key.kid is not None:
                self.by_kid[key.kid] = (*self.by_kid.get(key.kid, ()), key)

    def find(self, kid: str | None, alg: str) -> list[VerifyKey]:
        """The keys that may verify a token of this kid (None: every key) and alg."""
        pool = self.keys if kid is None else self.by_kid.get(kid, ())
        return [key for key in pool if alg in key.algorithms]

    def knows(self, kid: str) -> bool:
        return kid in self.by_kid


def key_algorithms(key: Any, allowed: Iterable[str]) -> frozenset[str]:
    """The algorithms of `allowed` a cryptography public key (or HMAC bytes) may verify."""
    if isinstance(key, bytes):
        kty, curve = "oct", None
    elif isinstance(key, rsa.RSAPublicKey):
        kty, curve = "RSA", None
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kty, curve = (
            "EC",
            {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
                key.curve.name, key.curve.name
            ),
        )
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        kty, curve = "OKP", None
    else:
        return frozenset()
    return frozenset(
        alg
        for alg in allowed
        if ALGORITHMS[alg][0] == kty and (ALGORITHMS[alg][1] in (None, curve))
    )


def jwk_algorithms(jwk: dict[str, Any], allowed: Iterable[str]) -> frozenset[str]:
    """The algorithms of `allowed` a JWK may verify: its kty (and crv) decide the family,
    its `alg` (when given) narrows it to one; keys for encryption verify nothing."""
    kty = jwk.get("kty")
    use = jwk.get("use")
    if use is not None and use != "sig":
        return frozenset()
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return frozenset()
    curve = jwk.get("crv")
    if kty == "OKP" and curve not in _OKP_CURVES:
        return frozenset()
    family = {
        alg for alg in allowed if ALGORITHMS[alg][0] == kty and ALGORITHMS[alg][1] in (None, curve)
    }
    alg = jwk.get("alg")
    if alg is not None:
        family &= {alg}
    return frozenset(family)


def _public(key: Any) -> Any:
    """A private key given where a public one belongs verifies with its public half."""
    if isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        return key.public_key()
    return key


def parse_jwks(document: Any, allowed: Iterable[str]) -> list[VerifyKey]:
    """The usable keys of a JWKS document ({"keys": [...]}); keys of other types, for
    other uses or that do not parse are left out. ValueError if it is not a JWKS."""
    allowed = tuple(allowed)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS: no "keys" list')
    keys: list[VerifyKey] = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        algorithms = jwk_algorithms(jwk, allowed)
        kid = jwk.get("kid")
        if not algorithms or not (kid is None or isinstance(kid, str)):
            continue
        try:
            parsed = jwt.PyJWK(jwk, algorithm=min(algorithms))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        keys.append(VerifyKey(kid, algorithms, _public(parsed.key)))
    return keys


def _max_age(cache_control: str | None) -> float | None:
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0.0
    found = _MAX_AGE.search(cache_control)
    return float(found.group(1)) if found else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = str(exc)
    if isinstance(exc, _FetchError):
        return text
    return redact_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class _FetchError(Exception):
    pass


class KeySetFetcher:
    """The last good key set of one source (see the module docstring).

    `jwks_url`, or `issuer` for OIDC discovery ({issuer}/.well-known/openid-configuration
    names the jwks_uri; its `issuer` must be the one configured)."""

    def __init__(
        self,
        *,
        jwks_url: str | None,
        issuer: str | None,
        algorithms: Iterable[str],
        refresh: float,
        timeout: float,
    ) -> None:
        if (jwks_url is None) == (issuer is None):
            raise ValueError("a fetcher reads a jwks_url or discovers one from an issuer")
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.algorithms = tuple(algorithms)
        self.refresh_interval = refresh
        self.timeout = timeout
        self.keys: KeySet | None = None
        # The generation of `keys` (-1: none yet), a plain attribute: the token cache reads
        # it on every hit.
        self.generation = -1
        self.refs = 0
        self.fetches = 0
        self.failures = 0
        self._discovered: str | None = None
        self._fingerprint: bytes | None = None
        self._failing = False
        self._last_started = float("-inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._stopped = False
        self._max_age: float | None = None
        self.registry_key: tuple[Any, ...] | None = None

    @property
    def source(self) -> str:
        return redact_text(self.jwks_url or f"discovery from {self.issuer}")

    # --- the background task ----------------------------------------------------------

    def ensure_running(self) -> None:
        """Start the background refresh in the running loop if it is not running there
        (no loop: nothing yet, the first request starts it)."""
        if self._stopped:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop is self._loop and self._task is not None and not self._task.done():
            return
        if loop is not self._loop:
            # A new loop (an embedding that restarted): what the old one ran is gone.
            self._loop = loop
            self._inflight = None
        self._task = loop.create_task(self._run(), name=f"jwks {self.source}")

    async def _run(self) -> None:
        retry = _RETRY_FIRST
        while True:
            ok, max_age = await self._shared_fetch()
            if ok:
                retry = _RETRY_FIRST
                wait = self.refresh_interval
                if max_age is not None:
                    wait = min(wait, max(max_age, MIN_REFRESH))
            else:
                wait = min(retry, _RETRY_MAX, self.refresh_interval)
                retry *= 2
            await asyncio.sleep(wait)

    def stop(self) -> None:
        """Cancel the background task and a fetch under way; no further fetches."""
        self._stopped = True
        for task in (self._task, self._inflight):
            if task is not None and not task.done():
                with contextlib.suppress(RuntimeError):  # its loop is closed already
                    task.cancel()
        self._task = None
        self._inflight = None

    # --- fetching ---------------------------------------------------------------------

    async def refresh(self) -> None:
        """Fetch now (a token named an unknown kid, or no key set is known yet), unless
        one was started less than FORCED_REFRESH_INTERVAL ago; a fetch under way is
        shared. Returns when it is over; `keys` then holds what is known."""
        if self._stopped:
            return
        self.ensure_running()
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.shield(inflight)
            return
        if time.monotonic() - self._last_started < FORCED_REFRESH_INTERVAL:
            return
        await self._shared_fetch()

    async def _shared_fetch(self) -> tuple[bool, float | None]:
        inflight = self._inflight
        if inflight is None or inflight.done():
            self._last_started = time.monotonic()
            inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight = inflight
        ok = await asyncio.shield(inflight)
        return ok, self._max_age

    async def _fetch(self) -> bool:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout):
                keys, max_age = await self._download()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure keeps the last good set
            self.failures += 1
            if not self._failing:
                self._failing = True
                _log.warning(
                    "jwt: fetching the key set (%s) failed: %s; %s",
                    self.source,
                    _describe(exc),
                    "the last good key set keeps serving"
                    if self.keys is not None
                    else "tokens are refused (503 auth_unavailable) until a fetch succeeds",
                )
            return False
        if self._failing:
            self._failing = False
            _log.info("jwt: the key set (%s) is fetched again", self.source)
        self._max_age = max_age
        fingerprint = msgspec.json.encode(
            sorted((k.kid or "", sorted(k.algorithms), repr(_fingerprint(k.key))) for k in keys)
        )
        if self.keys is None or fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self.keys = KeySet(keys, self.generation + 1)
            self.generation = self.keys.generation
        return True

    async def _download(self) -> tuple[list[VerifyKey], float | None]:
        import aiohttp  # noqa: PLC0415 - only a process that fetches a key set loads it

        async with aiohttp.ClientSession(
            headers={"accept": "application/json"},
            trust_env=False,
        ) as session:
            url = self.jwks_url
            if url is None:
                url = await self._discover(session)
            document, max_age = await _get_json(session, url)
            keys = parse_jwks(document, self.algorithms)
            if not keys:
                raise _FetchError("the key set has no key usable with the configured algorithms")
            return keys, max_age

    async def _discover(self, session: aiohttp.ClientSession) -> str:
        assert self.issuer is not None
        where = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            document, _ = await _get_json(session, where)
            if not isinstance(document, dict):
                raise _FetchError("the discovery document is not a JSON object")
            if document.get("issuer") != self.issuer:
                raise _FetchError("the discovery document names another issuer")
            url = document.get("jwks_uri")
            if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
                raise _FetchError("the discovery document has no http(s) jwks_uri")
        except _FetchError:
            raise
        except Exception:
            if self._discovered is None:
                raise
            return self._discovered  # the jwks_uri found before still holds the keys
        self._discovered = url
        return url


def _fingerprint(key: Any) -> Any:
    if isinstance(key, bytes):
        return key
    try:
        return key.public_numbers()
    except AttributeError:
        return key.public_bytes_raw()


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[Any, float | None]:
    async with session.get(url) as response:
        if response.status != 200:
            raise _FetchError(f"HTTP {response.status}")
        body = await response.content.read(_MAX_DOCUMENT + 1)
        if len(body) > _MAX_DOCUMENT:
            raise _FetchError("the document is larger than 1 MiB")
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise _FetchError("the answer is not JSON") from None
        return document, _max_age(response.headers.get("cache-control"))


# --- sharing ------------------------------------------------------------------------------

_FETCHERS: dict[tuple[Any, ...], KeySetFetcher] = {}


def acquire(
    *,
    jwks_url: str | None,
    issuer: str | None,
    algorithms: Iterable[str],
    refresh: float,
    timeout: float,
) -> KeySetFetcher:
    """The fetcher of this source and settings, shared; give it back with `release`."""
    algorithms = tuple(sorted(set(algorithms)))
    key = (jwks_url, issuer if jwks_url is None else None, algorithms, refresh, timeout)
    fetcher = _FETCHERS.get(key)
    if fetcher is None:
        fetcher = KeySetFetcher(
            jwks_url=jwks_url,
            issuer=issuer if jwks_url is None else None,
            algorithms=algorithms,
            refresh=refresh,
            timeout=timeout,
        )
        fetcher.registry_key = key
        _FETCHERS[key] = fetcher
    fetcher.refs += 1
    return fetcher


def release(fetcher: KeySetFetcher) -> None:
    """One holder fewer; the last one stops the fetcher."""
    fetcher.refs -= 1
    if fetcher.refs > 0:
        return
    key = fetcher.registry_key
    if key is not None and _FETCHERS.get(key) is fetcher:
        del _FETCHERS[key]
    fetcher.stop()
