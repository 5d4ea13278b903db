"""Measuring one peer: wrk runs (with the Lua that prints a machine-readable summary, paces a
fixed rate or sends keyed requests) and the CPU time of the proxy, the load and the rest of
the machine around each run."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import resource
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.e2e.peers import PeerSpec
from bench.e2e.processes import (
    CLOCK_TICKS,
    LOOPBACK,
    REPO,
    REQUEST_PATH,
    PeerError,
    Pinning,
    Process,
    cpu_seconds,
    free_port,
    process_tree,
)
from bench.e2e.scenarios import BENCH_KEY_HEADER

# wrk gets this long beyond its own duration before it is killed.
WRK_SLACK_S = 15.0
# A peer whose failed responses exceed this share of requests did not proxy the workload.
MAX_ERROR_SHARE = 0.01
# Shortest per-connection pause the throttled fixed-rate script may ask wrk for (ms timers).
MIN_RATE_DELAY_MS = 10  # whole-millisecond pauses: shorter ones round too coarsely
SUMMARY_MARK = "E2E_SUMMARY "


# wrk Lua: print one machine-readable line when the run ends (latencies in µs).
SUMMARY_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'E2E_SUMMARY {"requests": %d, "duration_us": %d, "bytes": %d, '
    .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
    .. '"latency_us": {"min": %.1f, "mean": %.1f, "stdev": %.1f, "max": %.1f, '
    .. '"p50": %.1f, "p75": %.1f, "p90": %.1f, "p99": %.1f, "p99.9": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""

# wrk has no rate mode (wrk2 does). Each connection pauses a random 0..2d-1 ms after every
# response, so C connections offer about C*1000/d requests/s and do not fire in lockstep; the
# mean pause d-0.5 ms leaves room for wrk's millisecond timer slack and the response time.
# d is at least MIN_RATE_DELAY_MS so that this half-millisecond stays a small error.
THROTTLE_LUA = r"""
local mean_delay_ms = %(delay_ms)d
delay = function()
  return math.random(0, 2 * mean_delay_ms - 1)
end
"""


# Every request carries BENCH_KEY_HEADER with the next of `keys` values ("1" .. "keys", then
# again from 1; each wrk thread counts on its own). The heads are wrk's own (method, path,
# Host) with the header spliced in before the empty line, all built once in init: per request
# wrk then only picks a ready string (no allocation, no garbage to collect), since wrk shares
# its CPU with the upstream and must stay cheap.
KEYED_LUA = r"""
local bench_keys = %(keys)d
local counter = 0
local heads = {}
init = function(args)
  local prefix = wrk.format():sub(1, -3) .. "%(header)s: "
  for i = 1, bench_keys do
    heads[i] = prefix .. i .. "\r\n\r\n"
  end
end
request = function()
  counter = counter + 1
  if counter > bench_keys then
    counter = 1
  end
  return heads[counter]
end
"""


def _lua_string(text: str) -> str:
    """A Lua string literal of `text` (printable ASCII: a header name or value)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TIME_UNITS_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s|m)$")


def parse_duration_us(text: str) -> float:
    """``"612.00us"`` / ``"1.23ms"`` / ``"2.00s"`` as printed by wrk, in microseconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _TIME_UNITS_US[match.group(2)]


def parse_wrk_output(text: str) -> dict[str, Any]:
    """Numbers from one wrk run's stdout.

    Reads wrk's own text (``N requests in Xs``, ``Requests/sec``, the ``--latency``
    distribution, ``Non-2xx or 3xx responses``, socket errors) and, when present, the exact
    ``E2E_SUMMARY`` line printed by this runner's Lua ``done`` hook, which wins.
    Raises ValueError when the text holds no request count.
    """
    result: dict[str, Any] = {"latency_us": {}, "errors": {}}
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ", text, re.MULTILINE)
    if total:
        result["requests"] = int(total.group(1))
        result["duration_us"] = parse_duration_us(total.group(2))
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    if rps:
        result["rps"] = float(rps.group(1))
    for percent, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", text, re.MULTILINE):
        result["latency_us"][f"p{percent}"] = parse_duration_us(value)
    non_2xx = re.search(r"^\s*Non-2xx or 3xx responses: (\d+)", text, re.MULTILINE)
    if non_2xx:
        result["errors"]["status"] = int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        for name, value in zip(
            ("connect", "read", "write", "timeout"), socket_errors.groups(), strict=True
        ):
            result["errors"][name] = int(value)
    for line in text.splitlines():
        if line.startswith(SUMMARY_MARK):
            summary = json.loads(line[len(SUMMARY_MARK) :])
            result["requests"] = summary["requests"]
            result["duration_us"] = float(summary["duration_us"])
            result["bytes"] = summary["bytes"]
            result["errors"] = summary["errors"]
            result["latency_us"] = summary["latency_us"]
    if "requests" not in result:
        raise ValueError("wrk output has no request count")
    if result.get("duration_us"):
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    for name in ("connect", "read", "write", "status", "timeout"):
        result["errors"].setdefault(name, 0)
    return result


@dataclasses.dataclass
class Workload:
    duration_s: float
    warmup_s: float
    connections: int
    threads: int
    rate: int | None
    pinning: Pinning
    # Set once the shared upstream runs, so its CPU time can be told apart from other load.
    upstream_pid: int | None = None
    # Likewise the redis-server of the Redis scenarios, whose CPU is reported per request.
    redis_pid: int | None = None


def write_lua(
    workdir: Path, delay_ms: int | None, keys: int = 0, header: tuple[str, str] | None = None
) -> Path:
    """wrk's script: the summary line, plus the throttle (``delay_ms``), the keyed
    requests (``keys`` > 0) or one fixed field on every request (``header``) when asked for."""
    script = SUMMARY_LUA
    if delay_ms is not None:
        script = THROTTLE_LUA % {"delay_ms": delay_ms} + script
    if keys > 0:
        script = KEYED_LUA % {"keys": keys, "header": BENCH_KEY_HEADER} + script
    elif header is not None:
        name, value = header
        script = f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}\n" + script
    name = "wrk-rate" if delay_ms is not None else "wrk"
    suffix = "-keys" if keys > 0 else "-header" if header is not None else ""
    path = workdir / f"{name}{suffix}.lua"
    path.write_text(script)
    return path


def run_wrk(
    port: int,
    workload: Workload,
    duration_s: float,
    connections: int,
    script: Path,
) -> dict[str, Any]:
    threads = max(1, min(workload.threads, connections))
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        f"http://{LOOPBACK}:{port}{REQUEST_PATH}",
    ]
    argv = workload.pinning.wrap(argv, workload.pinning.load_cpu)
    completed = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration_s + WRK_SLACK_S,
        check=False,
    )
    if completed.returncode != 0:
        raise PeerError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()[:300]}")
    return parse_wrk_output(completed.stdout)


def rate_plan(rate: int, connections: int) -> tuple[int, int]:
    """(connections, mean per-connection delay in ms) offering about ``rate`` requests/s."""
    delay_ms = round(1000 * connections / rate)
    if delay_ms < MIN_RATE_DELAY_MS:
        delay_ms = MIN_RATE_DELAY_MS
        connections = math.ceil(rate * delay_ms / 1000)
    return connections, delay_ms


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (first line of /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat_file:
        fields = [int(value) for value in stat_file.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wrk_cpu_seconds() -> float:
    """CPU seconds of this runner's reaped children: wrk, once each run has ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(process: Process, port: int, workload: Workload, **wrk_args: Any) -> dict[str, Any]:
    """One wrk run with the proxy's CPU time read around it; per-request numbers added."""
    upstream_pid, redis_pid = workload.upstream_pid, workload.redis_pid
    machine_before, wrk_before = machine_busy_seconds(), wrk_cpu_seconds()
    upstream_before = sum(cpu_seconds(upstream_pid)) if upstream_pid else 0.0
    redis_before = sum(cpu_seconds(redis_pid)) if redis_pid else 0.0
    user_before, system_before = cpu_seconds(process.pid)
    result = run_wrk(port, workload, **wrk_args)
    user_after, system_after = cpu_seconds(process.pid)
    redis_after = sum(cpu_seconds(redis_pid)) if redis_pid else 0.0
    upstream_after = sum(cpu_seconds(upstream_pid)) if upstream_pid else 0.0
    machine_after, wrk_after = machine_busy_seconds(), wrk_cpu_seconds()
    failure = process.failure()
    if failure:
        raise PeerError(f"died during the run: {failure}")
    requests = result["requests"]
    errors = sum(result["errors"].values())
    result["error_count"] = errors
    if requests == 0 or errors > MAX_ERROR_SHARE * requests:
        raise PeerError(f"{errors} failed responses out of {requests} requests: {result['errors']}")
    user_us = (user_after - user_before) * 1e6
    system_us = (system_after - system_before) * 1e6
    result["cpu"] = {
        "user_s": round(user_after - user_before, 3),
        "system_s": round(system_after - system_before, 3),
        "user_us_per_request": user_us / requests,
        "system_us_per_request": system_us / requests,
        "total_us_per_request": (user_us + system_us) / requests,
        # Share of one CPU the proxy used: near 1.0 means the proxy was the bottleneck,
        # well below means wrk and the upstream were (then compare CPU per request).
        "busy": (user_us + system_us) / result["duration_us"],
    }
    proxy_s = (user_us + system_us) / 1e6
    wrk_s = wrk_after - wrk_before
    upstream_s = upstream_after - upstream_before
    redis_s = redis_after - redis_before
    # CPU time on the machine that was none of proxy, wrk, upstream (and redis-server):
    # other tenants' work disturbing the run. Tick resolution makes values within ~0.05 s
    # of zero mean "none".
    result["machine_cpu_s"] = {
        "proxy": round(proxy_s, 3),
        "wrk": round(wrk_s, 3),
        "upstream": round(upstream_s, 3),
        "other": round(
            (machine_after - machine_before) - proxy_s - wrk_s - upstream_s - redis_s, 3
        ),
    }
    if redis_pid:
        result["machine_cpu_s"]["redis"] = round(redis_s, 3)
        # Redis's own work for the proxy's checks: CPU the proxy's own numbers do not show.
        result["cpu"]["redis_us_per_request"] = redis_s * 1e6 / requests
    return result


def without_local_paths(text: str, workdir: Path) -> str:
    """Results are published: temp dirs and the checkout's location are not."""
    return text.replace(str(workdir), "<workdir>").replace(str(REPO), "<repo>")


def run_peer(spec: PeerSpec, upstream_port: int, workload: Workload) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"fastgw-e2e-{spec.name}-"))
    port = free_port()
    record: dict[str, Any] = {"status": "failed"}
    process = None
    try:
        argv = spec.build(workdir, port, upstream_port)
        record["command"] = without_local_paths(shlex.join(argv), workdir)
        if not shutil.which(argv[0]):
            raise PeerError(f"{argv[0]} not found")
        process = Process(
            spec.name, workload.pinning.wrap(argv, workload.pinning.proxy_cpu), workdir, spec.cwd
        )
        record["pid"] = process.pid
        process.wait_ready(port)
        record["processes"] = len(process_tree(process.pid))
        warmup_script = write_lua(workdir, None, spec.keys, spec.header)
        if workload.warmup_s > 0:
            run_wrk(port, workload, workload.warmup_s, workload.connections, warmup_script)
        record["max"] = measure(
            process,
            port,
            workload,
            duration_s=workload.duration_s,
            connections=workload.connections,
            script=warmup_script,
        )
        if workload.rate:
            connections, delay_ms = rate_plan(workload.rate, workload.connections)
            fixed = measure(
                process,
                port,
                workload,
                duration_s=workload.duration_s,
                connections=connections,
                script=write_lua(workdir, delay_ms, spec.keys, spec.header),
            )
            fixed["offered_rps"] = workload.rate
            fixed["connections"] = connections
            fixed["mean_delay_ms"] = delay_ms
            record["fixed_rate"] = fixed
        record["status"] = "ok"
    except (PeerError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        record["reason"] = without_local_paths(str(exc), workdir)
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return record
