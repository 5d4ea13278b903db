"""`rate_limit` with `policy: redis`: the buckets live in Redis, shared by several gateways.

    - rate_limit:
        key: header:x-api-key
        limits: [{rate: 100, per: 1m}]
        policy: redis
        redis: {url: "redis://10.0.0.5:6379/0", timeout: 50ms, mode: exact}
        fail_open: true

Same keys, limits, answers and headers as the local limiter (fastgw.policy.ratelimit); only
where the buckets are differs. Every limit is a GCRA bucket whose theoretical arrival time
(TAT) is one Redis string per (entry, limit, key), named
`fastgw:rl:{<sha1 of entry and key>}:<limit index>` (bounded length; the hash tag keeps an
entry's keys in one cluster slot). One Lua script reads Redis's own clock (`TIME`, so the
gateways' clocks never matter), checks every limit, and only if all of them pass moves their
TATs; a rejected request consumes nothing. Each key expires when its bucket would be full
again, so idle clients leave nothing behind. Times inside the script are microseconds.

Modes:

- `exact` (default): one script call (EVALSHA, EVAL when Redis lost its script cache) per
  request; the calls of one event loop iteration travel together in one pipeline. The count
  is exact across every gateway sharing the Redis.
- `batched`: a gateway takes a lease of up to `batch` tokens per key in one call and admits
  from it locally, without waiting: the leases are `_core.Lease` objects the compiled core
  spends itself (no Python per admitted request); when half a lease is used the core asks
  this policy for the next one, fetched in the background. A lease that runs out before its
  refill returns doubles the next one (up to 16 x `batch`, halving again when tokens lapse
  unused), so a hot key is not starved by its own round trips. A key Redis refused is
  refused locally until its retry-after time. The price is accuracy: tokens leased in one
  window can be spent in the next, so across G gateways up to (lease size) x G requests more
  than the limit can pass per window (over-admission: `batch` x G for a key of moderate
  demand, at most 16 x `batch` x G for a hot one), and tokens leased but not used before the
  lease lapses (after the shortest window of the entry) are lost to everyone (under-admission,
  at most one lease per gateway and key). The RateLimit-Remaining a client sees
  is this gateway's estimate. Use it when a round trip per request costs too much and the
  limit is large compared with `batch`.

Failures: every check is bounded by `redis.timeout`. When Redis is unreachable, slow or
answers an error, the request passes (`fail_open: true`, counted in `failures`) or gets 503
`rate_limit_unavailable`. The policy then backs off (0.1 s doubling to 1.6 s): while it
does, requests are decided at once without touching Redis, and one request probes Redis
when the back-off ends, so limiting resumes within 2 s of Redis coming back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from fastgw._core import Lease, LeaseLimitStep, LeaseStep
from fastgw.errors import redact_text
from fastgw.policy.base import PolicyConfigError, ProvisionContext, Response
from fastgw.policy.compiled import CompileContext, CoreParts
from fastgw.policy.ratelimit_spec import BaseRateLimit, RateLimitConfig

__all__ = ["GCRA_SCRIPT", "RedisRateLimit"]

_log = logging.getLogger("fastgw")

# KEYS: one TAT key per limit. ARGV: want, need, then interval (µs) and burst per limit.
# Takes as many tokens as every limit can give, up to `want`, or nothing when one of them
# cannot give `need`. Replies {allowed, granted, limit reported (1-based), its burst, its
# remaining, reset µs, retry-after µs}: the limit reported is the first that refused, or the
# one with the fewest tokens left (the first of equals).
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local want = tonumber(ARGV[1])
local need = tonumber(ARGV[2])
local tats, intervals, bursts = {}, {}, {}
local grant = want
for i = 1, #KEYS do
  local interval = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored then
    tat = math.max(tonumber(stored), now)
  end
  tats[i], intervals[i], bursts[i] = tat, interval, burst
  -- tokens this bucket holds; the epsilon absorbs rounding of fractional intervals
  local free = math.floor((now + burst * interval - tat) / interval + 1e-6)
  if free < need then
    local retry = tat + need * interval - burst * interval - now
    return {0, 0, i, burst, 0, math.ceil(tat - now), math.ceil(retry)}
  end
  if free < grant then
    grant = free
  end
end
local report, least, reset = 1, -1, 0
for i = 1, #KEYS do
  local new_tat = tats[i] + grant * intervals[i]
  local ttl = math.max(1, math.ceil((new_tat - now) / 1000))
  redis.call('SET', KEYS[i], string.format('%.17g', new_tat), 'PX', ttl)
  local left = math.floor((now + bursts[i] * intervals[i] - new_tat) / intervals[i] + 1e-6)
  if least < 0 or left < least then
    report, least, reset = i, left, new_tat - now
  end
end
return {1, grant, report, bursts[report], least, math.ceil(reset), 0}
"""
_SCRIPT_SHA = hashlib.sha1(GCRA_SCRIPT.encode()).hexdigest()

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 1.6
# Pipelines in flight at once, each on its own connection; calls made meanwhile wait and go
# together in the next one.
_MAX_PIPELINES = 4
# Batched mode: rounds of "lease ran dry, ask again" one request may go through before it
# is decided like a Redis failure (many concurrent requests of one key racing for a lease).
_LEASE_ROUNDS = 3
# A lease grows (doubling) while requests outrun it, up to this many times `batch`.
_MAX_LEASE_GROWTH = 16
_SWEEP_EVERY = 4096


class RedisRateLimit(BaseRateLimit):
    """`rate_limit` with `policy: redis`; see the module docstring."""

    def __init__(self, config: RateLimitConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        settings = config.redis
        try:
            parse_url(settings.url)
        except ValueError as exc:
            raise PolicyConfigError(str(exc), ("redis", "url")) from None
        # The URL as log lines show it: its password (redis://:PASSWORD@host) hidden.
        self._shown_url = redact_text(settings.url)
        table = self.limit_table()
        self._bursts = [burst for _, burst, _, _ in table]
        self._limit_args: list[str] = []
        for interval_ns, burst, _, _ in table:
            self._limit_args += [repr(interval_ns / 1000), str(burst)]
        self._cost = config.cost
        self._timeout = float(settings.timeout)
        self._batched = settings.mode == "batched"
        self._batch = max(settings.batch, config.cost)
        self._lease_life = min(window for _, _, _, window in table)
        self._entry = self.limiter_id.encode() + b"\x00"
        self._headers = config.headers
        self._client: Redis | None = None
        # Batched mode: the core spends these leases' tokens itself (LeaseStep); keys are the
        # bytes the core builds, so both find the same Lease.
        self._leases: dict[bytes, Lease] = {}
        self._lease_inserts = 0
        self._closing: set[asyncio.Task[Any]] = set()
        self._queued: list[tuple[list[Any], asyncio.Future[list[int]]]] = []
        self._flush_scheduled = False
        self._pipelines = 0  # in flight
        self._sending: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.slow_checks = 0
        # Back-off state: 0.0 while Redis answers; else when the next probe may go.
        self._retry_at = 0.0
        self._backoff = 0.0
        self._probing = False

    # --- hooks ------------------------------------------------------------------------

    async def on_request(self, request: Any) -> Response | None:
        key = self._key(request)
        if self._batched:
            self.slow_checks += 1  # the core found no leased token to spend
            return await self._check_batched(request, key.encode("utf-8", "surrogateescape"))
        reply = await self._take(self._redis_keys(key), self._cost, self._cost)
        if reply is None:
            return self._unavailable(request)
        allowed, _, _, burst, remaining, reset_us, retry_us = reply
        if allowed:
            self._remember(request, burst, remaining, _ceil_seconds(reset_us))
            return None
        return self._limited(request, burst, _ceil_seconds(reset_us), _ceil_seconds(retry_us))

    def close(self) -> None:
        for lease in self._leases.values():
            if lease.fetch is not None:
                lease.fetch.cancel()
        self._leases.clear()
        client, self._client = self._client, None
        if client is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop left to close on: the process is ending, the sockets with it
        task = loop.create_task(client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- keys and answers -------------------------------------------------------------

    def _key(self, request: Any) -> str:
        parts = []
        for kind, arg in self.keys:
            value = _field(request, kind, arg)
            parts.append(_field(request, *self.fallback) if value is None else value)
        return "\x00".join(parts)

    def _redis_keys(self, key: str) -> list[str]:
        digest = hashlib.sha1(self._entry + key.encode()).hexdigest()
        return [f"fastgw:rl:{{{digest}}}:{i}" for i in range(len(self._bursts))]

    # PERF: the core writes the RateLimit fields into the response heads (no response hook,
    # no per-field checks): the policy only says what was decided.
    def _remember(self, request: Any, limit: int, remaining: int, reset: int) -> None:
        request.record_rate_limit(True, limit, remaining, reset, 0, self._headers)

    def _limited(self, request: Any, limit: int, reset: int, retry_after: int) -> Response:
        request.record_rate_limit(False, limit, 0, reset, retry_after, self._headers)
        return Response.error(429, "rate_limited", "rate limit exceeded", request.request_id)

    def _unavailable(self, request: Any) -> Response | None:
        if self.config.fail_open:
            return None
        return Response.error(
            503, "rate_limit_unavailable", "the rate limit could not be checked",
            request.request_id,
        )  # fmt: skip

    # --- Redis, bounded and backed off ------------------------------------------------

    def _redis(self) -> Redis:
        # Made on first use, inside the event loop that will use it.
        if self._client is None:
            pool = BlockingConnectionPool.from_url(
                self.config.redis.url,
                max_connections=_MAX_PIPELINES,
                timeout=self._timeout,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                # One attempt: the back-off below decides when to try again.
                retry=Retry(NoBackoff(), 0),
            )
            self._client = Redis(connection_pool=pool)
        return self._client

    async def _take(self, keys: list[str], want: int, need: int) -> list[int] | None:
        """Run the script within the timeout; None when Redis could not answer (or the
        policy is backing off and did not ask)."""
        now = time.monotonic()
        probe = False
        if self._retry_at:
            if now < self._retry_at or self._probing:
                return None
            probe = self._probing = True
        try:
            reply = await asyncio.wait_for(self._script(keys, want, need), self._timeout)
        except Exception as exc:  # whatever Redis did, the store is unavailable now
            self._failed(exc, probe)
            return None
        finally:
            if probe:
                self._probing = False
        if self._retry_at:
            _log.info("rate_limit %s: Redis answers again, limiting resumes", self.limiter_id)
            self._retry_at = 0.0
            self._backoff = 0.0
        return reply

    def _script(self, keys: list[str], want: int, need: int) -> asyncio.Future[list[int]]:
        """Queue one script call; the calls queued in one loop iteration go to Redis as one
        pipeline (PERF: one write, one read and one connection for many requests)."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[list[int]] = loop.create_future()
        self._queued.append(([*keys, want, need, *self._limit_args], reply))
        if not self._flush_scheduled and self._pipelines < _MAX_PIPELINES:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return reply

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queued or self._pipelines >= _MAX_PIPELINES:
            return  # a pipeline that finishes flushes what waits
        calls, self._queued = self._queued, []
        self._pipelines += 1
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[tuple[list[Any], asyncio.Future[list[int]]]]) -> None:
        n_keys = len(self._bursts)
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._pipeline([args for args, _ in calls], n_keys)
        except Exception as exc:  # the callers see it as their own failure
            replies = [exc] * len(calls)
        finally:
            self._pipelines -= 1
            if self._queued and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        for (_, reply), result in zip(calls, replies, strict=True):
            if reply.done():
                continue  # its caller stopped waiting (timeout, client gone)
            if isinstance(result, BaseException):
                reply.set_exception(result)
            else:
                reply.set_result(result)

    async def _pipeline(self, calls: list[list[Any]], n_keys: int) -> list[Any]:
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        for args in calls:
            pipe.evalsha(_SCRIPT_SHA, n_keys, *args)
        replies = await pipe.execute(raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # A restarted or flushed Redis lost the script: EVAL sends it (and caches it).
            pipe = client.pipeline(transaction=False)
            for i in missing:
                pipe.eval(GCRA_SCRIPT, n_keys, *calls[i])
            for i, reply in zip(missing, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        return replies

    def _failed(self, exc: BaseException, probe: bool) -> None:
        self.failures += 1
        if self._retry_at and not probe:
            return  # a check that started before the outage was noticed
        self._backoff = min(_BACKOFF_MAX, self._backoff * 2) if self._backoff else _BACKOFF_FIRST
        self._retry_at = time.monotonic() + self._backoff
        # Neither the URL nor the client's exception text may show the password.
        reason = redact_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        _log.warning(
            "rate_limit %s: Redis at %s unavailable (%s); %s for %.1fs (%d failures)",
            self.limiter_id,
            self._shown_url,
            reason,
            "letting requests through" if self.config.fail_open else "answering 503",
            self._backoff,
            self.failures,
        )

    # --- batched mode -----------------------------------------------------------------

    async def _check_batched(self, request: Any, key: bytes) -> Response | None:
        cost = self._cost
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = Lease(self._batch)
            self._lease_inserts += 1
            if self._lease_inserts % _SWEEP_EVERY == 0:
                self._sweep()
        for _ in range(_LEASE_ROUNDS):
            now = time.monotonic()
            if lease.tokens and now >= lease.expires:
                # Tokens left unused: the lease was larger than this key's demand.
                lease.tokens = 0
                lease.want = max(self._batch, lease.want // 2)
            if lease.tokens >= cost:
                # PERF: the common case: no await, so the core runs it without a Task.
                lease.tokens -= cost
                if lease.tokens * 2 < lease.want and lease.fetch is None and not self._retry_at:
                    self._start_fetch(key, lease)
                self._remember(
                    request,
                    lease.limit,
                    lease.remaining + lease.tokens,
                    math.ceil(max(0.0, lease.reset_at - now)),
                )
                return None
            if now < lease.denied_until:
                return self._limited(
                    request,
                    lease.limit,
                    math.ceil(max(0.0, lease.reset_at - now)),
                    math.ceil(lease.denied_until - now),
                )
            if lease.fetch is None:
                if self._retry_at and (now < self._retry_at or self._probing):
                    break  # backing off: decide now, do not wait on a dead Redis
                self._start_fetch(key, lease)
            assert lease.fetch is not None
            # shield: a client that goes away must not cancel the lease others wait for.
            if not await asyncio.shield(lease.fetch):
                break
            if lease.tokens < cost:
                # The lease ran out before its refill came back: ask for more next time.
                lease.want = min(lease.want * 2, self._batch * _MAX_LEASE_GROWTH)
        return self._unavailable(request)

    def compile_core(self, context: CompileContext) -> CoreParts:
        """Batched mode as the core runs it: leases, keys, cost, fields, and the hooks for
        what it cannot decide alone. Otherwise every request awaits on_request."""
        if not self._batched:
            return super().compile_core(context)
        lease = LeaseStep(
            self._leases,
            context.key_sources(self.keys),
            self.fallback[0],
            self._cost,
            self._headers,
            self.on_request,
            self._refill,
        )
        return CoreParts(steps=(LeaseLimitStep(lease),))

    def _refill(self, key: bytes, lease: Lease) -> None:
        """The core spent half a lease: fetch the next one, unless Redis is backing off."""
        if lease.fetch is None and not self._retry_at:
            self._start_fetch(key, lease)

    def _start_fetch(self, key: bytes, lease: Lease) -> None:
        lease.fetch = asyncio.get_running_loop().create_task(self._fetch(key, lease))

    async def _fetch(self, key: bytes, lease: Lease) -> bool:
        """Take a lease of up to `batch` tokens; False when Redis did not answer."""
        try:
            reply = await self._take(
                self._redis_keys(key.decode("utf-8", "surrogateescape")), lease.want, self._cost
            )
        finally:
            lease.fetch = None
        if reply is None:
            return False
        allowed, granted, _, burst, remaining, reset_us, retry_us = reply
        now = time.monotonic()
        lease.limit = burst
        lease.reset_at = now + reset_us / 1e6
        if allowed:
            lease.tokens += granted
            lease.remaining = remaining
            lease.expires = now + self._lease_life
        else:
            lease.remaining = 0
            lease.denied_until = now + retry_us / 1e6
        return True

    def _sweep(self) -> None:
        """Forget keys with nothing left to remember (bounded memory with many clients)."""
        now = time.monotonic()
        idle = [
            key
            for key, lease in self._leases.items()
            if lease.fetch is None
            and (not lease.tokens or now >= lease.expires)
            and now >= lease.denied_until
        ]
        for key in idle:
            del self._leases[key]


def _field(request: Any, kind: str, arg: str) -> str | None:
    """One key source of the request, or None when the request does not have it."""
    if kind == "client_ip":
        return request.client_ip
    if kind == "route":
        return request.route or ""
    if kind == "header":
        return request.headers.get(arg)
    if kind == "param":
        return request.params.get(arg)
    if kind == "consumer":
        return None if request.consumer is None else str(request.consumer)
    claims = request.claims
    value = claims.get(arg) if isinstance(claims, dict) else None
    return None if value is None else str(value)


def _ceil_seconds(microseconds: int) -> int:
    return max(0, -(-microseconds // 1_000_000))
