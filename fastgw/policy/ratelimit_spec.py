"""What a `rate_limit` entry says, checked: its Config, its keys and its limits as token
intervals. Shared by the local policy (fastgw.policy.ratelimit) and the Redis one
(fastgw.policy.ratelimit_redis), which both build on `BaseRateLimit`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from msgspec import Meta

from fastgw.config.schema import Duration
from fastgw.policy.base import (
    Policy,
    PolicyConfig,
    PolicyConfigError,
    ProvisionContext,
    check_header_name,
)

__all__ = [
    "KEY_KINDS",
    "BaseRateLimit",
    "LimitSpec",
    "RateLimitConfig",
    "RedisSettings",
    "parse_key",
]

# Key sources: "consumer" and "claim:NAME" are what an authentication policy earlier in the
# chain put in request.consumer and request.claims (absent until one does: the fallback).
KEY_KINDS = ("client_ip", "route", "header", "param", "consumer", "claim")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LimitSpec(PolicyConfig, kw_only=True):
    """`rate` requests per `per`, at most `burst` at once (default: `rate`)."""

    rate: Annotated[int, Meta(ge=1, le=1_000_000_000)]
    per: Duration = 1.0
    burst: Annotated[int, Meta(ge=1, le=1_000_000_000)] | None = None


class RedisSettings(PolicyConfig, kw_only=True):
    """Where the shared buckets of `policy: redis` live, and how long a check may wait."""

    url: str = "redis://127.0.0.1:6379/0"
    timeout: Duration = 0.05
    # exact: one round trip per request; batched: leases of `batch` tokens checked locally.
    mode: Literal["exact", "batched"] = "exact"
    batch: Annotated[int, Meta(ge=1, le=100_000)] = 20


class RateLimitConfig(PolicyConfig, kw_only=True):
    key: str | Annotated[tuple[str, ...], Meta(min_length=1)] = "client_ip"
    # Used when a request lacks a key field (no such header, or the pattern has no such
    # parameter).
    fallback: str = "client_ip"
    limits: Annotated[tuple[LimitSpec, ...], Meta(min_length=1, max_length=8)]
    cost: Annotated[int, Meta(ge=1, le=1_000_000)] = 1
    policy: Literal["local", "redis"] = "local"
    redis: RedisSettings = RedisSettings()
    # Redis unreachable or slow: let the request through (true) or answer 503 (false).
    fail_open: bool = True
    # draft: RateLimit-Limit/-Remaining/-Reset; legacy: X-RateLimit-*; both; none.
    headers: Literal["draft", "legacy", "both", "none"] = "draft"
    # A request over the burst waits up to this long for its token instead of a 429
    # (nginx's limit_req delay); none: refuse at once.
    delay: Duration | None = None


def parse_key(text: str, params: tuple[str, ...], at: tuple[Any, ...]) -> tuple[str, str]:
    """ "header:X-Api-Key" -> ("header", "x-api-key"); raise PolicyConfigError if unknown."""
    kind, _, arg = text.partition(":")
    if kind not in KEY_KINDS:
        raise PolicyConfigError(
            f"unknown key {text!r}",
            at,
            expected="client_ip, route, consumer, header:NAME, param:NAME or claim:NAME",
            got=repr(text),
        )
    if kind in ("client_ip", "route", "consumer"):
        if arg:
            raise PolicyConfigError(f"key {kind!r} takes no argument, got {text!r}", at)
        return kind, ""
    if not arg:
        raise PolicyConfigError(f"key {kind!r} needs a name: '{kind}:NAME'", at)
    if kind == "claim":
        return kind, arg
    if kind == "header":
        try:
            return kind, check_header_name(arg)
        except ValueError as exc:
            raise PolicyConfigError(str(exc), at) from None
    if not _PARAM.match(arg):
        raise PolicyConfigError(f"invalid parameter name {arg!r}", at)
    return kind, arg


class BaseRateLimit(Policy):
    """A provisioned `rate_limit` entry, whichever store keeps its buckets."""

    name = "rate_limit"
    Config = RateLimitConfig

    def __init__(self, config: RateLimitConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        keys = (config.key,) if isinstance(config.key, str) else config.key
        self.keys = tuple(
            parse_key(
                text, context.route_params, ("key",) if isinstance(config.key, str) else ("key", i)
            )
            for i, text in enumerate(keys)
        )
        self.fallback = parse_key(config.fallback, context.route_params, ("fallback",))
        if self.fallback[0] not in ("client_ip", "route"):
            raise PolicyConfigError(
                "the fallback key must always be there: client_ip or route", ("fallback",)
            )
        for i, limit in enumerate(config.limits):
            burst = limit.burst if limit.burst is not None else limit.rate
            if limit.per * 1e9 / limit.rate < 1 or burst < config.cost:
                raise PolicyConfigError(
                    f"limit {limit.rate}/{limit.per:g}s with burst {burst} cannot admit a "
                    f"request of cost {config.cost}"
                    if burst < config.cost
                    else f"rate {limit.rate} per {limit.per:g}s is beyond one per nanosecond",
                    ("limits", i),
                )
        if config.delay is not None and config.policy == "redis":
            raise PolicyConfigError("delay works with policy: local only", ("delay",))
        # One identity per entry location: the same config in every worker (and gateway)
        # names the same buckets; a moved entry starts with full buckets.
        self.limiter_id = f"{context.route_name or '*'}|{context.path}"

    def limit_table(self) -> list[tuple[int, int, int, float]]:
        """Per limit: (ns per token, burst, rate, window seconds)."""
        rows = []
        for limit in self.config.limits:
            burst = limit.burst if limit.burst is not None else limit.rate
            rows.append((round(limit.per * 1e9 / limit.rate), burst, limit.rate, float(limit.per)))
        return rows
