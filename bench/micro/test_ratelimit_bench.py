"""What one rate limit check costs: a hot key and 100,000 distinct keys.

`check_fast` is the Python-callable form (one call, the real clock, a bool back); the C-loop
figure (_bench_decide) is what the core pays per request, with no Python call.
The issue's targets: <= 150 ns from Python, less inside the core.

    .venv/bin/python -m pytest bench/micro/test_ratelimit_bench.py --benchmark-only -q -s
"""

from __future__ import annotations

from typing import Any

import pytest

from fastgw import _core

SECOND = 1_000_000_000
KEYS = [b"203.0.%d.%d" % divmod(i, 256) for i in range(100_000)]


def limiter() -> Any:
    # Generous limits: every check takes the full path (read, compute, compare-and-swap).
    table = _core.RateTable()
    return _core.RateLimiter(
        "bench",
        [("client_ip", None)],
        "client_ip",
        [(SECOND // 1_000_000, 1_000_000)],
        1,
        "draft",
        table,
    )


def test_check_hot_key(benchmark: Any) -> None:
    lim = limiter()
    key = b"198.51.100.7"
    assert benchmark(lim.check_fast, key) is True


def test_check_many_keys(benchmark: Any) -> None:
    lim = limiter()
    keys = iter(KEYS * 50)
    benchmark.pedantic(lambda: lim.check_fast(next(keys)), rounds=200_000, iterations=1)


@pytest.mark.parametrize("keys", [1, 100_000], ids=["hot-key", "100k-keys"])
def test_decide_in_c(keys: int) -> None:
    lim = limiter()
    sample = KEYS[:keys]
    rounds = max(1, 1_000_000 // keys)
    _core._bench_decide(lim, sample, 1)  # claim the slots first
    ns = min(_core._bench_decide(lim, sample, rounds) for _ in range(3))
    print(f"\ndecide() in C, {keys} key(s): {ns:.1f} ns per check")
    assert ns > 0
