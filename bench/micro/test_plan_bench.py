"""Reload cost: config -> Plan for 1,000 and 10,000 routes (what a reload compiles)."""

from __future__ import annotations

from typing import Any

import pytest

from fastgw.config import parse_config
from fastgw.plan import build_plan


def config(routes: int) -> dict[str, Any]:
    return {
        "upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9"}]}},
        "routes": [
            {
                "name": f"r{i}",
                "match": {
                    "paths": [f"/svc{i}/v1/items/{{id}}", f"/svc{i}/health"],
                    "methods": ["GET", "POST"],
                },
                "upstream": "u",
            }
            for i in range(routes)
        ],
    }


@pytest.mark.parametrize("routes", [1_000, 10_000])
def test_build_plan(benchmark: Any, routes: int) -> None:
    parsed = parse_config(config(routes))
    plan = benchmark.pedantic(
        build_plan, args=(parsed,), kwargs={"strict": False}, rounds=3, iterations=1
    )
    assert len(plan.routes) == 2 * routes


@pytest.mark.parametrize("routes", [1_000, 10_000])
def test_parse_config(benchmark: Any, routes: int) -> None:
    data = config(routes)
    parsed = benchmark.pedantic(parse_config, args=(data,), rounds=3, iterations=1)
    assert len(parsed.routes) == routes
