"""What a policy chain costs per request, in user-space instructions (callgrind).

The e2e runner measures time, and on a shared 2-core VM the round-to-round spread of rps is
larger than the few percent a policy costs. Instructions are repeatable: fastgw runs under
`valgrind --tool=callgrind` with each scenario's config (bench/e2e.py SCENARIOS), serves two
batches of keep-alive GETs, and the difference of the totals divided by the difference of
request counts is the user-space instructions per request, start-up cancelled out.

The cost of a scenario is its extra instructions per request over plain, converted to time
with plain's measured user µs per request and instructions per request, as a share of the
whole CPU per request (user + kernel) from an e2e run: what the chain takes from throughput
when the proxy is the bottleneck.

    python bench/policy_cost.py [--requests 1000,4000] [--cpu-us 16.0 --user-us 3.0]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import (  # noqa: E402
    PLAIN,
    POLICY_TARGETS,
    Pinning,
    fastgw_config,
    free_port,
    upstream_server,
)

REPO = Path(__file__).resolve().parent.parent
REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: policy-cost\r\n\r\n"
_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def send_requests(port: int, count: int, timeout: float = 30.0) -> None:
    """`count` keep-alive GETs, one at a time, each response read fully (Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        buffer = b""
        for _ in range(count):
            sock.sendall(REQUEST)
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


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
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


def instructions(scenario: str, requests: int, upstream_port: int, workdir: Path) -> int:
    """Total user-space instructions of fastgw serving `requests` GETs (start-up included)."""
    port = free_port()
    config = workdir / f"{scenario}.yaml"
    config.write_text(fastgw_config(port, upstream_port, scenario))
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
        send_requests(port, 20)  # warm-up: the pool's connection, first-call paths
        send_requests(port, requests)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", default="2000,10000", help="two batch sizes")
    parser.add_argument("--scenarios", default="plain,empty-chain,sync-noop,async-noop,headers")
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
    args = parser.parse_args(argv)
    if not shutil.which("valgrind"):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    small, large = (int(n) for n in args.requests.split(","))
    scenarios = [s for s in args.scenarios.split(",") if s]
    if PLAIN not in scenarios:
        scenarios.insert(0, PLAIN)
    per_request: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="fastgw-policy-cost-"))
    try:
        with upstream_server("auto", Pinning(None, None)) as (upstream_port, _pid, _desc):
            for scenario in scenarios:
                low = instructions(scenario, small, upstream_port, workdir)
                high = instructions(scenario, large, upstream_port, workdir)
                per_request[scenario] = (high - low) / (large - small)
                print(
                    f"[cost] {scenario}: {per_request[scenario]:,.0f} instructions/request",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base = per_request[PLAIN]
    ns_per_instruction = args.user_us * 1000 / base
    rows = []
    for scenario in scenarios:
        extra = per_request[scenario] - base
        extra_us = extra * ns_per_instruction / 1000
        share = extra_us / (args.cpu_us + extra_us)
        target = POLICY_TARGETS.get(scenario)
        if scenario == PLAIN:
            verdict = "baseline"
        elif target is None:
            # The same code path as plain: what remains is this method's noise (about 1%).
            verdict = "PASS" if abs(extra) < 0.01 * base else f"costs {extra:,.0f} instr."
            if scenario not in POLICY_TARGETS:
                verdict = "informative"
        else:
            verdict = "PASS" if share <= target else f"MISS by {100 * (share - target):.1f} points"
        rows.append(
            {
                "scenario": scenario,
                "instructions_per_request": round(per_request[scenario]),
                "extra_instructions": round(extra),
                "extra_us": round(extra_us, 3),
                "throughput_cost": round(share, 4),
                "target": target,
                "verdict": verdict,
            }
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = {
        "stamp": stamp,
        "method": "callgrind user-space instructions, (Ir(large) - Ir(small)) / (large - small)",
        "requests": [small, large],
        "plain_cpu_us": args.cpu_us,
        "plain_user_us": args.user_us,
        "rows": rows,
    }
    out_dir = Path(args.out)
    (out_dir / f"policy-cost-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Policy cost in instructions, {stamp}",
        "",
        f"callgrind, batches of {small:,} and {large:,} keep-alive GETs; time per instruction "
        f"from plain's {args.user_us} user µs/request, share of plain's {args.cpu_us} CPU "
        "µs/request (user + kernel) from the e2e run.",
        "",
        "| scenario | instructions/request | extra | extra µs | throughput cost | target "
        "| verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        target = "-" if row["target"] is None else f"<= {100 * row['target']:.0f}%"
        lines.append(
            f"| {row['scenario']} | {row['instructions_per_request']:,} | "
            f"{row['extra_instructions']:+,} | {row['extra_us']:+.3f} | "
            f"{100 * row['throughput_cost']:+.2f}% | {target} | {row['verdict']} |"
        )
    (out_dir / f"policy-cost-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
