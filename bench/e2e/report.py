"""The report: the machine, ratios to nginx, target and policy-cost verdicts, and the
Markdown rendering of it all (the JSON is the report dict as is)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.e2e.peers import RedisServer
from bench.e2e.processes import CLOCK_TICKS, REPO, REQUEST_PATH, Pinning
from bench.e2e.scenarios import (
    BENCH_KEY_HEADER,
    COST_BASELINES,
    PLAIN,
    POLICY_TARGET_LABELS,
    POLICY_TARGETS,
    SCENARIOS,
    fastgw_peer_name,
)

BASELINE = "nginx"

# Performance targets (DESIGN.md), checked for fastgw against nginx from the same run.
TARGET_RPS_RATIO = 1.0
TARGET_CPU_RATIO = 1.0
TARGET_USER_US = 4.5


# The noise floor used when plain's rounds happen to agree better than a shared box allows.
MIN_NOISE_SHARE = 0.01
# A policy-cost verdict needs a quiet run: other load (CPU-s) on plain's or the scenario's
# round at most this, and for the empty chain plain's rounds at most MAX_NOISE_SHARE apart.
# Otherwise the verdict is "inconclusive" and says what it would have been.
MAX_OTHER_LOAD_S = 0.5
MAX_NOISE_SHARE = 0.05


def redis_description(redis: RedisServer, pinning: Pinning) -> str:
    if redis.pid is None:
        return f"failed: {redis.error}"
    version = command_version(["redis-server", "--version"], r"v=(\S+)")
    where = f" on CPU {pinning.load_cpu} (with wrk and the upstream)" if pinning.enabled else ""
    return f"redis-server {version}, no persistence{where}"


def command_version(argv: list[str], pattern: str) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(pattern, completed.stdout + completed.stderr)
    return match.group(1) if match else None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(fastgw_python: str) -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "clock_ticks_per_s": CLOCK_TICKS,
        "versions": {
            "nginx": command_version(["nginx", "-v"], r"nginx/(\S+)"),
            "haproxy": command_version(["haproxy", "-v"], r"version (\S+)"),
            "wrk": command_version(["wrk", "-v"], r"wrk (\S+)"),
            "python": platform.python_version(),
            "fastgw": command_version(
                [fastgw_python, "-c", "import fastgw; print(fastgw.__version__)"],
                r"^(\S+)\s*$",
            ),
            "fastgw_commit": command_version(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], r"^(\w+)"
            ),
        },
    }


def add_ratios(peers: dict[str, dict[str, Any]]) -> None:
    """Each measured peer's rps and CPU per request relative to nginx from the same run."""
    base = peers.get(BASELINE, {})
    if base.get("status") != "ok":
        return
    for record in peers.values():
        if record.get("status") != "ok":
            continue
        run, base_run = record["max"], base["max"]
        record["ratio_to_nginx"] = {
            "rps": run["rps"] / base_run["rps"],
            "cpu_per_request": run["cpu"]["total_us_per_request"]
            / base_run["cpu"]["total_us_per_request"],
            "user_per_request": run["cpu"]["user_us_per_request"]
            / base_run["cpu"]["user_us_per_request"],
        }


def target_verdicts(peers: dict[str, dict[str, Any]], name: str) -> list[dict[str, str]]:
    """PASS/MISS for fastgw's performance targets; MISS says by how much."""
    labels = [
        f"small keep-alive GET rps >= {TARGET_RPS_RATIO:.1f}x nginx",
        f"CPU (user+sys) per request <= {TARGET_CPU_RATIO:.1f}x nginx",
        f"user-space CPU <= {TARGET_USER_US} µs per request",
    ]
    record = peers.get(name)
    if record is None:
        return [{"target": label, "value": "-", "verdict": "not measured"} for label in labels]
    if record["status"] != "ok":
        reason = f"n/a ({name} failed)"
        return [{"target": label, "value": "-", "verdict": reason} for label in labels]
    user = record["max"]["cpu"]["user_us_per_request"]
    verdicts = []
    ratios = record.get("ratio_to_nginx")
    if ratios is None:
        for label in labels[:2]:
            verdicts.append({"target": label, "value": "-", "verdict": "n/a (no nginx result)"})
    else:
        rps, cpu = ratios["rps"], ratios["cpu_per_request"]
        verdicts.append(
            {
                "target": labels[0],
                "value": f"{rps:.2f}x",
                "verdict": "PASS"
                if rps >= TARGET_RPS_RATIO
                else f"MISS by {(TARGET_RPS_RATIO - rps) * 100:.0f}% of nginx rps",
            }
        )
        verdicts.append(
            {
                "target": labels[1],
                "value": f"{cpu:.2f}x",
                "verdict": "PASS"
                if cpu <= TARGET_CPU_RATIO
                else f"MISS by {(cpu - TARGET_CPU_RATIO) * 100:.0f}% more CPU than nginx",
            }
        )
    verdicts.append(
        {
            "target": labels[2],
            "value": f"{user:.2f} µs",
            "verdict": "PASS"
            if user <= TARGET_USER_US
            else f"MISS by {user - TARGET_USER_US:.2f} µs",
        }
    )
    return verdicts


def plain_noise(record: dict[str, Any] | None) -> dict[str, Any]:
    """How far fastgw[plain]'s rounds lie apart: the yardstick for "no measurable cost".

    ``rps`` and ``cpu`` are (max - min) / mean over its successful rounds; None with fewer
    than two rounds. ``threshold`` is the larger of the rps spread and MIN_NOISE_SHARE.
    """
    rounds = [r for r in (record or {}).get("rounds", []) if r["status"] == "ok"]
    if len(rounds) < 2:
        return {"rounds": len(rounds), "rps": None, "cpu": None, "threshold": MIN_NOISE_SHARE}
    rps = [r["rps"] for r in rounds]
    cpu = [r["user_us_per_request"] + r["system_us_per_request"] for r in rounds]

    def spread(values: list[float]) -> float:
        return (max(values) - min(values)) / (sum(values) / len(values))

    return {
        "rounds": len(rounds),
        "rps": spread(rps),
        "cpu": spread(cpu),
        "threshold": max(spread(rps), MIN_NOISE_SHARE),
    }


def policy_cost(peers: dict[str, dict[str, Any]], scenarios: list[str]) -> dict[str, Any] | None:
    """Each fastgw scenario against fastgw[plain] of the same run (or against its
    COST_BASELINES entry), with its target's verdict.

    The drop is the baseline's rps minus the scenario's, as a share of the baseline's
    (negative: faster). Sets ``ratio_to_plain`` (to that baseline) on every measured fastgw
    scenario record. None with one scenario.
    """
    if len(scenarios) < 2:
        return None
    noise = plain_noise(peers.get(fastgw_peer_name(PLAIN, scenarios), {}))
    rows = []
    for scenario in scenarios:
        name = fastgw_peer_name(scenario, scenarios)
        record = peers.get(name, {})
        baseline = COST_BASELINES.get(scenario, PLAIN)
        base_name = fastgw_peer_name(baseline, scenarios)
        plain = peers.get(base_name, {})
        row: dict[str, Any] = {
            "scenario": scenario,
            "peer": name,
            "baseline": baseline,
            "target": POLICY_TARGET_LABELS.get(scenario, "baseline"),
        }
        rows.append(row)
        if record.get("status") != "ok" or plain.get("status") != "ok":
            failed = name if record.get("status") != "ok" else base_name
            row["verdict"] = f"n/a ({failed} failed)"
            continue
        run, base = record["max"], plain["max"]
        ratios = {
            "rps": run["rps"] / base["rps"],
            "cpu_per_request": run["cpu"]["total_us_per_request"]
            / base["cpu"]["total_us_per_request"],
            "user_per_request": run["cpu"]["user_us_per_request"]
            / base["cpu"]["user_us_per_request"],
        }
        record["ratio_to_plain"] = ratios
        row.update(
            rps=run["rps"],
            cpu_us_per_request=run["cpu"]["total_us_per_request"],
            user_us_per_request=run["cpu"]["user_us_per_request"],
            busy=run["cpu"]["busy"],
            other_load_cpu_s=run.get("machine_cpu_s", {}).get("other"),
            ratio_to_plain=ratios,
            ratio_to_nginx=record.get("ratio_to_nginx"),
            rps_drop=1.0 - ratios["rps"],
            # What the drop would be with the proxy the bottleneck: rps = 1 / CPU per request.
            cpu_drop=1.0 - 1.0 / ratios["cpu_per_request"],
            user_us_delta=run["cpu"]["user_us_per_request"] - base["cpu"]["user_us_per_request"],
        )
        if scenario == PLAIN:
            row["verdict"] = "baseline"
            continue
        if scenario not in POLICY_TARGETS:
            row["verdict"] = "informative"
            continue
        limit = POLICY_TARGETS[scenario]
        if limit is None:
            limit = noise["threshold"]
        row["limit"] = limit
        drop = row["rps_drop"]
        verdict = (
            "PASS"
            if drop <= limit
            else f"MISS by {(drop - limit) * 100:.1f} points of {baseline} rps"
        )
        disturbed = max(
            run.get("machine_cpu_s", {}).get("other", 0.0),
            base.get("machine_cpu_s", {}).get("other", 0.0),
        )
        if disturbed > MAX_OTHER_LOAD_S:
            verdict = f"inconclusive: other load {disturbed:.2f} CPU-s (would be {verdict})"
        elif POLICY_TARGETS[scenario] is None and limit > MAX_NOISE_SHARE:
            verdict = f"inconclusive: plain's rounds {limit:.1%} apart (would be {verdict})"
        row["verdict"] = verdict
    return {"noise": noise, "rows": rows}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


def render_policy_cost(cost: dict[str, Any]) -> list[str]:
    noise = cost["noise"]
    if noise["rps"] is None:
        noise_text = (
            f"fastgw[plain] ran {noise['rounds']} round(s), so its run-to-run noise was not "
            f"measured; the empty chain is held to {noise['threshold']:.1%}."
        )
    else:
        noise_text = (
            f"Noise: fastgw[plain]'s {noise['rounds']} rounds differed by {noise['rps']:.1%} in "
            f"rps and {noise['cpu']:.1%} in CPU µs/req; the empty chain is held to "
            f"{noise['threshold']:.1%} (that rps spread, at least {MIN_NOISE_SHARE:.0%})."
        )
    lines = [
        "## Policy cost (fastgw scenarios against fastgw[plain] in this run)",
        "",
        "Each scenario changes the policy chain of fastgw's one route or top-level settings "
        "(metrics, access log). rps drop is plain's rps minus the scenario's, as a share of "
        'plain\'s (observe-on: against observe-off instead, and the columns "vs plain" '
        "mean vs observe-off); with the proxy near 100% "
        "busy it matches the drop implied by CPU µs/req (1 - plain's CPU/req over the "
        "scenario's), which is shown too because on a shared box it is the steadier number; "
        "the verdict is on rps. " + noise_text,
        "",
        "| scenario | rps | rps vs plain | rps vs nginx | CPU µs/req | CPU vs plain "
        "| CPU vs nginx | user µs/req | Δ user µs/req | proxy CPU busy | rps drop "
        "| drop from CPU | target | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in cost["rows"]:
        if "rps" not in row:
            lines.append(
                f"| {row['peer']} |" + " - |" * 11 + f" {row['target']} | {row['verdict']} |"
            )
            continue
        to_plain, to_nginx = row["ratio_to_plain"], row.get("ratio_to_nginx") or {}
        lines.append(
            f"| {row['peer']} | {_fmt(row['rps'], 0)} | {_fmt(to_plain['rps'])}x "
            f"| {_fmt(to_nginx.get('rps'))}x | {_fmt(row['cpu_us_per_request'])} "
            f"| {_fmt(to_plain['cpu_per_request'])}x | {_fmt(to_nginx.get('cpu_per_request'))}x "
            f"| {_fmt(row['user_us_per_request'])} | {row['user_us_delta']:+.2f} "
            f"| {row['busy']:.0%} | {_pct(row['rps_drop'])} | {_pct(row['cpu_drop'])} "
            f"| {row['target']} | {row['verdict']} |"
        )
    return lines


def render_redis_cpu(peers: dict[str, dict[str, Any]]) -> list[str]:
    """The Redis scenarios' CPU: the proxy's own and redis-server's, per request."""
    rows = [
        (name, record["max"])
        for name, record in peers.items()
        if record.get("status") == "ok"
        and "redis_us_per_request" in record["max"]["cpu"]
        and name.startswith("fastgw[ratelimit-redis")
    ]
    if not rows:
        return []
    lines = [
        "",
        "## Redis scenarios: CPU on both sides",
        "",
        "redis-server runs on the load CPU; its CPU per request is not in the proxy's numbers.",
        "",
        "| peer | rps | proxy CPU µs/req | redis-server CPU µs/req | together µs/req |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in rows:
        proxy, redis = run["cpu"]["total_us_per_request"], run["cpu"]["redis_us_per_request"]
        lines.append(
            f"| {name} | {_fmt(run['rps'], 0)} | {_fmt(proxy)} | {_fmt(redis)} "
            f"| {_fmt(proxy + redis)} |"
        )
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    machine, workload, peers = report["machine"], report["workload"], report["peers"]
    versions = machine["versions"]
    scenarios = workload.get("scenarios") or [PLAIN]
    plain_name = fastgw_peer_name(PLAIN, scenarios)
    scenario_lines = (
        [
            "- fastgw scenarios (`--scenario`, the route's policy chain or top-level settings "
            "differ): " + ", ".join(f"`{name}`" for name in scenarios)
        ]
        if len(scenarios) > 1
        else []
    )
    keyed = [name for name in scenarios if name in SCENARIOS and SCENARIOS[name].keys]
    if keyed:
        scenario_lines.append(
            "- Keyed load: for "
            + ", ".join(f"`{name}`" for name in keyed)
            + f" every request carries `{BENCH_KEY_HEADER}`, cycling through "
            + f"{SCENARIOS[keyed[0]].keys:,} values"
        )
    if workload.get("redis"):
        scenario_lines.append(f"- Redis (for the scenarios that need it): {workload['redis']}")
    lines = [
        f"# fastgw end-to-end benchmark, {report['started_at']}",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, Linux {machine['kernel']}, "
        f"load average at start {' '.join(machine['loadavg_at_start'])}",
        f"- Versions: nginx {versions['nginx']}, HAProxy {versions['haproxy']}, "
        f"wrk {versions['wrk']}, Python {versions['python']}, fastgw {versions['fastgw']} "
        f"(commit {versions['fastgw_commit']})",
        f"- Workload: `GET {REQUEST_PATH}` keep-alive, {workload['connections']} connections, "
        f"{workload['threads']} wrk thread(s), {workload['duration_s']:g} s per peer after a "
        f"{workload['warmup_s']:g} s warm-up; upstream: {workload['upstream']}",
        f"- Rounds: {workload['rounds']} (each peer shows its round with the least other load; "
        "all rounds are in the JSON)"
        if workload["rounds"] > 1
        else "- Rounds: 1",
        f"- Pinning: {workload['pinning']}",
        *scenario_lines,
        "",
        "## Maximum throughput",
        "",
        "| peer | rps | rps vs nginx | user µs/req | sys µs/req | CPU µs/req "
        "| CPU vs nginx | proxy CPU busy | p50 µs | p99 µs | errors | other load CPU-s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, record in peers.items():
        if record["status"] != "ok":
            reason = _cell(record.get("reason", "?"))
            lines.append(f"| {name} | failed: {reason} |" + " |" * 10)
            continue
        run, ratios = record["max"], record.get("ratio_to_nginx", {})
        cpu, latency = run["cpu"], run["latency_us"]
        lines.append(
            f"| {name} | {_fmt(run['rps'], 0)} | {_fmt(ratios.get('rps'))}x "
            f"| {_fmt(cpu['user_us_per_request'])} | {_fmt(cpu['system_us_per_request'])} "
            f"| {_fmt(cpu['total_us_per_request'])} | {_fmt(ratios.get('cpu_per_request'))}x "
            f"| {cpu['busy']:.0%} "
            f"| {_fmt(latency.get('p50'), 0)} | {_fmt(latency.get('p99'), 0)} "
            f"| {run['error_count']} | {run['machine_cpu_s']['other']:.2f} |"
        )
    lines += ["", "## Fixed offered rate", ""]
    if not workload["rate"]:
        lines.append("Not run (pass `--rate N`).")
    else:
        lines += [
            f"Offered about {workload['rate']:,} requests/s with wrk's Lua `delay()` hook "
            "(wrk has no rate mode; wrk2 would correct coordinated omission, this does not: "
            "latency is measured from each request's send).",
            "",
            "| peer | offered rps | achieved rps | connections | CPU µs/req | p50 µs | p99 µs "
            "| p99.9 µs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, record in peers.items():
            fixed = record.get("fixed_rate")
            if not fixed:
                lines.append(f"| {name} | failed |" + " |" * 6)
                continue
            latency = fixed["latency_us"]
            lines.append(
                f"| {name} | {fixed['offered_rps']:,} | {_fmt(fixed['rps'], 0)} "
                f"| {fixed['connections']} | {_fmt(fixed['cpu']['total_us_per_request'])} "
                f"| {_fmt(latency.get('p50'), 0)} | {_fmt(latency.get('p99'), 0)} "
                f"| {_fmt(latency.get('p99.9'), 0)} |"
            )
    cost = report.get("policy_cost")
    if cost:
        lines += ["", *render_policy_cost(cost)]
    lines += render_redis_cpu(peers)
    lines += [
        "",
        f"## Targets ({plain_name}, against nginx in this run)",
        "",
        "| target | fastgw | verdict |",
        "|---|---:|---|",
    ]
    for verdict in report["targets"]["fastgw"]:
        lines.append(f"| {verdict['target']} | {verdict['value']} | {verdict['verdict']} |")
    lines += [
        "",
        "CPU µs/req is the proxy's own user and system CPU time (all its processes and threads, "
        "from `/proc/PID/stat`) over the wrk run, divided by the requests wrk completed. "
        "Proxy CPU busy is that time over the run's wall time: near 100% the proxy was the "
        "bottleneck; well below, something else set the pace (the load side, other tenants) "
        "and rps says little. "
        "Other load is CPU time the machine spent on anything but proxy, wrk and upstream "
        "during the run (other tenants): more than a few tenths of a second means the run "
        "was disturbed and should be repeated. "
        "Ratios compare peers within this run only.",
        "",
    ]
    return "\n".join(lines)


def write_results(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report["stamp"]
    json_path = out_dir / f"e2e-{stamp}.json"
    md_path = out_dir / f"e2e-{stamp}.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    markdown = render_markdown(report)
    md_path.write_text(markdown)
    (out_dir / "latest.md").write_text(markdown)
    return json_path, md_path
