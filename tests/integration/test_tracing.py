"""W3C Trace Context through a real gateway: traceparent continued or started, tracestate kept
only with a continued trace, the trace id in the access log, and Server-Timing on demand."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def stack(module_gateway: Any, module_upstream: Any, tmp_path_factory: Any) -> dict[str, Any]:
    up = module_upstream("echo")
    log = Path(tmp_path_factory.mktemp("trace")) / "access.log"
    gateways = {}
    for mode in ("off", "propagate", "start"):
        gateways[mode] = module_gateway(
            routes=[module_gateway.route("r", ["/"], "be")],
            upstreams={"be": up},
            tracing={"traceparent": mode, "server_timing": mode == "start"},
            access_log={
                "path": str(log.with_suffix(f".{mode}")),
                "flush_interval": "50ms",
                "fields": ["request_id", "trace_id"],
            },
        )
    return {"up": up, "gw": gateways, "log": log}


def forwarded(stack: dict[str, Any], mode: str, headers: list[tuple[str, str]]) -> Any:
    resp = stack["gw"][mode].request("GET", "/", headers)
    assert resp.status == 200
    return stack["up"].requests[-1], resp


def log_line(stack: dict[str, Any], mode: str, request_id: str) -> dict[str, Any]:
    path = stack["log"].with_suffix(f".{mode}")
    deadline = time.monotonic() + 5
    while True:
        if path.exists():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if entry["request_id"] == request_id:
                    return entry
        assert time.monotonic() < deadline, f"no line for {request_id}"
        time.sleep(0.02)


def test_off_forwards_traceparent_untouched(stack: dict[str, Any]):
    seen, _ = forwarded(stack, "off", [("traceparent", INCOMING), ("X-Request-Id", "t-off")])
    assert seen.header_all("traceparent") == [INCOMING]
    assert log_line(stack, "off", "t-off")["trace_id"] is None
    seen, _ = forwarded(stack, "off", [])
    assert seen.header("traceparent") is None


@pytest.mark.parametrize("mode", ["propagate", "start"])
def test_valid_traceparent_continues_with_a_new_span(stack: dict[str, Any], mode: str):
    request_id = f"t-valid-{mode}"
    seen, _ = forwarded(
        stack,
        mode,
        [("traceparent", INCOMING), ("tracestate", "vendor=abc"), ("X-Request-Id", request_id)],
    )
    [value] = seen.header_all("traceparent")
    trace_id, span_id, flags = TRACEPARENT.match(value).groups()
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span_id != "b7ad6b7169203331"
    assert flags == "01"
    assert seen.header_all("tracestate") == ["vendor=abc"]
    assert log_line(stack, mode, request_id)["trace_id"] == trace_id


def test_start_begins_a_trace_when_there_is_none(stack: dict[str, Any]):
    ids = set()
    for i in range(5):
        seen, _ = forwarded(stack, "start", [("X-Request-Id", f"t-new-{i}")])
        trace_id, span_id, flags = TRACEPARENT.match(seen.header("traceparent")).groups()
        assert flags == "01"
        assert set(trace_id) != {"0"} and set(span_id) != {"0"}
        assert log_line(stack, "start", f"t-new-{i}")["trace_id"] == trace_id
        ids.add(trace_id)
    assert len(ids) == 5


def test_propagate_does_not_start_one(stack: dict[str, Any]):
    seen, _ = forwarded(stack, "propagate", [("X-Request-Id", "t-none")])
    assert seen.header("traceparent") is None
    assert log_line(stack, "propagate", "t-none")["trace_id"] is None


@pytest.mark.parametrize(
    "bad",
    [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "garbage",
    ],
    ids=["zero-trace", "zero-parent", "version-ff", "uppercase", "00-with-suffix", "short", "junk"],
)
def test_malformed_traceparent_is_replaced_and_tracestate_dropped(stack: dict[str, Any], bad: str):
    seen, _ = forwarded(stack, "start", [("traceparent", bad), ("tracestate", "vendor=abc")])
    [value] = seen.header_all("traceparent")
    assert TRACEPARENT.match(value) and value != bad
    assert "0af7651916cd43dd8448eb211c80319c" not in value
    assert seen.header("tracestate") is None


def test_future_version_is_continued_as_version_00(stack: dict[str, Any]):
    future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-more"
    seen, _ = forwarded(stack, "start", [("traceparent", future)])
    trace_id, _span, flags = TRACEPARENT.match(seen.header("traceparent")).groups()
    assert (trace_id, flags) == ("0af7651916cd43dd8448eb211c80319c", "00")


def test_server_timing_only_when_asked(stack: dict[str, Any]):
    _, timed = forwarded(stack, "start", [])
    value = timed.header("server-timing")
    found = re.fullmatch(r"gateway;dur=(\d+\.\d{3}), upstream;dur=(\d+\.\d{3})", value or "")
    assert found, value
    _, plain = forwarded(stack, "off", [])
    assert plain.header("server-timing") is None
