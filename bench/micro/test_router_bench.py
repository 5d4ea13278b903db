"""Router lookup cost at 10, 1,000 and 10,000 routes.

Compared: the compiled router's C match() (timed inside a C loop by _bench_match, so
the Python call overhead is not counted), the compiled router through its Python lookup()
wrapper, the classic list of regular expressions tried in order, and the pure-Python
reference twin. The request targets a service near the end of the table.

    .venv/bin/python -m pytest bench/micro/test_router_bench.py --benchmark-only -q
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from fastgw._core import Router, _bench_match
from tests.twins.routing_reference import ReferenceRouter

SIZES = [10, 1_000, 10_000]
C_LOOP_ROUNDS = 20_000

# (route_id, hosts, pattern, methods)
Route = tuple[int, list[str], str, list[str] | None]


def route_table(size: int) -> list[Route]:
    """A realistic mix, three routes per service: items by id, health, static files."""
    routes: list[Route] = []
    for route_id in range(size):
        service, kind = divmod(route_id, 3)
        hosts = [f"svc{service}.example.com"] if service % 4 == 3 else []
        if kind == 0:
            routes.append((route_id, hosts, f"/svc{service}/v1/items/{{id}}", ["GET", "PUT"]))
        elif kind == 1:
            routes.append((route_id, [], f"/svc{service}/health", ["GET"]))
        else:
            routes.append((route_id, ["*.example.com"], f"/svc{service}/static/{{*p}}", None))
    return routes


def request_for(size: int) -> tuple[str, str, str]:
    service = (size - 1) // 3 - 1 if size > 3 else 0
    while service % 4 == 3:  # a host-less items route, the common case
        service -= 1
    return "GET", "api.example.com", f"/svc{service}/v1/items/12345"


def compiled_router(size: int) -> Router:
    router = Router()
    for route_id, hosts, pattern, methods in route_table(size):
        router.add(route_id, hosts, [pattern], methods)
    router.compile()
    return router


def reference_router(size: int) -> ReferenceRouter:
    router = ReferenceRouter()
    for route_id, hosts, pattern, methods in route_table(size):
        router.add(route_id, hosts, [pattern], methods)
    return router


def regex_router(size: int) -> Callable[[str, str, str], Any]:
    """The classic approach: one compiled regex per route, tried in order."""
    table = []
    for route_id, hosts, pattern, methods in route_table(size):
        source = "^"
        for segment in pattern[1:].split("/"):
            if segment.startswith("{*"):
                source += f"(?:/(?P<{segment[2:-1]}>.*))?"
            elif segment.startswith("{"):
                source += f"/(?P<{segment[1:-1]}>[^/]+)"
            else:
                source += "/" + re.escape(segment)
        host_re = None
        if hosts:
            host_re = re.compile(
                "^(?:"
                + "|".join(re.escape(h).replace(r"\*", "[^.]+(?:\\.[^.]+)*") for h in hosts)
                + ")$"
            )
        table.append((re.compile(source + "$"), host_re, frozenset(methods or ()), route_id))

    def lookup(method: str, host: str, path: str) -> Any:
        for path_re, host_re, methods, route_id in table:
            if host_re is not None and host_re.match(host) is None:
                continue
            found = path_re.match(path)
            if found is not None and (not methods or method in methods):
                return route_id, found.groupdict()
        return None

    return lookup


@pytest.mark.parametrize("size", SIZES)
def test_compiled_match_c_loop(benchmark: Any, size: int) -> None:
    router = compiled_router(size)
    method, host, path = request_for(size)
    assert router.lookup(method, host, path)[0] == "found"
    per_match = benchmark.pedantic(
        _bench_match, args=(router, method, host, path, C_LOOP_ROUNDS), rounds=30, iterations=1
    )
    samples = [_bench_match(router, method, host, path, C_LOOP_ROUNDS) for _ in range(5)]
    benchmark.extra_info["ns_per_match"] = round(min(samples + [per_match]), 1)


@pytest.mark.parametrize("size", SIZES)
def test_compiled_lookup_python(benchmark: Any, size: int) -> None:
    router = compiled_router(size)
    method, host, path = request_for(size)
    assert benchmark(router.lookup, method, host, path)[0] == "found"


@pytest.mark.parametrize("size", SIZES)
def test_regex_list(benchmark: Any, size: int) -> None:
    lookup = regex_router(size)
    method, host, path = request_for(size)
    assert benchmark(lookup, method, host, path) is not None


@pytest.mark.parametrize("size", SIZES)
def test_reference_twin(benchmark: Any, size: int) -> None:
    router = reference_router(size)
    method, host, path = request_for(size)
    result = benchmark.pedantic(router.lookup, args=(method, host, path), rounds=10)
    assert result[0] == "found"
