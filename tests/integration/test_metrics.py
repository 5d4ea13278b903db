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


def wait_line(
    proc: Any, regex: re.Pattern[str], count: int = 1, timeout: float = 15, stdout: bool = False
) -> Any:
    """The `count`-th stderr (or stdout) line of a GatewayProcess matching `regex`."""
    deadline = time.monotonic() + timeout
    while True:
        lines = proc.stdout.splitlines() if stdout else list(proc.stderr_lines)
        found = [m for line in lines if (m := regex.search(line))]
        if len(found) >= count:
            return found[count - 1]
        assert time.monotonic() < deadline, proc.stderr
        time.sleep(0.02)


def admin_port(proc: Any) -> int:
    return int(wait_line(proc, ADMIN, stdout=True).group(2))


def scrape(proc: Any, token: str | None = TOKEN) -> dict[tuple[str, Any], float]:
    """GET /metrics from the admin listener, parsed by prometheus_client's text parser."""
    port = admin_port(proc)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
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
    reload = urllib.request.Request(
        f"http://127.0.0.1:{admin_port(gw)}/reload",
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


READY = re.compile(r"worker (\d+) pid (\d+) ready")


def worker_pid(gw: Any, index: int, generation: int = 1) -> int:
    """The pid of worker `index` as its `generation`-th "ready" line names it."""
    pattern = re.compile(rf"worker {index} pid (\d+) ready")
    return int(wait_line(gw, pattern, count=generation).group(1))


def items_ok(samples: dict[Any, float]) -> float:
    return value(samples, "fastgw_http_requests_total", route="items", method="GET", status="200")


def worker_health(samples: dict[Any, float]) -> tuple[list[float], list[float]]:
    """(fastgw_worker_up, fastgw_worker_scrape_errors_total) by worker index."""
    up = [value(samples, "fastgw_worker_up", worker=str(i)) for i in range(2)]
    errors = [value(samples, "fastgw_worker_scrape_errors_total", worker=str(i)) for i in range(2)]
    return up, errors


def test_counts_survive_reloads(gateway: Any, upstream: Any, http: Any):
    """Each SIGHUP reloads both workers; the sums keep counting after every one of them."""
    gw = start(gateway, upstream, 2)
    worker_pid(gw, 0), worker_pid(gw, 1)
    for round_number in range(1, 5):
        send(gw, http, 4, "/items/1")
        samples = scrape(gw)
        assert items_ok(samples) == 4 * round_number
        assert worker_health(samples) == ([1.0, 1.0], [0.0, 0.0])
        os.kill(gw.pid, signal.SIGHUP)
        wait_line(gw, re.compile(r"worker \d+ reloaded "), count=2 * round_number)
    send(gw, http, 4, "/items/1")
    samples = scrape(gw)
    assert items_ok(samples) == 20
    assert value(samples, "fastgw_config_reloads_total", result="ok") == 4
    assert "Task was destroyed" not in gw.stderr
    assert "control socket" not in gw.stderr


def test_stopped_worker_is_reported_down_then_recovers(gateway: Any, upstream: Any, http: Any):
    """A SIGSTOPped worker misses the control timeout: the scrape still answers, with that
    worker down, the error counted and logged and its counts as last read (never less)."""
    from fastgw.runtime.supervisor import CONTROL_TIMEOUT

    gw = start(gateway, upstream, 2)
    stopped = worker_pid(gw, 0)
    worker_pid(gw, 1)
    send(gw, http, 12, "/items/1")
    assert items_ok(scrape(gw)) == 12
    os.kill(stopped, signal.SIGSTOP)
    try:
        began = time.monotonic()
        samples = scrape(gw)
        assert time.monotonic() - began >= CONTROL_TIMEOUT
        assert worker_health(samples) == ([0.0, 1.0], [1.0, 0.0])
        assert items_ok(samples) == 12
        assert value(samples, "fastgw_workers") == 2
        wait_line(gw, re.compile(rf"worker 0 pid {stopped}: no answer on its control socket"))
        samples = scrape(gw)
        assert worker_health(samples) == ([0.0, 1.0], [2.0, 0.0])
        assert items_ok(samples) == 12
    finally:
        os.kill(stopped, signal.SIGCONT)
    # The late answers are skipped: the next scrape reads the one it asked for.
    samples = scrape(gw)
    assert worker_health(samples) == ([1.0, 1.0], [2.0, 0.0])
    assert items_ok(samples) == 12
    prefixes = send(gw, http, 10, "/items/2")
    samples = scrape(gw)
    assert items_ok(samples) == 22, prefixes
    assert value(samples, "fastgw_worker_restarts_total") == 0


def _steal_fd(pid: int, fd: int) -> int:
    """A duplicate of another process's file descriptor (pidfd_getfd(2), Linux 5.6)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        stolen = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd on x86-64 and arm64
    finally:
        os.close(pidfd)
    if stolen < 0:
        pytest.skip(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
    return int(stolen)


def test_broken_control_channel_replaces_the_worker(gateway: Any, upstream: Any, http: Any):
    """The worker's end of its control socket shut down (as if its control task had died):
    the supervisor reports it down, logs it and replaces the worker; counts never go back."""
    import socket

    gw = start(gateway, upstream, 2)
    broken = worker_pid(gw, 0)
    worker_pid(gw, 1)
    send(gw, http, 8, "/items/1")
    assert items_ok(scrape(gw)) == 8
    with open(f"/proc/{broken}/cmdline", "rb") as cmdline:
        argv = cmdline.read().split(b"\0")
    control_fd = int(argv[argv.index(b"--control-fd") + 1])
    with socket.socket(fileno=_steal_fd(broken, control_fd)) as stolen:
        stolen.shutdown(socket.SHUT_RDWR)
    samples = scrape(gw)
    assert worker_health(samples) == ([0.0, 1.0], [1.0, 0.0])
    assert items_ok(samples) == 8
    wait_line(gw, re.compile(rf"worker 0 pid {broken}: control socket failed .*replacing"))
    replacement = worker_pid(gw, 0, generation=2)
    assert replacement != broken
    samples = scrape(gw)
    assert worker_health(samples) == ([1.0, 1.0], [1.0, 0.0])
    assert items_ok(samples) == 8
    assert value(samples, "fastgw_worker_restarts_total") == 1
    send(gw, http, 6, "/items/1")
    assert items_ok(scrape(gw)) == 14
