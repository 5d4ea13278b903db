"""The `rate_limit` policy: GCRA token buckets per key, checked in the compiled core.

    policies:
      - rate_limit:
          key: client_ip                 # or route | header:NAME | param:NAME, or a list
          limits: [{rate: 10, per: 1s, burst: 20}, {rate: 1000, per: 1h}]
          policy: local                  # local (default) | redis

Each limit is a generic cell rate algorithm bucket: `rate` requests per `per`, up to `burst`
at once (default: `rate`). A request passes when every limit of the entry lets it; the
strictest decides, and a rejected request consumes nothing. With `policy: local` the buckets
live in a table of the core shared by all workers (compare-and-swap on one 64-bit word per
key); `policy: redis` keeps them in Redis for several gateways (fastgw.policy.ratelimit_redis).
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from fastgw import _core
from fastgw.config.schema import Duration
from fastgw.policy.base import Policy, PolicyConfig, PolicyConfigError, ProvisionContext
from fastgw.policy.compiled import CompileContext, CoreParts
from fastgw.policy.ratelimit_spec import (
    KEY_KINDS,
    BaseRateLimit,
    LimitSpec,
    RateLimitConfig,
    RedisSettings,
    parse_key,
)

__all__ = [
    "KEY_KINDS",
    "ConcurrencyLimit",
    "ConcurrencyLimitConfig",
    "LimitSpec",
    "RateLimit",
    "RateLimitConfig",
    "RedisSettings",
    "parse_key",
]


class RateLimit(BaseRateLimit):
    """Rate limiting by key; see the module docstring. The class a config names: with
    `policy: redis` it provisions a fastgw.policy.ratelimit_redis.RedisRateLimit instead."""

    name = "rate_limit"
    Config = RateLimitConfig

    def __new__(cls, config: RateLimitConfig, context: ProvisionContext) -> BaseRateLimit:
        if cls is RateLimit and config.policy == "redis":
            try:
                from fastgw.policy.ratelimit_redis import RedisRateLimit
            except ImportError as exc:
                raise PolicyConfigError(
                    f"policy: redis is not available here ({exc})", ("policy",)
                ) from None
            # Not a subclass of this class: built whole here, Python does not init it again.
            return RedisRateLimit(config, context)
        return super().__new__(cls)

    def compile_core(self, context: CompileContext) -> CoreParts:
        config = self.config
        limiter = _core.RateLimiter(
            self.limiter_id,
            context.key_sources(self.keys),
            self.fallback[0],
            [(interval, burst) for interval, burst, _rate, _per in self.limit_table()],
            config.cost,
            config.headers,
            None,
            round((config.delay or 0.0) * 1e9),
        )
        return CoreParts(steps=(_core.RateLimitStep(limiter),))


class ConcurrencyLimitConfig(PolicyConfig, kw_only=True):
    """At most `max` requests in flight per key in each worker process."""

    max: Annotated[int, Meta(ge=1, le=1_000_000)]
    key: str | Annotated[tuple[str, ...], Meta(min_length=1)] = "route"
    fallback: str = "route"
    status: Literal[503, 429] = 503
    # Requests beyond `max` wait for a place, at most `queue` of them per key and each at
    # most `queue_timeout`; 0: refuse at once.
    queue: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    queue_timeout: Duration = 1.0


class ConcurrencyLimit(Policy):
    """Limit the requests in flight (their upstream exchange included) per key."""

    name = "concurrency_limit"
    Config = ConcurrencyLimitConfig

    def __init__(self, config: ConcurrencyLimitConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        single = isinstance(config.key, str)
        keys = (config.key,) if single else config.key
        self.keys = tuple(
            parse_key(text, context.route_params, ("key",) if single else ("key", i))
            for i, text in enumerate(keys)
        )
        self.fallback = parse_key(config.fallback, context.route_params, ("fallback",))
        if self.fallback[0] not in ("client_ip", "route"):
            raise PolicyConfigError(
                "the fallback key must always be there: client_ip or route", ("fallback",)
            )

    def compile_core(self, context: CompileContext) -> CoreParts:
        config = self.config
        limiter = _core.ConcurrencyLimiter(
            context.key_sources(self.keys),
            self.fallback[0],
            config.max,
            config.queue,
            float(config.queue_timeout),
            config.status,
        )
        return CoreParts(steps=(_core.ConcurrencyLimitStep(limiter),))
