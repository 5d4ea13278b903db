"""The core's step kinds: what each holds, and what it refuses at plan time (a step's bytes
go to the wire as they are, so a bad one must never reach a request)."""

from __future__ import annotations

from typing import Any

import pytest

from fastgw import _core
from fastgw.policy.compiled import CoreParts


def test_respond_step_serialises_its_head_once() -> None:
    step = _core.RespondStep(404, [(b"content-type", b"text/plain"), (b"x-a", b"1\t2")], b"no")
    assert step.head == b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nx-a: 1\t2\r\n"
    assert (step.status, step.body, step.reads_request) == (404, b"no", False)


RESPOND_REFUSALS = [
    ("interim-status", 100, [], ValueError, "200-599"),
    ("status-too-high", 600, [], ValueError, "200-599"),
    ("crlf-in-value", 200, [(b"x-a", b"1\r\nx-evil: 1")], ValueError, "invalid header field"),
    ("space-in-name", 200, [(b"x a", b"1")], ValueError, "invalid header field"),
    ("str-pair", 200, [("x-a", "1")], TypeError, "(bytes, bytes)"),
]


@pytest.mark.parametrize(
    ("status", "headers", "error", "message"),
    [r[1:] for r in RESPOND_REFUSALS],
    ids=[r[0] for r in RESPOND_REFUSALS],
)
def test_respond_step_refuses(status: int, headers: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        _core.RespondStep(status, headers, b"")


def test_redirect_step_holds_a_location_per_pattern() -> None:
    step = _core.RedirectStep(301, {3: (b"/n/", 0), 4: (b"/n/", 1)}, True)
    assert (step.status, step.keep_query, step.locations) == (
        301,
        True,
        {3: (b"/n/", 0), 4: (b"/n/", 1)},
    )


@pytest.mark.parametrize(
    ("status", "locations", "error"),
    [(200, {0: (b"/",)}, ValueError), (302, {0: ("/",)}, TypeError)],
    ids=["not-a-redirect-status", "str-part"],
)
def test_redirect_step_refuses(status: int, locations: Any, error: type) -> None:
    with pytest.raises(error):
        _core.RedirectStep(status, locations, False)


def test_limit_steps_hold_their_limiters() -> None:
    table = _core.RateTable(1 << 10)
    limiter = _core.RateLimiter("t", [("client_ip", "")], "client_ip", [(10**9, 5)], table=table)
    concurrency = _core.ConcurrencyLimiter([("route", "")], "route", 2)
    assert _core.RateLimitStep(limiter).limiter is limiter
    assert _core.ConcurrencyLimitStep(concurrency).limiter is concurrency
    with pytest.raises(TypeError):
        _core.RateLimitStep(None)  # type: ignore[arg-type]


def test_hook_steps_read_the_request() -> None:
    def hook(request: Any) -> None:
        return None

    assert _core.SyncHookStep(hook).reads_request and _core.AsyncHookStep(hook).reads_request
    with pytest.raises(TypeError, match="callable"):
        _core.SyncHookStep("not callable")  # type: ignore[arg-type]


class PythonStep(_core.CoreStep):
    """What a plugin cannot do: a step kind of its own, with no run() in the core."""


@pytest.mark.parametrize("cls", [_core.CoreStep, PythonStep], ids=["bare-base", "python-kind"])
def test_only_the_cores_step_kinds_can_be_made(cls: type) -> None:
    with pytest.raises(TypeError, match="subclass in the core"):
        cls()


@pytest.mark.parametrize(
    "build",
    [
        lambda: _core.CoreChain(False, ["not a step"]),
        lambda: _core.CoreChain(False, [_core.CoreStep()]),
        lambda: _core.CoreChain(False, (), {0: "not ops"}),
        lambda: _core.CoreChain(False, (), None, None, [(print, False)]),
        lambda: CoreParts(steps=(_core.CoreStep(),)),
        lambda: CoreParts(response_hooks=((print, False),)),  # type: ignore[arg-type]
    ],
    ids=[
        "chain-str-step",
        "chain-bare-base",
        "chain-bad-ops",
        "chain-tuple-hook",
        "parts-bare-base",
        "parts-tuple-hook",
    ],  # fmt: skip
)
def test_chains_and_parts_hold_only_what_the_core_runs(build: Any) -> None:
    with pytest.raises(TypeError):
        build()
