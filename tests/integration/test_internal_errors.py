"""Internal errors of the core over real sockets: a bug costs one exchange, never the worker.

The fault is real core code meeting a policy's object it cannot format: a consumer whose
str() raises, read by a rate limit keyed on `consumer` (before anything is answered: 500
internal_error) or by the access log's `consumer` field (after the answer is out: the
connection closes). Each one is in the error log with its traceback, rate-limited, and
counted in fastgw_internal_errors_total{where}.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.integration.test_metrics import TOKEN, scrape, value

UNPRINTABLE = {"tests.policies_for_tests:UnprintableConsumer": {}}
TRACEBACK = "Traceback (most recent call last)"
LOG_PER_SECOND = 10  # INTERNAL_LOG_PER_SECOND in fastgw/_native/errors.pxd


def start(gateway: Any, upstream: Any, **top: Any) -> Any:
    limited = gateway.route("limited", ["/limited"], "be")
    limited["policies"] = [
        UNPRINTABLE,
        {"rate_limit": {"limits": [{"rate": 1000, "per": "1s"}], "key": "consumer"}},
    ]
    return gateway(
        routes=[limited, gateway.route("free", ["/free"], "be")],
        upstreams={"be": upstream("echo")},
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        **top,
    )


def internal_errors(proc: Any, where: str) -> float:
    return value(scrape(proc), "fastgw_internal_errors_total", where=where)


def test_error_in_a_chain_step_is_500_logged_counted(gateway: Any, upstream: Any):
    gw = start(gateway, upstream)
    assert internal_errors(gw, "chain") == 0
    with gw.connect() as client:
        resp = client.request("GET", "/limited")
    assert resp.status == 500
    error = json.loads(resp.body)["error"]
    assert error["code"] == "internal_error"
    assert error["request_id"] == resp.header("x-request-id")
    assert resp.header("connection") == "close"
    # One log line names where and the request, then the traceback down to the fault.
    deadline = time.monotonic() + 5
    while TRACEBACK not in gw.stderr and time.monotonic() < deadline:
        time.sleep(0.02)
    log = gw.stderr
    assert f"internal error (chain), request {error['request_id']}" in log
    assert TRACEBACK in log and "consumer cannot be shown" in log
    assert "Exception ignored" not in log
    assert internal_errors(gw, "chain") == 1
    # The worker keeps serving, on the same route's neighbours and on new connections.
    with gw.connect() as client:
        assert client.request("GET", "/free").status == 200
        assert client.request("GET", "/free").status == 200


def test_a_flood_is_counted_whole_and_logged_at_a_bounded_rate(gateway: Any, upstream: Any):
    gw = start(gateway, upstream)
    sent = 3 * LOG_PER_SECOND
    started = time.monotonic()
    for _ in range(sent):
        with gw.connect() as client:
            assert client.request("GET", "/limited").status == 500
    elapsed = time.monotonic() - started
    assert internal_errors(gw, "chain") == sent
    windows = int(elapsed) + 2  # one-second windows the flood can touch
    deadline = time.monotonic() + 5
    while "more internal errors were not logged" not in gw.stderr:
        assert time.monotonic() < deadline, gw.stderr
        time.sleep(0.05)
    tracebacks = gw.stderr.count(TRACEBACK)
    assert 1 <= tracebacks <= min(sent, LOG_PER_SECOND * windows)
    assert tracebacks < sent, "the log must leave some out"
    with gw.connect() as client:
        assert client.request("GET", "/free").status == 200


def test_error_after_the_answer_closes_the_connection(gateway: Any, upstream: Any, tmp_path: Path):
    """The access log formats the consumer once the response is complete: the client gets
    the whole response, then the connection closes; the next one is served."""
    gw = gateway(
        routes=[
            {**gateway.route("logged", ["/logged"], "be"), "policies": [UNPRINTABLE]},
            gateway.route("free", ["/free"], "be"),
        ],
        upstreams={"be": upstream("echo")},
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        access_log={
            "path": str(tmp_path / "access.log"),
            "fields": ["status", "consumer"],
            "flush_interval": "50ms",
        },
    )
    with gw.connect() as client:
        resp = client.request("GET", "/logged")
        assert resp.status == 200
        assert client.wait_closed(), "the connection must close after the answer"
    assert internal_errors(gw, "record") == 1
    assert "internal error (record)" in gw.stderr
    with gw.connect() as client:
        assert client.request("GET", "/free").status == 200
