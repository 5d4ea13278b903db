"""/metrics of a real gateway: parsed with the Prometheus text parser, counting what was sent.

With two workers the supervisor sums both (and keeps what a worker that died had counted);
the test checks that both workers served, so the sums really span processes.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

ADMIN = re.compile(r"fastgw admin on http://([0-9.]+):(\d+)")
TOKEN = "metrics-test-token-0123456789"


def wait_line(proc: Any, regex: re.Pattern[str], count: int = 1, timeout: float = 15) -> Any:
    """The `count`-th stderr line of a GatewayProcess matching `regex`."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for line in list(proc.stderr_lines) if (m := regex.search(line))]
        if len(found) >= count:
            return found[count - 1]
        assert time.monotonic() < deadline, proc.stderr
        time.sleep(0.02)


def scrape(proc: Any, token: str | None = TOKEN) -> dict[tuple[str, Any], float]:
    """GET /metrics from the admin listener, parsed by prometheus_client's text parser."""
    admin_port = int(wait_line(proc, ADMIN).group(2))
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def start(gateway: Any, upstream: Any, workers: int) -> Any:
    return gateway(
        routes=[gateway.route("items", ["/items/{id}"], "be", methods=["GET"])],
        upstreams={"be": upstream("echo")},
        workers=workers,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
    )


def send(gw: Any, http: Any, count: int, path: str, method: str = "GET") -> set[str]:
    """`count` requests, each on a fresh connection; the request-id prefixes seen (one per
    worker process)."""
    prefixes = set()
    for _ in range(count):
        with gw.connect() as client:
            resp = client.request(method, path)
        prefixes.add(resp.header("x-request-id")[:16])
    return prefixes


def test_two_workers_are_summed(gateway: Any, upstream: Any, http: Any):
    gw = start(gateway, upstream, 2)
    prefixes = send(gw, http, 120, "/items/1")
    send(gw, http, 30, "/nowhere")
    send(gw, http, 10, "/items/1", "POST")
    assert len(prefixes) == 2, "both workers must have served for the sum to mean anything"
    samples = scrape(gw)
    ok = value(samples, "fastgw_http_requests_total", route="items", method="GET", status="200")
    assert ok == 120
    assert value(samples, "fastgw_http_requests_total", route="", method="GET", status="404") == 30
    assert value(samples, "fastgw_http_requests_total", route="", method="POST", status="405") == 10
    assert value(samples, "fastgw_http_request_duration_seconds_count", route="items") == 120
    assert (
        value(samples, "fastgw_http_request_duration_seconds_bucket", route="items", le="+Inf")
        == 120
    )
    assert value(samples, "fastgw_upstream_request_duration_seconds_count", upstream="be") == 120
    assert value(samples, "fastgw_workers") == 2
    assert value(samples, "fastgw_bytes_total", direction="in") >= 160 * len(
        http.build_request("GET", "/nowhere")
    )
    assert value(samples, "fastgw_bytes_total", direction="out") > 0
    healthy = [v for (name, _), v in samples.items() if name == "fastgw_upstream_target_healthy"]
    assert healthy == [1.0]

    # A worker that dies takes its live gauges with it, never its counts.
    pid = int(wait_line(gw, re.compile(r"worker 0 pid (\d+) ready")).group(1))
    os.kill(pid, signal.SIGKILL)
    wait_line(gw, re.compile(r"worker 0 pid \d+ ready"), count=2)
    send(gw, http, 20, "/items/2")
    samples = scrape(gw)
    ok = value(samples, "fastgw_http_requests_total", route="items", method="GET", status="200")
    assert ok == 140
    assert value(samples, "fastgw_worker_restarts_total") == 1


def test_reload_counts_and_auth(gateway: Any, upstream: Any, http: Any):
    gw = start(gateway, upstream, 1)
    send(gw, http, 3, "/items/9")
    samples = scrape(gw)
    assert (
        value(samples, "fastgw_http_requests_total", route="items", method="GET", status="200") == 3
    )
    assert value(samples, "fastgw_config_reloads_total", result="ok") == 0
    admin_port = int(wait_line(gw, ADMIN).group(2))
    reload = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/reload",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(reload, timeout=10) as resp:
        assert resp.status == 200
    samples = scrape(gw)
    assert value(samples, "fastgw_config_reloads_total", result="ok") == 1
    # Counts survive the reload: routes are counted by name.
    assert (
        value(samples, "fastgw_http_requests_total", route="items", method="GET", status="200") == 3
    )
    for token in (None, "wrong-token-wrong-token"):
        with pytest.raises(urllib.error.HTTPError) as info:
            scrape(gw, token)
        assert info.value.code == 401
