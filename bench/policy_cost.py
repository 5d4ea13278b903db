"""What a policy chain costs per request, in user-space instructions (callgrind).

The e2e runner measures time, and on a shared 2-core VM the round-to-round spread of rps is
larger than the few percent a policy costs. Instructions are repeatable: fastgw runs under
`valgrind --tool=callgrind` with each scenario's config (bench/e2e/scenarios.py SCENARIOS),
serves two batches of keep-alive GETs, and the difference of the totals divided by the difference of
request counts is the user-space instructions per request, start-up cancelled out.

The cost of a scenario is its extra instructions per request over plain (or over its
baseline in bench/e2e/scenarios.py COST_BASELINES: observe-on against observe-off), converted
to time with plain's measured user µs per request and instructions per request, as a share of the
whole CPU per request (user + kernel) from an e2e run: what the chain takes from throughput
when the proxy is the bottleneck.

callgrind sees no kernel time. For a scenario that writes an access log, the log's bytes per
request are read from the file it wrote, and the kernel time of appending them is measured
here by timing 64 KiB append writes (the writer thread's slice size) to a file in the same
directory; that time is added to the scenario's extra µs and to its CPU per request.

Scenarios with `redis` (bench/e2e/scenarios.py) get a redis-server on a free loopback port.
Their count is fastgw's own user-space work only: the kernel time of the Redis round trips and
redis-server's CPU are not in it (the e2e runner reports both), so it decides for batched leases
(one round trip per many requests) and is a lower bound for exact mode.

    python bench/policy_cost.py [--requests 1000,4000] [--cpu-us 16.0 --user-us 3.0]
    python bench/policy_cost.py --scenarios observe-on --cpu-us 16.0 --user-us 3.0 \\
        --name observe-cost
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e.peers import RedisServer, redis_server, upstream_server  # noqa: E402
from bench.e2e.processes import Pinning, free_port  # noqa: E402
from bench.e2e.scenarios import (  # noqa: E402
    BENCH_KEY_HEADER,
    COST_BASELINES,
    PLAIN,
    POLICY_TARGETS,
    SCENARIOS,
    fastgw_config,
    parse_scenarios,
)

REPO = Path(__file__).resolve().parent.parent
REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: policy-cost\r\n\r\n"
_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)
ACCESS_LOG = "access.log"  # the file name bench/e2e/scenarios.py's observe-on scenario writes to
WRITE_SLICE = 65536  # bytes the core hands the log writer thread at a time


def keyed_requests(keys: int) -> list[bytes]:
    """REQUEST with BENCH_KEY_HEADER set to "1" .. str(keys), as the e2e runner's wrk sends:
    built once, so the sender stays as fast as with one request."""
    head = REQUEST[:-2] + BENCH_KEY_HEADER.encode() + b": "
    return [head + str(i).encode() + b"\r\n\r\n" for i in range(1, keys + 1)]


def send_requests(
    port: int,
    count: int,
    timeout: float = 30.0,
    keys: int = 0,
    header: tuple[str, str] | None = None,
) -> None:
    """`count` keep-alive GETs, one at a time, each response read fully (Content-Length).

    With `keys` > 0 each carries BENCH_KEY_HEADER, cycling through that many values; with a
    `header` (name, value) each carries that field.
    """
    requests = keyed_requests(keys) if keys > 0 else [REQUEST]
    if header is not None:
        field = f"{header[0]}: {header[1]}\r\n".encode("latin-1")
        requests = [request[:-2] + field + b"\r\n" for request in requests]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        buffer = b""
        for n in range(count):
            sock.sendall(requests[n % len(requests)])
            while True:
                head_end = buffer.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = buffer[:head_end].lower()
                    length = int(re.search(rb"content-length: *(\d+)", head).group(1))
                    total = head_end + 4 + length
                    if len(buffer) >= total:
                        if not head.startswith(b"http/1.1 200"):
                            raise RuntimeError(f"unexpected response: {head[:60]!r}")
                        buffer = buffer[total:]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("gateway closed the connection")
                buffer += chunk


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("fastgw exited under valgrind")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("fastgw did not start under valgrind")


def instructions(
    scenario: str, requests: int, upstream_port: int, workdir: Path, redis_port: int | None = None
) -> int:
    """Total user-space instructions of fastgw serving `requests` GETs (start-up included).

    Files the scenario writes (its access log) stay in ``workdir / f"{scenario}.{requests}"``.
    """
    port = free_port()
    run_dir = workdir / f"{scenario}.{requests}"
    run_dir.mkdir()
    config = workdir / f"{scenario}.yaml"
    # Under valgrind a first request that starts threads (a password hash) may take longer
    # than the default client_header timeout; the limit costs nothing either way.
    config.write_text(
        fastgw_config(port, upstream_port, scenario, run_dir, redis_port)
        + "timeouts: {client_header: 300s}\n"
    )
    out = workdir / f"callgrind.{scenario}.{requests}"
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "fastgw",
        "run",
        "-c",
        str(config),
    ]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, process)
        keys, header = SCENARIOS[scenario].keys, SCENARIOS[scenario].header
        # warm-up: the pool's connection, first-call paths (and a credential cache)
        send_requests(port, 20, keys=keys, header=header)
        send_requests(port, requests, keys=keys, header=header)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    found = _TOTALS.search(out.read_bytes())
    if found is None:
        raise RuntimeError(f"no totals in {out.name}")
    return int(found.group(1))


def log_bytes(workdir: Path, scenario: str, requests: int) -> int | None:
    """Bytes of access log that run wrote, None when the scenario writes none."""
    path = workdir / f"{scenario}.{requests}" / ACCESS_LOG
    return path.stat().st_size if path.exists() else None


def kernel_us_per_write(directory: Path, count: int = 1000, size: int = WRITE_SLICE) -> float:
    """CPU µs of one `size`-byte append write() to a new file in `directory`.

    Thread CPU time (user + system, nearly all system: the loop around the call is a few
    hundred instructions). The file grows to count x size bytes (64 MiB by default, what
    about 3 s of logging at 60,000 requests/s writes) as a real log would, page cache and
    block allocation included; it is deleted afterwards. Far larger files make the kernel
    throttle the writer for writeback, which then dominates (and depends on the disk).
    """
    path = directory / "write-cost.bin"
    data = b"x" * (size - 1) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        before = time.thread_time()
        for _ in range(count):
            os.write(fd, data)
        spent = time.thread_time() - before
    finally:
        os.close(fd)
        path.unlink()
    return spent * 1e6 / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", default="2000,10000", help="two batch sizes")
    parser.add_argument(
        "--scenarios",
        default="plain,empty-chain,sync-noop,async-noop,headers",
        help="bench/e2e/scenarios.py scenarios; plain and each scenario's baseline are added",
    )
    parser.add_argument(
        "--cpu-us",
        type=float,
        required=True,
        help="plain's CPU (user+sys) µs per request from an e2e run",
    )
    parser.add_argument(
        "--user-us",
        type=float,
        required=True,
        help="plain's user µs per request from the same e2e run",
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--name", default="policy-cost", help="result file name prefix")
    parser.add_argument(
        "--keep-callgrind", type=Path, help="copy the callgrind output files into this directory"
    )
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    small, large = (int(n) for n in args.requests.split(","))
    try:
        scenarios = parse_scenarios(args.scenarios)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    redis = RedisServer(free_port())
    per_request: dict[str, float] = {}
    log_per_request: dict[str, float] = {}
    write_us = None
    workdir = Path(tempfile.mkdtemp(prefix="fastgw-policy-cost-"))
    try:
        with contextlib.ExitStack() as stack:
            upstream_port, _pid, _desc = stack.enter_context(
                upstream_server("auto", Pinning(None, None))
            )
            if any(SCENARIOS[name].redis for name in scenarios):
                stack.enter_context(redis_server(redis, Pinning(None, None)))
                if redis.pid is None:
                    parser.error(f"the Redis scenarios need redis-server: {redis.error}")
            for scenario in scenarios:
                low = instructions(scenario, small, upstream_port, workdir, redis.port)
                high = instructions(scenario, large, upstream_port, workdir, redis.port)
                per_request[scenario] = (high - low) / (large - small)
                low_log, high_log = (log_bytes(workdir, scenario, n) for n in (small, large))
                if low_log is not None and high_log is not None:
                    log_per_request[scenario] = (high_log - low_log) / (large - small)
                print(
                    f"[cost] {scenario}: {per_request[scenario]:,.0f} instructions/request",
                    flush=True,
                )
        if log_per_request:
            write_us = kernel_us_per_write(workdir)
            print(f"[cost] one {WRITE_SLICE} B append write: {write_us:.1f} µs CPU", flush=True)
        if args.keep_callgrind:
            args.keep_callgrind.mkdir(parents=True, exist_ok=True)
            for path in workdir.glob("callgrind.*"):
                shutil.copy(path, args.keep_callgrind / path.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ns_per_instruction = args.user_us * 1000 / per_request[PLAIN]

    def kernel_us(scenario: str) -> float:
        """Kernel time of writing the scenario's access log, per request."""
        return log_per_request.get(scenario, 0.0) / WRITE_SLICE * (write_us or 0.0)

    def cpu_us(scenario: str) -> float:
        """The scenario's CPU per request: plain's measured one plus its extra."""
        extra = per_request[scenario] - per_request[PLAIN]
        return args.cpu_us + extra * ns_per_instruction / 1000 + kernel_us(scenario)

    rows = []
    for scenario in scenarios:
        baseline = COST_BASELINES.get(scenario, PLAIN)
        extra = per_request[scenario] - per_request[baseline]
        extra_kernel_us = kernel_us(scenario) - kernel_us(baseline)
        extra_us = extra * ns_per_instruction / 1000 + extra_kernel_us
        share = extra_us / cpu_us(scenario)
        target = POLICY_TARGETS.get(scenario)
        if scenario == PLAIN:
            verdict = "baseline"
        elif target is None:
            # The same code path as plain: what remains is this method's noise (about 1%).
            verdict = "PASS" if abs(extra) < 0.01 * per_request[PLAIN] else f"costs {extra:,.0f}"
            if scenario not in POLICY_TARGETS:
                verdict = "informative"
        else:
            verdict = "PASS" if share <= target else f"MISS by {100 * (share - target):.1f} points"
        rows.append(
            {
                "scenario": scenario,
                "baseline": baseline,
                "instructions_per_request": round(per_request[scenario]),
                "extra_instructions": round(extra),
                "log_bytes_per_request": round(log_per_request.get(scenario, 0.0), 1),
                "extra_kernel_us": round(extra_kernel_us, 3),
                "extra_us": round(extra_us, 3),
                "throughput_cost": round(share, 4),
                "target": target,
                "verdict": verdict,
            }
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = {
        "stamp": stamp,
        "method": "callgrind user-space instructions, (Ir(large) - Ir(small)) / (large - small)"
        "; access log kernel time from timed 64 KiB append writes",
        "requests": [small, large],
        "plain_cpu_us": args.cpu_us,
        "plain_user_us": args.user_us,
        "kernel_us_per_64k_write": None if write_us is None else round(write_us, 2),
        "rows": rows,
    }
    out_dir = Path(args.out)
    (out_dir / f"{args.name}-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Cost in instructions, {stamp}",
        "",
        f"callgrind, batches of {small:,} and {large:,} keep-alive GETs; time per instruction "
        f"from plain's {args.user_us} user µs/request, share of the scenario's CPU µs/request "
        f"(plain's {args.cpu_us} user + kernel from the e2e run, plus the scenario's extra)."
        + (
            ""
            if write_us is None
            else f" Access log kernel time: {write_us:.1f} µs CPU per {WRITE_SLICE:,} B append "
            "write (timed here), times the log's bytes per request."
        ),
        "",
        "| scenario | against | instructions/request | extra | log B/request | extra kernel µs "
        "| extra µs | throughput cost | target | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        target = "-" if row["target"] is None else f"<= {100 * row['target']:.0f}%"
        lines.append(
            f"| {row['scenario']} | {row['baseline']} | {row['instructions_per_request']:,} | "
            f"{row['extra_instructions']:+,} | {row['log_bytes_per_request']:,.0f} | "
            f"{row['extra_kernel_us']:+.3f} | {row['extra_us']:+.3f} | "
            f"{100 * row['throughput_cost']:+.2f}% | {target} | {row['verdict']} |"
        )
    (out_dir / f"{args.name}-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
