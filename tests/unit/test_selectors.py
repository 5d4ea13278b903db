"""Target selection without traffic: the smooth weighted round robin sequence (with targets
marked down), and the seam's rules (a selector serves one pool, what it must return, what
Python sees of a target). Real requests through a gateway are in
tests/integration/test_target_selection.py."""

from __future__ import annotations

import pytest

from fastgw import _core

NAMES = "abcdefgh"


def pool_of(weights: list[int], name: str = "u") -> _core.UpstreamPool:
    targets = [_core.UpstreamTarget(f"10.0.0.{i + 1}", 80) for i in range(len(weights))]
    return _core.UpstreamPool(name, targets, weights)


def sequence(pool: _core.UpstreamPool, n: int) -> str:
    """The next `n` choices of the pool's selector, as target letters by pool index."""
    return "".join(NAMES[pool.targets.index(pool.selector.select(pool))] for _ in range(n))


@pytest.mark.parametrize(
    ("weights", "down", "expected"),
    [
        ([1], "", "aaaa"),
        ([1, 1], "", "ababab"),
        # README: weights 3 and 1 give 3 to one and 1 to the other per four, interleaved.
        ([3, 1], "", "aabaaaba"),
        # nginx's own example for 5, 1, 1 (ngx_http_upstream_round_robin.c).
        ([5, 1, 1], "", "aabacaa" * 2),
        ([2, 3], "", "babab" * 2),
        ([1, 2, 3], "", "cbacbc" * 2),
        # A target that is down takes no turn, and its weight leaves the total.
        ([5, 1, 1], "b", "aaacaa" * 2),
        ([1, 1, 1], "b", "acacac"),
        ([4, 2, 1], "a", "bcb" * 3),
        # Every target down: the same sequence as all up (fail open).
        ([3, 1], "ab", "aabaaaba"),
        ([1], "a", "aaa"),
    ],
    ids=lambda v: ",".join(map(str, v)) if isinstance(v, list) else (v or "-"),
)
def test_round_robin_sequence(weights: list[int], down: str, expected: str) -> None:
    pool = pool_of(weights)
    assert isinstance(pool.selector, _core.SmoothWeightedRoundRobin)
    for letter in down:
        pool.targets[NAMES.index(letter)].set_healthy(False)
    assert sequence(pool, len(expected)) == expected


def test_a_target_back_up_takes_its_turns_again() -> None:
    pool = pool_of([1, 1, 1])
    b = pool.targets[1]
    b.set_healthy(False)
    assert (b.healthy, sequence(pool, 4)) == (False, "acac")
    b.set_healthy(True)
    assert (b.healthy, sequence(pool, 6)) == (True, "abcabc")


def test_health_belongs_to_the_target_so_every_pool_naming_it_sees_it() -> None:
    # plan.py shares one UpstreamTarget per host:port between upstreams (and plans).
    a, b = _core.UpstreamTarget("10.0.0.1", 80), _core.UpstreamTarget("10.0.0.2", 80)
    first = _core.UpstreamPool("first", [a, b], [1, 1])
    second = _core.UpstreamPool("second", [b, a], [1, 1])
    a.set_healthy(False)
    assert {first.selector.select(first) for _ in range(4)} == {b}
    assert {second.selector.select(second) for _ in range(4)} == {b}


def test_a_target_starts_up_idle_and_its_counts_are_read_only() -> None:
    target = _core.UpstreamTarget("10.0.0.1", 80)
    assert (target.healthy, target.in_flight, target.failures) == (True, 0, 0)
    for name, value in [("healthy", False), ("in_flight", 1), ("failures", 1)]:
        with pytest.raises(AttributeError):
            setattr(target, name, value)


class LastUp(_core.TargetSelector):
    def select(self, pool, request):
        return [t for t in pool.targets if t.healthy][-1]


def test_a_selector_serves_one_pool() -> None:
    first, second = pool_of([1, 1]), pool_of([1, 1])
    selector = LastUp()
    first.set_selector(selector)
    assert first.selector is selector
    with pytest.raises(ValueError, match="serves a pool already"):
        second.set_selector(selector)
    with pytest.raises(ValueError, match="serves a pool already"):
        second.set_selector(first.selector)
    with pytest.raises(TypeError):
        second.set_selector(None)  # type: ignore[arg-type]
    assert isinstance(second.selector, _core.SmoothWeightedRoundRobin)


def test_python_selector_is_called_through_select() -> None:
    pool = pool_of([1, 1, 1])
    pool.set_selector(LastUp())
    assert pool.selector.select(pool, None) is pool.targets[2]
    pool.targets[2].set_healthy(False)
    assert pool.selector.select(pool, None) is pool.targets[1]


def test_the_base_selector_chooses_nothing_and_requests_are_made_by_the_gateway() -> None:
    pool = pool_of([1])
    with pytest.raises(NotImplementedError):
        _core.TargetSelector().select(pool, None)
    with pytest.raises(TypeError):
        _core.SelectionRequest()
