"""The `basic_auth` policy: HTTP Basic authentication (RFC 7617) against consumers'
bcrypt or argon2 password hashes.

    consumers:
      - name: alice
        credentials:
          - basic_auth: {username: alice, password_hash: "$2b$12$..."}   # or $argon2id$...
    routes:
      - ...
        policies:
          - basic_auth: {realm: orders, hide_credentials: true, cache_ttl: 5m}

A password hash is slow on purpose (bcrypt at cost 12 is a quarter of a second or more), so:

- a successful verification is remembered in a bounded cache: a valid client pays one
  verification, not one per request. The core keeps the exact Authorization values it
  accepted (a `CachedAuthStep`, in this process's memory only: never written, logged or
  shown) and answers a repeat in C; on a miss the hook's own cache is keyed by a keyed
  hash (BLAKE2s with a random key of this policy). A failure is never cached. The cache
  lives with the plan, so a reload (new hashes) starts empty; `cache_ttl` bounds an entry's age too.
- verifications run off the event loop on a small thread pool of this process
  (`VERIFY_THREADS`); bcrypt and argon2 release the GIL while they hash. At most
  `max_pending` verifications of one policy wait or run at once; beyond that a request is
  answered 503 `auth_unavailable` at once (fail closed, and cheap), so a burst of wrong
  passwords costs a bounded amount of CPU and never stalls other connections. Concurrent
  requests with the same uncached credentials share one verification.
- an unknown username still costs a verification of comparable price (against the hash of
  a configured user, the result thrown away), so response times do not tell which
  usernames exist.

`Authorization: Basic <base64(user:password)>` is parsed strictly: invalid base64 or
padding, no colon, or text that is not UTF-8 is 401 `credentials_invalid`; no
Authorization field or another scheme is 401 `credentials_missing`. Every 401 carries
`WWW-Authenticate: Basic realm="...", charset="UTF-8"` (RFC 7617 2.1).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import argon2
import bcrypt
from msgspec import Meta

from fastgw import _core
from fastgw.config.schema import Duration
from fastgw.policy.auth import AuthConfig, AuthPolicy
from fastgw.policy.base import PolicyConfigError, ProvisionContext, Response
from fastgw.policy.compiled import CompileContext, CoreParts, HeaderOp
from fastgw.policy.consumers import Consumer

__all__ = ["VERIFY_THREADS", "BasicAuth", "BasicAuthConfig", "verify_password"]

_log = logging.getLogger("fastgw")

# Hash threads of this process, shared by every basic_auth policy: enough to use a few
# cores, while leaving one to the event loop (a 2-core machine gets one hash thread).
VERIFY_THREADS = max(1, min(4, len(os.sched_getaffinity(0)) - 1))

_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
# RFC 7617 2: the realm is a quoted-string; kept to text that needs no escaping.
_REALM = r'^[^"\\\x00-\x1f\x7f]*$'
# RFC 7235 2.1 token68 as base64 (RFC 4648 4) writes it, padding included: the only form
# RFC 7617 allows for the credentials.
_TOKEN68 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

_argon2_hasher = argon2.PasswordHasher()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _hash_executor() -> ThreadPoolExecutor:
    """The process's hash threads, made on first use (after any fork of workers)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="fastgw-passwords")
        return _executor


def _forget_executor() -> None:
    # A forked child has the object but not the threads: it makes its own.
    global _executor, _executor_lock
    _executor = None
    _executor_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_executor)


def verify_password(password_hash: str, password: bytes) -> bool:
    """Whether `password` matches the bcrypt or argon2 `password_hash` (blocking: seconds
    at high costs; run it on a thread, never on the event loop)."""
    if password_hash.startswith("$argon2"):
        try:
            return bool(_argon2_hasher.verify(password_hash, password))
        except argon2.exceptions.VerificationError:
            return False
    if len(password) > 72:
        # bcrypt reads 72 bytes; the library refuses longer passwords rather than ignore
        # the rest, so none can match.
        return False
    return bool(bcrypt.checkpw(password, password_hash.encode("ascii")))


def _hash_problem(password_hash: str) -> str | None:
    """Why a stored hash cannot be checked, or None (found at provisioning, not at login)."""
    if password_hash.startswith("$argon2"):
        try:
            argon2.extract_parameters(password_hash)
        except argon2.exceptions.InvalidHashError:
            return "not a well-formed argon2 hash"
        return None
    if not _BCRYPT_HASH.match(password_hash):
        return "not a well-formed bcrypt hash"
    return None


def _cost_class(password_hash: str) -> str:
    """What decides a hash's verification time: the bcrypt cost or the argon2 parameters."""
    if password_hash.startswith("$argon2"):
        return password_hash.rsplit("$", 2)[0]
    return password_hash[:7]


class BasicAuthConfig(AuthConfig, kw_only=True):
    """The realm of the challenge, hiding the credentials, and the verification cache."""

    realm: Annotated[str, Meta(pattern=_REALM)] = "fastgw"
    # Remove Authorization from the request the upstream receives.
    hide_credentials: bool = False
    # Successful verifications remembered (LRU); 0 turns the cache off.
    cache_size: Annotated[int, Meta(ge=0)] = 10_000
    # How long one is trusted; none: until evicted or the config is reloaded.
    cache_ttl: Duration | None = None
    # Verifications that may wait or run at once; more are answered 503 auth_unavailable.
    max_pending: Annotated[int, Meta(ge=1)] = 64


class BasicAuth(AuthPolicy):
    """HTTP Basic authentication (see the module docstring)."""

    name = "basic_auth"
    Config = BasicAuthConfig

    def __init__(self, config: BasicAuthConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        self.challenge = f'Basic realm="{config.realm}", charset="UTF-8"'
        self._users: dict[str, tuple[str, Consumer]] = dict(self.consumers.basic)
        for username, (password_hash, consumer) in self._users.items():
            problem = _hash_problem(password_hash)
            if problem is not None:
                # The consumer is named; the hash is not shown.
                raise PolicyConfigError(
                    f"the password_hash of basic_auth user {username!r} (consumer "
                    f"{consumer.name!r}) is {problem}",
                    (),
                    expected="a hash made by bcrypt or argon2 (argon2-cffi PasswordHasher)",
                )
        # An unknown username is checked against the most common kind of stored hash.
        classes = Counter(_cost_class(h) for h, _ in self._users.values())
        self._decoy: str | None = None
        if classes:
            common = classes.most_common(1)[0][0]
            self._decoy = next(h for h, _ in self._users.values() if _cost_class(h) == common)
        self._cache: OrderedDict[bytes, tuple[Consumer, float]] = OrderedDict()
        self._cache_size = config.cache_size
        self._ttl = config.cache_ttl
        # Cache keys are a MAC with a random key: they mean nothing outside this process.
        self._keyed_hash = hashlib.blake2s(key=secrets.token_bytes(32))
        self._pending = 0
        self._in_flight: dict[bytes, asyncio.Future[bool]] = {}
        self._fast: Any = None  # the core's cache of accepted credentials (compile_core)
        self.verifications = 0  # hash verifications started (tests, diagnostics)
        self.overloaded = 0  # requests answered 503 because max_pending were busy

    def __repr__(self) -> str:
        return f"BasicAuth(realm={self.config.realm!r}, {len(self._users)} users)"

    def compile_core(self, context: CompileContext) -> CoreParts:
        # With a cache, a credential accepted before is accepted in the core (no Python);
        # any other goes to on_request, which remembers what it accepts.
        steps = context.hook_parts(self).steps
        if self._cache_size:
            self._fast = _core.CachedAuthStep(
                b"authorization", self.name, self.on_request, self._cache_size
            )
            steps = (self._fast,)
        ops = (HeaderOp("remove", b"authorization"),) if self.config.hide_credentials else ()
        return CoreParts(steps=steps, request_ops=ops)

    async def on_request(self, request: Any) -> Response | None:
        if request.authenticated:
            return None
        values = request.headers.getall("authorization")
        if not values:
            return self.reject(request, "credentials_missing")
        if len(values) > 1:
            return self.reject(request, "credentials_invalid")
        value: str = values[0]
        keyed = self._keyed_hash.copy()  # PERF: copying the keyed state skips its setup
        keyed.update(value.encode("latin-1"))
        key = keyed.digest()
        # PERF: a cached success returns here, before any await: no Task, no thread.
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > time.monotonic():
                self._cache.move_to_end(key)
                return self.accept(request, cached[0])
            del self._cache[key]
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return self.reject(request, "credentials_missing")
        credentials = _decode(token.lstrip(" "))
        if credentials is None:
            return self.reject(request, "credentials_invalid")
        username, password = credentials
        user = self._users.get(username)
        if user is None and self._decoy is None:
            return self.reject(request, "credentials_invalid")
        stored = user[0] if user is not None else self._decoy
        assert stored is not None
        future = self._in_flight.get(key)
        if future is None:
            if self._pending >= self.config.max_pending:
                self.overloaded += 1
                return self.reject(request, "auth_unavailable")
            future = self._verify(key, stored, password)
        try:
            matched = await asyncio.shield(future)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Never the password: the user and what went wrong.
            _log.error(
                "basic_auth: verifying the password of %r failed: %s",
                username,
                type(exc).__name__,
            )
            return self.reject(request, "auth_unavailable")
        if user is None or not matched:
            return self.reject(request, "credentials_invalid")
        consumer = user[1]
        if self._cache_size:
            expires = float("inf") if self._ttl is None else time.monotonic() + self._ttl
            self._cache[key] = (consumer, expires)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            if self._fast is not None:
                self._fast.remember(
                    value.encode("latin-1"),
                    consumer,
                    expires=None if self._ttl is None else expires,
                )
        return self.accept(request, consumer)

    def _verify(self, key: bytes, stored: str, password: bytes) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_hash_executor(), verify_password, stored, password)
        self._pending += 1
        self.verifications += 1
        self._in_flight[key] = future

        def done(_: asyncio.Future[bool]) -> None:
            self._pending -= 1
            self._in_flight.pop(key, None)

        future.add_done_callback(done)
        return future

    def close(self) -> None:
        self._cache.clear()
        if self._fast is not None:
            self._fast.forget()


def _decode(token: str) -> tuple[str, bytes] | None:
    """(username, password bytes) from token68 base64 of "user:password", or None."""
    if len(token) % 4 or not _TOKEN68.match(token):
        return None
    try:
        raw = binascii.a2b_base64(token, strict_mode=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = text.partition(":")
    if not colon:
        return None
    return username, password.encode("utf-8")
