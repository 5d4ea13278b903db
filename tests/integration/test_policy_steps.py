"""The policy steps seam, second implementation: a built-in fastgw does not ship
(QuotaAnswer in tests/policies_for_tests.py) is registered by name through the
`fastgw.policies` entry point group, compiles itself to the core's steps in its own
compile_core, and runs through a real gateway over loopback. Neither fastgw/plan.py nor the
core knows its name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import uvloop

from fastgw import _core
from fastgw.policy import PolicyRegistry
from fastgw.testing import EchoUpstream, TestResponse, running_gateway
from tests.policies_for_tests import QuotaAnswer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def quota_answer_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution declaring `quota_answer` as its fastgw.policies entry
    point, as a plugin package's metadata does."""
    dist = tmp_path / "fastgw_quota_answer-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fastgw-quota-answer\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[fastgw.policies]\nquota_answer = tests.policies_for_tests:QuotaAnswer\n"
    )
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(tmp_path))


def quota_config(upstream: EchoUpstream) -> dict[str, Any]:
    return {
        "upstreams": {"echo": {"targets": [{"url": upstream.url}]}},
        "routes": [
            {
                "name": "quota",
                # Two patterns: the capture the quota is kept by has a different index in each.
                "match": {"paths": ["/q/{tenant}", "/by/{region}/{tenant}"]},
                "upstream": "echo",
                "policies": [{"quota_answer": {"requests": 2, "body": "from the gateway"}}],
            }
        ],
    }


def test_registered_builtin_runs_its_compiled_steps(quota_answer_installed: None) -> None:
    assert PolicyRegistry.default().resolve("quota_answer") is QuotaAnswer
    paths = ["/q/acme", "/by/eu/acme", "/q/acme", "/by/us/globex", "/q/globex", "/q/globex"]

    async def scenario() -> tuple[list[Any], list[TestResponse], int]:
        async with EchoUpstream() as upstream:
            async with running_gateway(quota_config(upstream)) as gw:
                action = gw.gateway.plan.core.actions[0]
                steps = [type(step) for step in action.chain.steps]
                responses = [await gw.request("GET", path) for path in paths]
            return steps, responses, len(upstream.requests)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        steps, responses, upstream_requests = runner.run(asyncio.wait_for(scenario(), 20))

    assert steps == [_core.RateLimitStep, _core.RespondStep]
    assert upstream_requests == 0  # every request was answered by the gateway
    acme_1, acme_2, acme_3, globex_1, globex_2, globex_3 = responses
    for answer, remaining in ((acme_1, "1"), (acme_2, "0"), (globex_1, "1"), (globex_2, "0")):
        assert answer.status == 200, answer.body
        assert answer.body == b"from the gateway"
        assert answer.headers["x-answered-by"] == "quota_answer"
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert answer.headers["ratelimit-limit"] == "2"
        assert answer.headers["ratelimit-remaining"] == remaining
    # The tenant's quota is one across both patterns; another tenant's is its own.
    for refused in (acme_3, globex_3):
        assert refused.status == 429, refused.body
        error = refused.json()["error"]
        assert (error["code"], error["request_id"]) == (
            "rate_limited",
            refused.headers["x-request-id"],
        )
        assert int(refused.headers["retry-after"]) > 0
        assert "x-answered-by" not in refused.headers
