"""fastgw scenarios (``--scenario``): config variants of fastgw with one route, the cost
target of each, and the gateway.yaml a scenario runs with.

``chain`` is the route's policy chain as a YAML flow sequence, or None for no ``policies:``
key at all; ``settings`` are extra top-level YAML lines, where "{workdir}" stands for the
peer's temp dir. ``keys`` > 0: every request carries a BENCH_KEY_HEADER cycling through that
many values (the load generators send it; the scenario's baseline gets the same load).
``redis``: the runner starts a redis-server for the scenario, and "{redis_port}" in the chain
stands for its port. ``header``: every request carries that one field (a credential).
plain is the default config: metrics on (their default), no access log.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bench.e2e.processes import LOOPBACK

PLAIN = "plain"
BENCH_KEY_HEADER = "x-bench-key"
BENCH_KEYS = 100_000
# A limit generous enough that no request of a benchmark run is refused (this box serves
# well under 100,000 requests/s), so every check takes the full path and commits.
GENEROUS_LIMIT = "limits: [{rate: 1000000, per: 1s}]"


# bcrypt (cost 4) of "bench-password", and the Basic credentials of bench:bench-password.
BASIC_HASH = "$2b$04$Z1p5.DjK/uKE4j4yrDw4fuBTfr93pF.Q2vWvb1U2rpAkt8Fw5v8p6"
BASIC_HEADER = ("Authorization", "Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ=")


@dataclasses.dataclass(frozen=True)
class Scenario:
    chain: str | None = None
    settings: tuple[str, ...] = ()
    keys: int = 0
    redis: bool = False
    # A field every request of the load carries, (name, value): a credential, say.
    header: tuple[str, str] | None = None


def _redis_limit(mode: str) -> str:
    # fail_open: false, so a Redis failure is a 503 the runner counts, not a free pass. A
    # timeout of 1 s instead of 50 ms: under valgrind (bench/policy_cost.py) the first
    # connection and script load take longer than 50 ms; a healthy Redis answers far sooner.
    return (
        f"[{{rate_limit: {{key: client_ip, {GENEROUS_LIMIT}, policy: redis, "
        f'redis: {{url: "redis://{LOOPBACK}:{{redis_port}}/0", timeout: 1s, {mode}}}, '
        "fail_open: false}}]"
    )


SCENARIOS: dict[str, Scenario] = {
    PLAIN: Scenario(),
    "empty-chain": Scenario("[]"),
    "sync-noop": Scenario('[{"bench.policies:NoopSync": {}}]'),
    "async-noop": Scenario('[{"bench.policies:NoopAsync": {}}]'),
    "async-sleep0": Scenario('[{"bench.policies:SleepZeroAsync": {}}]'),
    "headers": Scenario(
        '[{request_headers: {set: {x-client-ip: "$client_ip", x-request-from: fastgw}, '
        "remove: [x-debug]}}, {response_headers: {set: {x-served-by: fastgw}}}]"
    ),
    # Observability: no metrics and no access log, against metrics plus an access log of the
    # default fields written to a real file (the writer thread's write() calls included).
    "observe-off": Scenario(settings=("metrics: {enabled: false}",)),
    "observe-on": Scenario(
        settings=("metrics: {enabled: true}", 'access_log: {path: "{workdir}/access.log"}')
    ),
    # ip_restriction: the client (127.0.0.1) passes a deny list of 8 networks and is found
    # last in an allow list of 8, v4 and v6 mixed.
    "ip-restriction": Scenario(
        "[{ip_restriction: {"
        'deny: ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "10.9.0.0/16", '
        '"2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:3::/48", "fd00::/8"], '
        'allow: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", '
        '"2001:db8::/32", "fc00::/7", "::1", "127.0.0.0/8"]}}]'
    ),
    # Identity: every request carries BENCH_KEY_HEADER "1", the key of the one consumer;
    # key_auth finds it and acl lets its group pass. plain-key1 is the same load, no policy.
    "plain-key1": Scenario(keys=1),
    "key-auth-acl": Scenario(
        f"[{{key_auth: {{header: {BENCH_KEY_HEADER}}}}}, {{acl: {{allow: [bench]}}}}]",
        settings=(
            'consumers: [{name: bench, groups: [bench], credentials: [{key_auth: {key: "1"}}]}]',
        ),
        keys=1,
    ),
    # basic_auth with a warm cache: every request carries the one consumer's credentials;
    # the first verifies (bcrypt, cost 4), the rest are cache hits. plain-basic is the same
    # load without the policy.
    "plain-basic": Scenario(header=BASIC_HEADER),
    "basic-auth-warm": Scenario(
        "[{basic_auth: {}}]",
        settings=(
            "consumers: [{name: bench, credentials: [{basic_auth: "
            f'{{username: bench, password_hash: "{BASIC_HASH}"}}}}]}}]',
        ),
        header=BASIC_HEADER,
    ),
    # Rate limiting: one hot key (every request comes from the one client IP), then 100,000
    # keys from a request header against plain under the same keyed load; then the Redis
    # modes, one hot key.
    "ratelimit-hot": Scenario(f"[{{rate_limit: {{key: client_ip, {GENEROUS_LIMIT}}}}}]"),
    "plain-keys": Scenario(keys=BENCH_KEYS),
    "ratelimit-keys": Scenario(
        f'[{{rate_limit: {{key: "header:{BENCH_KEY_HEADER}", {GENEROUS_LIMIT}}}}}]',
        keys=BENCH_KEYS,
    ),
    # A lease must outlast a round trip: at 20,000-40,000 requests/s on one key and a few ms
    # per round trip under load, the default batch of 20 runs dry before the next lease
    # arrives and requests that lose three races for it are answered 503; 500 does not.
    "ratelimit-redis-batched": Scenario(_redis_limit("mode: batched, batch: 500"), redis=True),
    "ratelimit-redis-batched-20": Scenario(_redis_limit("mode: batched"), redis=True),
    "ratelimit-redis-exact": Scenario(_redis_limit("mode: exact"), redis=True),
}
# The scenario a cost is measured against, when it is not plain; it runs with the scenario.
COST_BASELINES = {
    "observe-on": "observe-off",
    "ratelimit-keys": "plain-keys",
    "key-auth-acl": "plain-key1",
    "basic-auth-warm": "plain-basic",
}
# Policy cost targets: the largest rps drop against fastgw[plain] (or the scenario's
# COST_BASELINES entry) of the same run, as a share of the baseline's rps. empty-chain has
# none: it must be within the run-to-run noise of plain.
POLICY_TARGETS: dict[str, float | None] = {
    "empty-chain": None,
    "sync-noop": 0.05,
    "async-noop": 0.15,
    "headers": 0.02,
    "observe-on": 0.05,
    "ratelimit-hot": 0.03,
    "ratelimit-keys": 0.03,
    "ratelimit-redis-batched": 0.10,
    "key-auth-acl": 0.03,
    "basic-auth-warm": 0.03,
}
POLICY_TARGET_LABELS = {
    "empty-chain": "empty chain: no measurable cost (within plain's round-to-round noise)",
    "sync-noop": "sync no-op Python hook: rps drop <= 5%",
    "async-noop": "async no-op Python hook: rps drop <= 15%",
    "headers": "compiled header set/remove (request + response): rps drop <= 2%",
    "async-sleep0": "async hook awaiting asyncio.sleep(0): informative, no target",
    "observe-off": "metrics off, no access log: informative (the default minus metrics)",
    "observe-on": "metrics + access log to a file: rps drop vs observe-off <= 5%",
    "ip-restriction": "ip_restriction, 8 deny and 8 allow networks: informative",
    "plain-key1": "no policy, one key header on every request: informative (key-auth-acl's "
    "baseline)",
    "key-auth-acl": "key_auth (header) + acl (group) vs plain-key1: rps drop <= 3%",
    "plain-basic": "no policy, a Basic Authorization field on every request: informative "
    "(basic-auth-warm's baseline)",
    "basic-auth-warm": "basic_auth, verification cached (warm) vs plain-basic: rps drop <= 3%",
    "ratelimit-hot": "local rate_limit, one hot key: rps drop <= 3%",
    "plain-keys": "no policy, 100,000-key header load: informative (ratelimit-keys' baseline)",
    "ratelimit-keys": "local rate_limit, 100,000 keys: rps drop vs plain-keys <= 3%",
    "ratelimit-redis-batched": "rate_limit in Redis, batched leases of 500, one key: "
    "rps drop <= 10%",
    "ratelimit-redis-batched-20": "rate_limit in Redis, batched, default batch (20): informative",
    "ratelimit-redis-exact": "rate_limit in Redis, one round trip per request: informative",
}


def fastgw_config(
    port: int,
    upstream_port: int,
    scenario: str = PLAIN,
    workdir: Path | None = None,
    redis_port: int | None = None,
) -> str:
    """fastgw's gateway.yaml: one listener, one upstream, one catch-all route.

    The scenario (SCENARIOS) sets the route's policy chain and adds top-level settings, which
    may place files in ``workdir`` (required then) or talk to Redis on ``redis_port``
    (required then).
    """
    spec = SCENARIOS[scenario]
    route = '{name: all, match: {paths: ["/{*rest}"]}, upstream: backend'
    if spec.chain is not None:
        chain = spec.chain
        if spec.redis:
            if redis_port is None:
                raise ValueError(f"scenario {scenario} needs Redis: pass a redis_port")
            chain = chain.replace("{redis_port}", str(redis_port))
        route += f", policies: {chain}"
    settings = ""
    for line in spec.settings:
        if "{workdir}" in line:
            if workdir is None:
                raise ValueError(f"scenario {scenario} writes files: pass a workdir")
            line = line.replace("{workdir}", str(workdir))
        settings += line + "\n"
    return (
        f'listen: ["{LOOPBACK}:{port}"]\n'
        "upstreams:\n"
        f'  backend: {{targets: [{{url: "http://{LOOPBACK}:{upstream_port}"}}], '
        "keepalive: {max_idle: 64, idle_timeout: 60s}}\n"
        "routes:\n"
        f"  - {route}}}\n"
        f"{settings}"
    )


def fastgw_peer_name(scenario: str, scenarios: list[str]) -> str:
    """``fastgw`` when only the plain config runs (as before scenarios existed), else
    ``fastgw[SCENARIO]`` for every row."""
    return "fastgw" if scenarios == [PLAIN] else f"fastgw[{scenario}]"


def parse_scenarios(text: str) -> list[str]:
    """``--scenario`` value: known names, duplicates dropped; ``plain`` is added first when
    other scenarios are asked for, since their cost is measured against it, and a scenario's
    own baseline (COST_BASELINES) right before the scenario."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s): {', '.join(unknown) or '(none)'}; known: {', '.join(SCENARIOS)}"
        )
    expanded: list[str] = []
    for name in names:
        expanded += [COST_BASELINES[name], name] if name in COST_BASELINES else [name]
    ordered = list(dict.fromkeys(expanded))
    if PLAIN not in ordered:
        ordered.insert(0, PLAIN)
    return ordered
