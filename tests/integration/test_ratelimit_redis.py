"""`rate_limit` with `policy: redis` against a real redis-server on a free loopback port:
limits shared by two gateway processes, answers and headers, Redis dying, hanging and coming
back, batched leases, and the GCRA script itself.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvloop

from fastgw.policy.builtins import BUILTIN_POLICIES

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server not found: Redis rate-limit tests need it (apt-get install redis-server)",
)

# "rate_limit" once the built-in is registered; the class reference works either way.
POLICY = (
    "rate_limit"
    if any(policy.name == "rate_limit" for policy in BUILTIN_POLICIES)
    else "fastgw.policy.ratelimit:RateLimit"
)
# The outage tests use the default timeout; the others a long one, so that a slow moment of
# a loaded machine cannot turn into a fail-open pass that spoils their counts.
TIMEOUT = 0.05
PATIENT = "1s"
# What a check may add on a dead or hung Redis beyond its timeout (loaded 2-core machine).
MARGIN = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """redis-server on 127.0.0.1:port, without persistence; stop, restart, freeze."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def freeze(self) -> None:
        """The process stays, its socket accepts, nothing answers: a hung Redis."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def command(self, *args: str) -> Any:
        """One RESP command on a fresh connection: enough for the tests' own checks."""
        request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(request.encode())
            reader = sock.makefile("rb")
            return _read_reply(reader)

    def script_calls(self) -> int:
        """EVAL + EVALSHA calls served so far."""
        calls = 0
        for line in self.command("INFO", "commandstats").splitlines():
            if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
                calls += int(line.split("calls=")[1].split(",")[0])
        return calls


def _read_reply(reader: Any) -> Any:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(rest))]
    raise AssertionError(f"unexpected reply {line!r}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def limited_route(redis_url: str, **limit: Any) -> dict[str, Any]:
    """A route /limited/{id} behind one rate_limit entry stored in Redis."""
    redis = {"url": redis_url, "timeout": PATIENT, **limit.pop("redis", {})}
    entry = {"limits": [{"rate": 10, "per": "60s"}], "policy": "redis", "redis": redis, **limit}
    return {
        "name": "limited",
        "match": {"paths": ["/limited/{id}"]},
        "upstream": "echo",
        "policies": [{POLICY: entry}],
    }


def start_gateway(gateway: Any, upstream: Any, redis_url: str, **limit: Any) -> Any:
    return gateway(routes=[limited_route(redis_url, **limit)], upstreams={"echo": upstream()})


def timed(gw: Any, path: str = "/limited/1", **kwargs: Any) -> tuple[Any, float]:
    start = time.monotonic()
    response = gw.request("GET", path, **kwargs)
    return response, time.monotonic() - start


# --------------------------------------------------------------------------------------
# One limit across gateways
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("clients", [1, 16], ids=["sequential", "concurrent"])
def test_two_gateways_share_one_limit(
    gateway: Any, upstream: Any, redis_server: RedisServer, clients: int
) -> None:
    """10 per minute with burst 10 on the route: exactly 10 of 40 requests pass, whichever
    of the two gateways they reach (concurrent ones share pipelines)."""
    config = {"key": "route", "limits": [{"rate": 10, "per": "60s", "burst": 10}]}
    gateways = [start_gateway(gateway, upstream, redis_server.url, **config) for _ in range(2)]

    def status(i: int) -> int:
        return gateways[i % 2].request("GET", f"/limited/{i}").status

    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(status, range(40)))
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 30, statuses
    if clients == 1:
        assert statuses[:10] == [200] * 10, statuses
    assert "Redis at" not in gateways[0].stderr + gateways[1].stderr


# --------------------------------------------------------------------------------------
# Answers and headers
# --------------------------------------------------------------------------------------

DRAFT = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
LEGACY = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        ("draft", DRAFT, LEGACY),
        ("legacy", LEGACY, DRAFT),
        ("both", DRAFT + LEGACY, ()),
        ("none", (), DRAFT + LEGACY),
    ],
    ids=["draft", "legacy", "both", "none"],
)
def test_headers_and_429(
    gateway: Any,
    upstream: Any,
    redis_server: RedisServer,
    mode: str,
    present: tuple[str, ...],
    absent: tuple[str, ...],
) -> None:
    """3 per minute: remaining counts down on the upstream's answers, the 4th is a 429 in
    fastgw's error format with Retry-After; the limit reported is the tighter one."""
    gw = start_gateway(
        gateway,
        upstream,
        redis_server.url,
        limits=[{"rate": 1000, "per": "1s"}, {"rate": 3, "per": "60s"}],
        headers=mode,
    )
    for remaining, reset in ((2, 20), (1, 40), (0, 60)):
        response = gw.request("GET", "/limited/1")
        assert response.status == 200, response
        expected = {"limit": "3", "remaining": str(remaining), "reset": str(reset)}
        for name in present:
            assert response.header(name) == expected[name.rsplit("-", 1)[1]], response.headers
        for name in absent:
            assert response.header(name) is None, response.headers
        assert response.header("retry-after") is None
    limited = gw.request("GET", "/limited/1", headers=[("X-Request-ID", "req-429")])
    assert limited.status == 429
    assert limited.error() == {
        "status": 429,
        "code": "rate_limited",
        "message": "rate limit exceeded",
        "request_id": "req-429",
    }
    assert limited.header("retry-after") == "20"
    for name in present:
        value = limited.header(name)
        assert value == {"limit": "3", "remaining": "0", "reset": "60"}[name.rsplit("-", 1)[1]]
    for name in absent:
        assert limited.header(name) is None


def test_keys_and_fallback(gateway: Any, upstream: Any, redis_server: RedisServer) -> None:
    """One bucket per API key; without the header the client's address is the key."""
    gw = start_gateway(
        gateway,
        upstream,
        redis_server.url,
        key=["header:x-api-key", "param:id"],
        limits=[{"rate": 1, "per": "60s"}],
    )

    def status(path: str, api_key: str | None) -> int:
        headers = [("X-Api-Key", api_key)] if api_key is not None else []
        return gw.request("GET", path, headers=headers).status

    sequence = [
        ("/limited/1", "alpha", 200),
        ("/limited/1", "alpha", 429),
        ("/limited/2", "alpha", 200),  # another capture: another bucket
        ("/limited/1", "beta", 200),
        ("/limited/1", None, 200),  # the fallback key: client_ip
        ("/limited/1", None, 429),
    ]
    assert [status(path, key) for path, key, _ in sequence] == [s for *_, s in sequence]


def test_keys_expire_when_full_again(
    gateway: Any, upstream: Any, redis_server: RedisServer
) -> None:
    """A bucket's key lives until the bucket would be full: idle clients leave nothing."""
    gw = start_gateway(gateway, upstream, redis_server.url, limits=[{"rate": 2, "per": "4s"}])
    assert gw.request("GET", "/limited/1").status == 200
    keys = redis_server.command("KEYS", "fastgw:rl:*")
    assert len(keys) == 1 and len(keys[0]) < 80, keys
    ttl_ms = redis_server.command("PTTL", keys[0])
    assert 1500 < ttl_ms <= 2000, ttl_ms


# --------------------------------------------------------------------------------------
# Redis down, hung, back
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail_open", "outage"),
    [(True, "stopped"), (True, "hung"), (False, "stopped"), (False, "hung")],
    ids=["fail-open-stopped", "fail-open-hung", "fail-closed-stopped", "fail-closed-hung"],
)
def test_redis_outage_mid_load(
    gateway: Any, upstream: Any, redis_server: RedisServer, fail_open: bool, outage: str
) -> None:
    """Requests keep flowing (fail open) or get 503 (fail closed), none waits much longer
    than the timeout, and the gateway logs the outage once per back-off period."""
    gw = start_gateway(
        gateway, upstream, redis_server.url, limits=[{"rate": 1000, "per": "1s"}],
        fail_open=fail_open, redis={"timeout": f"{TIMEOUT * 1000:g}ms"},
    )  # fmt: skip
    for _ in range(5):
        response, _ = timed(gw)
        assert response.status == 200 and response.header("ratelimit-limit") == "1000"
    if outage == "stopped":
        redis_server.stop()
    else:
        redis_server.freeze()
    slowest = 0.0
    started = time.monotonic()
    for _ in range(40):
        response, elapsed = timed(gw)
        slowest = max(slowest, elapsed)
        if fail_open:
            assert response.status == 200, response
            assert response.header("ratelimit-limit") is None
        else:
            assert response.status == 503, response
            assert response.error()["code"] == "rate_limit_unavailable"
        time.sleep(0.01)
    spent = time.monotonic() - started
    assert slowest < TIMEOUT + MARGIN, slowest
    warnings = gw.stderr.count("Redis at")
    # back-off periods 0.1, 0.2, 0.4, 0.8, 1.6 s: a few in `spent` seconds, not 40
    assert 1 <= warnings <= 2 + spent / 0.1, gw.stderr
    if outage == "hung":
        redis_server.thaw()


def test_limiting_resumes_after_redis_restart(
    gateway: Any, upstream: Any, redis_server: RedisServer
) -> None:
    """Redis gone long enough for the longest back-off, then back (empty): within 2 s the
    gateway limits again."""
    gw = start_gateway(
        gateway, upstream, redis_server.url, key="route", limits=[{"rate": 1, "per": "60s"}],
        redis={"timeout": f"{TIMEOUT * 1000:g}ms"},
    )  # fmt: skip
    assert gw.request("GET", "/limited/1").status == 200
    assert gw.request("GET", "/limited/1").status == 429
    redis_server.stop()
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert gw.request("GET", "/limited/1").status == 200  # fail open
        time.sleep(0.05)
    redis_server.start()
    back = time.monotonic()
    while True:
        response = gw.request("GET", "/limited/1")
        if response.header("ratelimit-limit") is not None:
            break
        assert time.monotonic() - back < 2.0, "limiting did not resume within 2 s"
        time.sleep(0.02)
    assert time.monotonic() - back < 2.0
    assert gw.request("GET", "/limited/1").status == 429


# --------------------------------------------------------------------------------------
# Batched leases
# --------------------------------------------------------------------------------------


def test_batched_mode_within_documented_bound(
    gateway: Any, upstream: Any, redis_server: RedisServer
) -> None:
    """20 per minute, leases of 5, two gateways: admitted within 20 +- 5 x 2, and Redis is
    asked once per lease, not once per request."""
    batch, gateways, burst = 5, 2, 20
    config = {
        "key": "route",
        "limits": [{"rate": burst, "per": "60s"}],
        "redis": {"mode": "batched", "batch": batch},
    }
    first = start_gateway(gateway, upstream, redis_server.url, **config)
    second = start_gateway(gateway, upstream, redis_server.url, **config)
    before = redis_server.script_calls()
    statuses = [(first, second)[i % 2].request("GET", f"/limited/{i}").status for i in range(60)]
    admitted = statuses.count(200)
    assert burst - batch * gateways <= admitted <= burst + batch * gateways, statuses
    assert statuses.count(429) == 60 - admitted
    calls = redis_server.script_calls() - before
    assert calls <= burst // batch * 2 + 2 * gateways, calls
    limited = next(
        r for r in (first.request("GET", "/limited/x") for _ in range(3)) if r.status == 429
    )
    assert limited.error()["code"] == "rate_limited"
    assert int(limited.header("retry-after")) >= 1
    assert "Redis at" not in first.stderr + second.stderr


def test_batched_mode_admits_from_lease_while_redis_is_down(
    gateway: Any, upstream: Any, redis_server: RedisServer
) -> None:
    """Tokens already leased are spent locally; past them the policy fails closed here."""
    gw = start_gateway(
        gateway,
        upstream,
        redis_server.url,
        key="route",
        limits=[{"rate": 100, "per": "60s"}],
        redis={"mode": "batched", "batch": 10},
        fail_open=False,
    )
    assert gw.request("GET", "/limited/1").status == 200  # takes a lease of 10
    time.sleep(0.2)  # let a background refill (if any) settle
    redis_server.stop()
    statuses = [timed(gw)[0].status for _ in range(30)]
    assert statuses == [200] * 9 + [503] * 21, statuses


# --------------------------------------------------------------------------------------
# The GCRA script on its own
# --------------------------------------------------------------------------------------


def run(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# (interval µs, burst) per limit, then the (want, need) calls in order and their replies:
# [allowed, granted, limit reported, its burst, its remaining]
SCRIPT_CASES = [
    pytest.param(
        [(1_000_000, 2)],
        [((1, 1), [1, 1, 1, 2, 1]), ((1, 1), [1, 1, 1, 2, 0]), ((1, 1), [0, 0, 1, 2, 0])],
        id="burst-then-refuse",
    ),
    pytest.param(
        [(1_000_000, 5), (60_000_000, 2)],
        [((1, 1), [1, 1, 2, 2, 1]), ((1, 1), [1, 1, 2, 2, 0]), ((1, 1), [0, 0, 2, 2, 0])],
        id="tighter-limit-reported",
    ),
    pytest.param(
        [(1_000_000, 3), (1_000_000, 3)],
        [((1, 1), [1, 1, 1, 3, 2])],
        id="tie-reports-first",
    ),
    pytest.param(
        [(60_000_000, 3), (60_000_000, 1)],
        [((1, 1), [1, 1, 2, 1, 0]), ((1, 1), [0, 0, 2, 1, 0]), ((1, 1), [0, 0, 2, 1, 0])],
        id="refused-takes-nothing",
    ),
    pytest.param(
        [(1_000_000, 5)],
        [((3, 3), [1, 3, 1, 5, 2]), ((3, 3), [0, 0, 1, 5, 0]), ((2, 2), [1, 2, 1, 5, 0])],
        id="cost-3",
    ),
    pytest.param(
        [(1_000_000, 10)],
        [((4, 1), [1, 4, 1, 10, 6]), ((4, 1), [1, 4, 1, 10, 2]), ((4, 1), [1, 2, 1, 10, 0])],
        id="lease-takes-what-is-left",
    ),
    pytest.param(
        [(333_333.333, 3)],
        [((1, 1), [1, 1, 1, 3, 2]), ((1, 1), [1, 1, 1, 3, 1]), ((1, 1), [1, 1, 1, 3, 0])],
        id="fractional-interval",
    ),
]


@pytest.mark.parametrize(("limits", "calls"), SCRIPT_CASES)
def test_gcra_script(
    redis_server: RedisServer, limits: list[tuple[float, int]], calls: list[Any]
) -> None:
    from redis.asyncio import Redis

    from fastgw.policy.ratelimit_redis import GCRA_SCRIPT

    keys = [f"test:{i}" for i in range(len(limits))]
    limit_args = [str(part) for interval, burst in limits for part in (interval, burst)]

    async def replay() -> list[list[int]]:
        client = Redis.from_url(redis_server.url)
        try:
            return [
                await client.eval(GCRA_SCRIPT, len(keys), *keys, want, need, *limit_args)
                for (want, need), _ in calls
            ]
        finally:
            await client.aclose()

    replies = run(replay())
    assert [reply[:5] for reply in replies] == [expected for _, expected in calls]
    for reply in replies:
        reset_us, retry_us = reply[5], reply[6]
        assert reset_us >= 0
        assert (retry_us > 0) == (reply[0] == 0)


def test_script_reloaded_after_script_flush(
    gateway: Any, upstream: Any, redis_server: RedisServer
) -> None:
    """Redis forgot the script (restart, SCRIPT FLUSH): EVALSHA's NOSCRIPT falls back to EVAL."""
    gw = start_gateway(gateway, upstream, redis_server.url, limits=[{"rate": 2, "per": "60s"}])
    assert gw.request("GET", "/limited/1").status == 200
    assert redis_server.command("SCRIPT", "FLUSH") == "OK"
    assert gw.request("GET", "/limited/1").header("ratelimit-remaining") == "0"
    assert gw.request("GET", "/limited/1").status == 429
    assert "Redis at" not in gw.stderr


def test_decisions_reach_the_access_log(
    gateway: Any, upstream: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis decisions are counted like the core's: the access log's rate_limit field."""
    import json

    log = tmp_path / "access.log"
    gw = gateway(
        routes=[limited_route(redis_server.url, limits=[{"rate": 2, "per": "60s"}])],
        upstreams={"echo": upstream()},
        access_log={"path": str(log), "flush_interval": "50ms", "fields": ["rate_limit"]},
    )
    assert [gw.request("GET", "/limited/1").status for _ in range(3)] == [200, 200, 429]
    deadline = time.monotonic() + 5
    while not log.exists() or len(log.read_text().splitlines()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [json.loads(line)["rate_limit"] for line in log.read_text().splitlines()] == [
        "allowed",
        "allowed",
        "limited",
    ]


def test_monthly_quota_per_api_key(gateway: Any, upstream: Any, redis_server: RedisServer) -> None:
    """A quota is a long window: 5 per 30 days per API key, kept in Redis."""
    gw = start_gateway(
        gateway,
        upstream,
        redis_server.url,
        key="header:x-api-key",
        limits=[{"rate": 5, "per": "30d"}],
    )
    alpha = [("X-Api-Key", "alpha")]
    assert [gw.request("GET", "/limited/1", headers=alpha).status for _ in range(5)] == [200] * 5
    refused = gw.request("GET", "/limited/1", headers=alpha)
    assert refused.status == 429
    assert int(refused.header("retry-after")) == 6 * 86400  # one token per 6 days
    assert gw.request("GET", "/limited/1", headers=[("X-Api-Key", "beta")]).status == 200


def test_consumer_key_from_an_authentication_policy(
    gateway: Any, upstream: Any, redis_server: RedisServer
) -> None:
    route = limited_route(redis_server.url, key="consumer", limits=[{"rate": 1, "per": "60s"}])
    auth = {"keys": {"k1": {"sub": "alice"}, "k2": {"sub": "alice"}, "k3": {"sub": "bob"}}}
    route["policies"] = [{"tests.policies_for_tests:ApiKeyAuth": auth}, *route["policies"]]
    gw = gateway(routes=[route], upstreams={"echo": upstream()})

    def status(key: str) -> int:
        return gw.request("GET", "/limited/1", headers=[("X-Api-Key", key)]).status

    assert [status("k1"), status("k2"), status("k3")] == [200, 429, 200]


def test_batched_leases_grow_under_a_hot_key(
    gateway: Any, upstream: Any, redis_server: RedisServer
) -> None:
    """Many clients on one key with tiny leases: the leases grow instead of requests being
    answered as if Redis were down (fail_open false makes any such answer a 503)."""
    import threading

    gw = start_gateway(
        gateway,
        upstream,
        redis_server.url,
        key="route",
        limits=[{"rate": 1_000_000, "per": "1s"}],
        redis={"mode": "batched", "batch": 2},
        fail_open=False,
    )
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with gw.connect() as conn:
            got = [conn.request("GET", "/limited/1").status for _ in range(40)]
        with lock:
            statuses.extend(got)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 640
    # Far fewer script calls than requests: the leases grew past 2 tokens.
    assert redis_server.script_calls() < 640 // 4


def test_batched_tokens_are_spent_in_the_core(upstream: Any, redis_server: RedisServer) -> None:
    """With a lease in hand the core admits by itself: the policy's Python check runs for
    the first request and the refills' stragglers, not once per request."""
    import asyncio

    import uvloop

    from fastgw import Gateway

    up = upstream()
    config = {
        "listen": "127.0.0.1:0",
        "upstreams": {"echo": {"targets": [{"url": up.url}]}},
        "routes": [
            limited_route(
                redis_server.url,
                key="route",
                redis={"mode": "batched", "batch": 50},
                limits=[{"rate": 100_000, "per": "1s"}],
            )
        ],
    }

    async def main() -> tuple[list[int], int, int]:
        gw = Gateway(config)
        await gw.start()
        try:
            host, port = gw.addresses[0]

            def send() -> list[int]:
                import socket as _socket

                statuses = []
                with _socket.create_connection((host, port), timeout=5) as sock:
                    stream = sock.makefile("rb")
                    for _ in range(200):
                        sock.sendall(b"GET /limited/1 HTTP/1.1\r\nHost: t\r\n\r\n")
                        status = int(stream.readline().split()[1])
                        length = 0
                        while (line := stream.readline()) != b"\r\n":
                            if line.lower().startswith(b"content-length:"):
                                length = int(line.split(b":")[1])
                        stream.read(length)
                        statuses.append(status)
                return statuses

            statuses = await asyncio.to_thread(send)
            policy = gw.plan.chains[0].policies[0].policy
            return statuses, policy.slow_checks, redis_server.script_calls()
        finally:
            await gw.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        statuses, slow, calls = runner.run(main())
    assert statuses == [200] * 200
    assert slow <= 10, slow  # not 200
    assert calls <= 10, calls
