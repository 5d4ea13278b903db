"""The compiled GCRA limiter: deterministic decisions with an injected clock, agreement with
a tiny pure-Python reference, eviction of idle keys, and exactness across processes sharing
one table."""

from __future__ import annotations

import math
import multiprocessing
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw import _core
from fastgw.config import parse_config
from fastgw.errors import ConfigError

SECOND = 1_000_000_000


def limiter(*limits: tuple[int, int], cost: int = 1, slots: int = 1 << 12) -> Any:
    """limits: (rate per second, burst)."""
    table = _core.RateTable(slots)
    rows = [(SECOND // rate, burst) for rate, burst in limits]
    return _core.RateLimiter("test", [("client_ip", None)], "client_ip", rows, cost, "draft", table)


class Reference:
    """GCRA as the docs state it, one dict entry per (key, limit)."""

    def __init__(self, limits: list[tuple[int, int]]) -> None:
        self.limits = limits  # (interval ns, burst)
        self.tat: dict[tuple[bytes, int], int] = {}

    def check(self, key: bytes, now: int, cost: int) -> tuple[bool, int, int, int, int]:
        new = []
        for i, (interval, burst) in enumerate(self.limits):
            tat = max(self.tat.get((key, i), 0), now)
            new_tat = tat + cost * interval
            if new_tat - now > burst * interval:
                old = self.tat.get((key, i), 0)
                reset = math.ceil((old - now) / SECOND) if old > now else 0
                retry = max(1, math.ceil((new_tat - now - burst * interval) / SECOND))
                return (False, burst, 0, reset, retry)
            new.append((i, new_tat, (burst * interval - (new_tat - now)) // interval))
        for i, new_tat, _ in new:
            self.tat[(key, i)] = new_tat
        i, new_tat, remaining = min(new, key=lambda row: (row[2], row[0]))
        return (True, self.limits[i][1], remaining, math.ceil((new_tat - now) / SECOND), 0)


def test_burst_then_refill():
    lim = limiter((10, 5))  # one token per 100 ms, 5 at once
    assert [lim.check(b"a", 0)[0] for _ in range(6)] == [True] * 5 + [False]
    assert lim.check(b"a", 0) == (False, 5, 0, 1, 1)
    assert lim.check(b"a", 99_999_999)[0] is False
    assert lim.check(b"a", 100_000_000)[:3] == (True, 5, 0)
    # After a quiet second the bucket is full again.
    assert [lim.check(b"a", 2 * SECOND)[0] for _ in range(6)] == [True] * 5 + [False]


def test_keys_are_independent():
    lim = limiter((1, 1))
    assert lim.check(b"a", 0)[0] and lim.check(b"b", 0)[0]
    assert not lim.check(b"a", 0)[0] and not lim.check(b"b", 0)[0]


def test_rejections_consume_nothing_and_the_strictest_decides():
    lim = limiter((10, 10), (1, 3))  # 10/s and 1/s with burst 3
    allowed = [lim.check(b"k", 0)[0] for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    # The 10/s bucket gave back what the 1/s one refused: after 1 s only the 1/s limit binds.
    assert lim.check(b"k", SECOND)[0] is True
    assert lim.check(b"k", SECOND)[0] is False
    # Remaining reports the limit closest to refusing.
    fresh = lim.check(b"other", 0)
    assert fresh[1:3] == (3, 2)


def test_cost_weights():
    lim = limiter((10, 10), cost=4)
    assert [lim.check(b"w", 0)[0] for _ in range(3)] == [True, True, False]
    assert lim.check(b"w", 0, cost=2)[0] is True
    assert lim.check(b"w", 0, cost=1)[0] is False


@settings(max_examples=300, deadline=None)
@given(
    limits=st.lists(st.tuples(st.integers(1, 50), st.integers(1, 20)), min_size=1, max_size=3),
    ops=st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"c"]), st.integers(0, 300_000_000), st.integers(1, 3)
        ),
        max_size=60,
    ),
)
def test_agrees_with_the_reference(limits: list[tuple[int, int]], ops: list[Any]):
    cost_cap = min(burst for _, burst in limits)
    rows = [(SECOND // rate, burst) for rate, burst in limits]
    table = _core.RateTable(1 << 12)
    lim = _core.RateLimiter("prop", [("client_ip", None)], "client_ip", rows, 1, "draft", table)
    ref = Reference(rows)
    now = 10 * SECOND
    for key, step, cost in ops:
        now += step
        cost = min(cost, cost_cap)
        assert lim.check(key, now, cost) == ref.check(key, now, cost), (key, now, cost)


def test_idle_keys_are_evicted_first():
    lim = limiter((1, 1), slots=8)
    # Eight keys fill the table; a ninth reuses a slot whose bucket is full again.
    for i in range(8):
        lim.check(b"k%d" % i, 0)
    table = lim.table
    used_before = table.used()
    assert lim.check(b"late", 10 * SECOND)[0] is True
    idle, busy = table.evictions
    assert (idle, busy) == (1, 0)
    assert table.used() == used_before


def test_a_full_table_of_busy_keys_still_decides():
    lim = limiter((1, 1), slots=8)
    for i in range(200):
        assert lim.check(b"k%d" % i, 0)[0] is True  # each key's first request
    idle, busy = lim.table.evictions
    assert busy > 0  # reused while still holding tokens: those keys were forgiven


def _hammer(fd: int, slots: int, n: int, queue: Any) -> None:
    table = _core.attach_rate_table(fd, slots)
    lim = _core.RateLimiter(
        "shared", [("client_ip", None)], "client_ip", [(SECOND, 1000)], 1, "draft", table
    )
    admitted = sum(1 for _ in range(n) if lim.check(b"hot", 5 * SECOND)[0])
    queue.put(admitted)


def test_processes_sharing_a_table_admit_exactly_the_burst():
    """Two processes race on one key through compare-and-swap: no token is spent twice."""
    slots = 1 << 10
    fd = os.memfd_create("ratelimit-test")
    os.ftruncate(fd, _core.RateTable.bytes_for(slots))
    _core.RateTable(slots, fd)  # header and seed, as the supervisor writes them
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(fd, slots, 20_000, queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    counts = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    os.close(fd)
    assert sum(counts) == 1000, counts


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"limits": [{"rate": 1}], "key": "consumer:x"}, "takes no argument"),
        ({"limits": [{"rate": 1}], "key": "claim:"}, "needs a name"),
        ({"limits": [{"rate": 1}], "key": "cookie:x"}, "unknown key 'cookie:x'"),
        ({"limits": [{"rate": 1}], "key": "header:"}, "needs a name"),
        ({"limits": [{"rate": 1}], "key": "header:bad name"}, "invalid header name"),
        ({"limits": [{"rate": 1}], "fallback": "header:x"}, "fallback key must always be there"),
        ({"limits": [{"rate": 1}], "fallback": "consumer"}, "fallback key must always be there"),
        ({"limits": [{"rate": 2, "burst": 1}], "cost": 2}, "cannot admit a request of cost 2"),
        ({"limits": []}, "$.routes[0].policies[0].rate_limit.limits"),
        (
            {"limits": [{"rate": 1, "per": "1w"}]},
            "$.routes[0].policies[0].rate_limit.limits[0].per",
        ),
    ],
    ids=[
        "consumer-argument",
        "claim-no-name",
        "unknown",
        "header-no-name",
        "header-bad",
        "fallback",
        "fallback-consumer",
        "cost",
        "no-limits",
        "bad-per",
    ],
)
def test_config_errors_name_the_entry(entry: dict[str, Any], message: str):
    config = {
        "upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9"}]}},
        "routes": [
            {
                "name": "r",
                "match": {"paths": ["/"]},
                "upstream": "u",
                "policies": [{"rate_limit": entry}],
            }
        ],
    }
    from fastgw.plan import build_plan

    with pytest.raises(ConfigError) as info:
        build_plan(parse_config(config, "gw.yaml"), "gw.yaml")
    text = str(info.value)
    assert message in text
    assert "$.routes[0].policies[0]" in text


def test_delay_admits_beyond_the_burst_with_a_wait():
    table = _core.RateTable(1 << 10)
    lim = _core.RateLimiter(
        "delay",
        [("client_ip", None)],
        "client_ip",
        [(SECOND // 10, 2)],
        1,
        "draft",
        table,
        300_000_000,
    )
    decisions = [lim.check(b"d", 0) for _ in range(6)]
    assert [d[0] for d in decisions] == [True, True, True, True, True, False]
    # Two from the burst at once, then one every 100 ms, up to the 300 ms delay.
    assert [d[5] for d in decisions[:5]] == [0, 0, 100_000_000, 200_000_000, 300_000_000]
    assert decisions[5][4] == 1  # Retry-After


def test_delay_waits_for_an_overshoot_smaller_than_one_interval():
    table = _core.RateTable(1 << 10)
    lim = _core.RateLimiter(
        "delay-small",
        [("client_ip", None)],
        "client_ip",
        [(SECOND // 2, 1)],
        1,
        "draft",
        table,
        2 * SECOND,
    )
    assert lim.check(b"k", 1000 * SECOND)[5] == 0
    # 100 ms later the next token is due in 400 ms: it must wait, not pass at once.
    assert lim.check(b"k", 1000 * SECOND + SECOND // 10)[5] == 400_000_000
