"""Smoke test of the end-to-end benchmark runner (bench/e2e/) on real nginx and wrk output."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.e2e import measurement as e2e_measurement
from bench.e2e import peers as e2e_peers
from bench.e2e import processes as e2e_processes
from bench.e2e import report as e2e_report
from bench.e2e import runner as e2e_runner
from bench.e2e import scenarios as e2e_scenarios

needs_nginx_and_wrk = pytest.mark.skipif(
    not (shutil.which("nginx") and shutil.which("wrk") and Path("/proc/self/stat").exists()),
    reason="needs nginx and wrk installed (Debian: apt-get install nginx-light wrk) and /proc",
)


@pytest.mark.parametrize(
    ("text", "expected_us"),
    [("612.00us", 612.0), ("1.25ms", 1250.0), ("2.00s", 2_000_000.0), ("1.00m", 60_000_000.0)],
    ids=["microseconds", "milliseconds", "seconds", "minutes"],
)
def test_wrk_durations_convert_to_microseconds(text: str, expected_us: float) -> None:
    assert e2e_measurement.parse_duration_us(text) == pytest.approx(expected_us)


def test_proc_stat_reader_counts_fields_after_a_command_name_with_spaces() -> None:
    # proc(5) fields 1..17 with a comm that would break a naive split.
    line = "42 (a) b c) S 7 42 42 0 -1 4194560 100 0 0 0 250 30 5 2 20 0 1 0 1 0 0"
    assert e2e_processes.parse_proc_stat(line) == {
        "ppid": 7,
        "pgrp": 42,
        "utime": 250,
        "stime": 30,
        "cutime": 5,
        "cstime": 2,
    }


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_proc_stat_reader_reads_this_process() -> None:
    stat = e2e_processes.read_proc_stat(os.getpid())
    assert stat["ppid"] == os.getppid()
    assert stat["pgrp"] == os.getpgrp()
    user, system = e2e_processes.cpu_seconds(os.getpid())
    assert user > 0 and system >= 0


@needs_nginx_and_wrk
def test_wrk_text_parser_agrees_with_the_lua_summary(tmp_path: Path) -> None:
    pinning = e2e_processes.Pinning(None, None)
    with e2e_peers.upstream_server("nginx", pinning) as (port, _pid, _description):
        plain = subprocess.run(
            ["wrk", "-t1", "-c4", "-d1s", "--latency", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
        script = e2e_measurement.write_lua(tmp_path, None)
        scripted = subprocess.run(
            [
                "wrk",
                "-t1",
                "-c4",
                "-d1s",
                "--latency",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
    from_text = e2e_measurement.parse_wrk_output(plain)
    assert from_text["requests"] > 0
    assert from_text["rps"] > 0
    assert set(from_text["latency_us"]) == {"p50", "p75", "p90", "p99"}
    assert from_text["latency_us"]["p50"] <= from_text["latency_us"]["p99"]
    assert sum(from_text["errors"].values()) == 0
    from_summary = e2e_measurement.parse_wrk_output(scripted)
    assert e2e_measurement.SUMMARY_MARK in scripted
    # The summary line is exact; wrk's own text rounds, so the two agree to within rounding.
    text_part = e2e_measurement.parse_wrk_output(scripted.split(e2e_measurement.SUMMARY_MARK)[0])
    assert from_summary["requests"] == text_part["requests"]
    assert from_summary["rps"] == pytest.approx(text_part["rps"], rel=0.01)
    assert from_summary["latency_us"]["p99"] == pytest.approx(
        text_part["latency_us"]["p99"], rel=0.02, abs=20
    )


@needs_nginx_and_wrk
def test_runner_measures_nginx_and_reports_a_peer_that_cannot_start(tmp_path: Path) -> None:
    broken = e2e_peers.custom_peer("broken=sh -c 'echo engine not built >&2; exit 3'")
    workload = e2e_measurement.Workload(
        duration_s=1,
        warmup_s=0,
        connections=8,
        threads=1,
        rate=1000,
        pinning=e2e_processes.Pinning("1", "0")
        if (os.cpu_count() or 1) > 1
        else e2e_processes.Pinning(None, None),
    )
    report = e2e_runner.run_benchmark(
        ["broken", "nginx"], workload, upstream_kind="nginx", custom=[broken]
    )
    json_path, md_path = e2e_report.write_results(report, tmp_path)

    written = json.loads(json_path.read_text())
    assert set(written) >= {"machine", "workload", "peers", "targets"}
    assert written["machine"]["nproc"] == os.cpu_count()
    assert written["machine"]["versions"]["nginx"]
    assert written["machine"]["versions"]["wrk"]

    assert written["peers"]["broken"]["status"] == "failed"
    assert "status 3" in written["peers"]["broken"]["reason"]
    assert "engine not built" in written["peers"]["broken"]["reason"]

    nginx = written["peers"]["nginx"]
    assert nginx["status"] == "ok", nginx.get("reason")
    assert nginx["processes"] == 2  # master and its one worker are both counted
    run = nginx["max"]
    assert run["requests"] > 0 and run["rps"] > 0
    assert run["error_count"] == 0
    assert 0 < run["latency_us"]["p50"] <= run["latency_us"]["p99"]
    assert run["cpu"]["user_us_per_request"] + run["cpu"]["system_us_per_request"] > 0
    assert nginx["ratio_to_nginx"] == {"rps": 1.0, "cpu_per_request": 1.0, "user_per_request": 1.0}
    fixed = nginx["fixed_rate"]
    assert fixed["offered_rps"] == 1000
    assert 0 < fixed["rps"] <= 1100

    assert [verdict["verdict"] for verdict in written["targets"]["fastgw"]] == ["not measured"] * 3
    markdown = md_path.read_text()
    assert markdown == (tmp_path / "latest.md").read_text()
    assert "| nginx |" in markdown and "| broken | failed:" in markdown
    assert "/tmp/" not in json_path.read_text()


FASTGW_PYTHON = e2e_peers.default_fastgw_python()


@pytest.mark.parametrize(
    "scenario", list(e2e_scenarios.SCENARIOS), ids=list(e2e_scenarios.SCENARIOS)
)
def test_every_scenario_config_passes_fastgw_check(tmp_path: Path, scenario: str) -> None:
    argv = e2e_peers.fastgw_peer_argv(tmp_path, 18080, 18081, FASTGW_PYTHON, scenario, 18082)
    config = Path(argv[-1])
    text = config.read_text()
    assert ("policies:" in text) == (e2e_scenarios.SCENARIOS[scenario].chain is not None)
    assert ("access_log:" in text) == (scenario == "observe-on")
    if scenario == "observe-on":
        assert f'path: "{tmp_path}/access.log"' in text
    # Redis is only reached on the first request, so the check needs no server.
    assert ("redis://127.0.0.1:18082/0" in text) == e2e_scenarios.SCENARIOS[scenario].redis
    # From the repository root, as the runner starts fastgw, so bench.policies imports.
    checked = subprocess.run(
        [FASTGW_PYTHON, "-m", "fastgw", "check", str(config)],
        cwd=e2e_processes.REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().endswith(": ok")


def test_a_policy_reference_that_does_not_exist_fails_the_check(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    text = e2e_scenarios.fastgw_config(18080, 18081, "sync-noop")
    config.write_text(text.replace("NoopSync", "NoSuchPolicy"))
    checked = subprocess.run(
        [FASTGW_PYTHON, "-m", "fastgw", "check", str(config)],
        cwd=e2e_processes.REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 1
    assert "$.routes[0].policies[0]" in checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", ["plain"]),
        ("sync-noop", ["plain", "sync-noop"]),
        ("headers,plain,headers", ["headers", "plain"]),
        (" empty-chain , async-noop ", ["plain", "empty-chain", "async-noop"]),
        ("observe-on", ["plain", "observe-off", "observe-on"]),
        ("observe-on,observe-off", ["plain", "observe-off", "observe-on"]),
        (
            "ratelimit-keys,ratelimit-hot",
            ["plain", "plain-keys", "ratelimit-keys", "ratelimit-hot"],
        ),
    ],
    ids=[
        "plain-alone",
        "plain-added-as-baseline",
        "duplicates-dropped",
        "spaces-ignored",
        "own-baseline-added-first",
        "own-baseline-moved-first",
        "keyed-load-baseline-added",
    ],
)
def test_scenario_option_values(value: str, expected: list[str]) -> None:
    assert e2e_scenarios.parse_scenarios(value) == expected


@pytest.mark.parametrize(
    "value", ["nope", "plain,nope", ","], ids=["unknown", "one-unknown", "empty"]
)
def test_scenario_option_refuses_unknown_names(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        e2e_scenarios.parse_scenarios(value)


def test_fastgw_rows_are_named_per_scenario_only_when_there_are_several() -> None:
    single = e2e_peers.peer_specs(["fastgw", "nginx"], FASTGW_PYTHON, [], ["plain"])
    assert [spec.name for spec in single] == ["fastgw", "nginx"]
    several = e2e_peers.peer_specs(["nginx", "fastgw"], FASTGW_PYTHON, [], ["plain", "sync-noop"])
    assert [spec.name for spec in several] == ["nginx", "fastgw[plain]", "fastgw[sync-noop]"]


def _record(rps: float, user_us: float, sys_us: float, rounds: list[float] | None = None) -> dict:
    record = {
        "status": "ok",
        "max": {
            "rps": rps,
            "cpu": {
                "user_us_per_request": user_us,
                "system_us_per_request": sys_us,
                "total_us_per_request": user_us + sys_us,
                "busy": 0.95,
            },
        },
    }
    if rounds:
        record["rounds"] = [
            {"status": "ok", "rps": value, "user_us_per_request": user_us,
             "system_us_per_request": sys_us}
            for value in rounds
        ]  # fmt: skip
    return record


def test_policy_cost_verdicts_against_plain_and_its_noise() -> None:
    scenarios = ["plain", "empty-chain", "sync-noop", "async-noop", "async-sleep0", "headers"]
    peers = {
        # Two plain rounds 2% apart: the empty chain is held to that spread.
        "fastgw[plain]": _record(50_000, 3.0, 13.0, rounds=[50_000, 49_000]),
        "fastgw[empty-chain]": _record(49_200, 3.0, 13.0),  # 1.6% slower: within 2%
        "fastgw[sync-noop]": _record(46_000, 4.0, 13.0),  # 8% slower: over 5%
        "fastgw[async-noop]": _record(44_000, 5.0, 13.0),  # 12%: within 15%
        "fastgw[async-sleep0]": _record(30_000, 12.0, 14.0),
        "fastgw[headers]": _record(50_500, 3.1, 13.0),  # faster than plain
    }
    cost = e2e_report.policy_cost(peers, scenarios)
    assert cost["noise"]["rps"] == pytest.approx(1_000 / 49_500)
    verdicts = {row["scenario"]: row["verdict"] for row in cost["rows"]}
    assert verdicts == {
        "plain": "baseline",
        "empty-chain": "PASS",
        "sync-noop": "MISS by 3.0 points of plain rps",
        "async-noop": "PASS",
        "async-sleep0": "informative",
        "headers": "PASS",
    }
    sync = next(row for row in cost["rows"] if row["scenario"] == "sync-noop")
    assert sync["rps_drop"] == pytest.approx(0.08)
    assert sync["user_us_delta"] == pytest.approx(1.0)
    assert peers["fastgw[sync-noop]"]["ratio_to_plain"]["rps"] == pytest.approx(0.92)
    markdown = "\n".join(e2e_report.render_policy_cost(cost))
    assert "| fastgw[sync-noop] | 46,000 | 0.92x |" in markdown
    assert "differed by 2.0% in rps" in markdown


def test_observe_on_is_held_to_observe_off_not_plain() -> None:
    scenarios = ["plain", "observe-off", "observe-on"]
    peers = {
        "fastgw[plain]": _record(50_000, 3.0, 13.0),
        "fastgw[observe-off]": _record(52_000, 2.9, 13.0),
        # 3.8% below observe-off (PASS), though 0.2% above plain.
        "fastgw[observe-on]": _record(50_024, 3.2, 13.0),
    }
    rows = {row["scenario"]: row for row in e2e_report.policy_cost(peers, scenarios)["rows"]}
    assert rows["observe-off"]["verdict"] == "informative"
    assert rows["observe-on"]["baseline"] == "observe-off"
    assert rows["observe-on"]["rps_drop"] == pytest.approx(0.038)
    assert rows["observe-on"]["user_us_delta"] == pytest.approx(0.3)
    assert rows["observe-on"]["verdict"] == "PASS"
    peers["fastgw[observe-on]"] = _record(49_000, 3.2, 13.0)  # 5.8% below observe-off
    rows = {row["scenario"]: row for row in e2e_report.policy_cost(peers, scenarios)["rows"]}
    assert rows["observe-on"]["verdict"] == "MISS by 0.8 points of observe-off rps"


def test_a_scenario_writing_files_needs_a_workdir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="observe-on writes files"):
        e2e_scenarios.fastgw_config(18080, 18081, "observe-on")
    assert "metrics: {enabled: false}" in e2e_scenarios.fastgw_config(18080, 18081, "observe-off")


@needs_nginx_and_wrk
def test_observe_on_logs_every_request_to_its_file(tmp_path: Path) -> None:
    with e2e_peers.upstream_server("nginx", e2e_processes.Pinning(None, None)) as (
        upstream_port,
        _pid,
        _desc,
    ):
        port = e2e_processes.free_port()
        argv = e2e_peers.fastgw_peer_argv(
            tmp_path, port, upstream_port, FASTGW_PYTHON, "observe-on"
        )
        process = e2e_processes.Process("fastgw", argv, tmp_path, e2e_processes.REPO)
        try:
            process.wait_ready(port)
            for _ in range(3):
                assert e2e_processes.http_get(port) == (200, e2e_processes.UPSTREAM_BODY)
        finally:
            process.stop()
    lines = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    # The readiness probe's requests come first; the last three are the GETs above.
    assert len(lines) >= 3
    assert [(line["path"], line["status"], line["route"]) for line in lines[-3:]] == [
        (e2e_processes.REQUEST_PATH, 200, "all")
    ] * 3


def test_policy_cost_says_why_a_scenario_has_no_verdict() -> None:
    peers = {
        "fastgw[plain]": _record(50_000, 3.0, 13.0),
        "fastgw[sync-noop]": {"status": "failed", "reason": "exited"},
    }
    cost = e2e_report.policy_cost(peers, ["plain", "sync-noop"])
    assert cost["noise"]["rps"] is None  # one round: noise not measured
    assert cost["rows"][1]["verdict"] == "n/a (fastgw[sync-noop] failed)"
    assert e2e_report.policy_cost(peers, ["plain"]) is None


def test_policy_cost_withholds_verdicts_from_a_disturbed_run() -> None:
    peers = {
        "fastgw[plain]": _record(50_000, 3.0, 13.0, rounds=[50_000, 40_000]),
        "fastgw[empty-chain]": _record(49_900, 3.0, 13.0),
        "fastgw[headers]": _record(49_900, 3.0, 13.0),
    }
    peers["fastgw[headers]"]["max"]["machine_cpu_s"] = {"other": 2.0}
    rows = e2e_report.policy_cost(peers, ["plain", "empty-chain", "headers"])["rows"]
    assert rows[1]["verdict"] == "inconclusive: plain's rounds 22.2% apart (would be PASS)"
    assert rows[2]["verdict"] == "inconclusive: other load 2.00 CPU-s (would be PASS)"


# --- bench/policy_cost.py ----------------------------------------------------------------


def test_policy_cost_client_drives_a_real_gateway(upstream: Any, gateway: Any, http: Any) -> None:
    from bench import policy_cost

    up = upstream("echo")
    gw = gateway(routes=[http.route("all", ["/{*rest}"], "up")], upstreams={"up": up})
    policy_cost.send_requests(gw.port, 50)
    assert len(up.requests) == 50
    assert up.connections == 1


def test_policy_cost_times_a_log_slice_write(tmp_path: Path) -> None:
    from bench import policy_cost

    spent = policy_cost.kernel_us_per_write(tmp_path, count=50)
    assert 0 <= spent < 10_000  # system CPU per 64 KiB append; tick-coarse, so 0 can happen
    assert list(tmp_path.iterdir()) == []


def test_policy_cost_reads_callgrind_totals() -> None:
    from bench import policy_cost

    sample = b"# callgrind format\nevents: Ir\n\nfl=(1) x.c\nfn=(1) f\n1 5\nsummary: 123456\n"
    assert int(policy_cost._TOTALS.search(sample).group(1)) == 123456


# --- rate limiting scenarios -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "fragment"),
    [
        ("ratelimit-redis-exact", "needs Redis: pass a redis_port"),
        ("observe-on", "writes files: pass a workdir"),
    ],
    ids=["redis-port", "workdir"],
)
def test_a_scenario_config_refuses_a_missing_placeholder(scenario: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        e2e_scenarios.fastgw_config(18080, 18081, scenario)


def test_a_redis_scenario_without_a_redis_server_fails_with_the_reason(tmp_path: Path) -> None:
    redis = e2e_peers.RedisServer(18082, error="redis-server not found")
    [spec] = e2e_peers.peer_specs(
        ["fastgw"], FASTGW_PYTHON, [], ["plain", "ratelimit-redis-batched"], redis
    )[1:]
    with pytest.raises(e2e_processes.PeerError, match="needs redis-server: redis-server not found"):
        spec.build(tmp_path, 18080, 18081)


def test_only_keyed_scenarios_send_the_key_header(tmp_path: Path) -> None:
    specs = e2e_peers.peer_specs(
        ["fastgw"], FASTGW_PYTHON, [], e2e_scenarios.parse_scenarios("ratelimit-keys")
    )
    assert {spec.name: spec.keys for spec in specs} == {
        "fastgw[plain]": 0,
        "fastgw[plain-keys]": e2e_scenarios.BENCH_KEYS,
        "fastgw[ratelimit-keys]": e2e_scenarios.BENCH_KEYS,
    }
    assert e2e_measurement.write_lua(tmp_path, None).name == "wrk.lua"
    keyed = e2e_measurement.write_lua(tmp_path, 10, keys=5)
    assert keyed.name == "wrk-rate-keys.lua"
    assert "local bench_keys = 5" in keyed.read_text()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_wrk_keyed_script_cycles_the_key_header(tmp_path: Path, upstream: Any) -> None:
    up = upstream("echo")
    script = e2e_measurement.write_lua(tmp_path, None, keys=5)
    completed = subprocess.run(
        ["wrk", "-t1", "-c1", "-d1s", "-s", str(script), f"{up.url}/bench"],
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    assert e2e_measurement.parse_wrk_output(completed.stdout)["errors"]["status"] == 0
    values = [request.header(e2e_scenarios.BENCH_KEY_HEADER) for request in up.requests]
    assert len(values) > 10
    # wrk calls request() once more at start-up than it sends, so the first may be "2".
    assert set(values) == {"1", "2", "3", "4", "5"}
    assert all(int(b) == int(a) % 5 + 1 for a, b in zip(values, values[1:], strict=False))
    assert all(request.header("host") for request in up.requests)


def test_policy_cost_sender_cycles_the_key_header(upstream: Any) -> None:
    from bench import policy_cost

    up = upstream("echo")
    policy_cost.send_requests(up.port, 7, keys=3)
    values = [request.header(e2e_scenarios.BENCH_KEY_HEADER) for request in up.requests]
    assert values == ["1", "2", "3", "1", "2", "3", "1"]


def test_redis_cpu_is_reported_for_redis_scenarios_only() -> None:
    plain = _record(50_000, 3.0, 13.0)
    redis = _record(30_000, 12.0, 14.0)
    for record, redis_us in ((plain, 0.0), (redis, 2.5)):
        record["max"]["cpu"]["redis_us_per_request"] = redis_us
    lines = e2e_report.render_redis_cpu(
        {"fastgw[plain]": plain, "fastgw[ratelimit-redis-batched]": redis}
    )
    assert lines[-1] == "| fastgw[ratelimit-redis-batched] | 30,000 | 26.00 | 2.50 | 28.50 |"
    assert not any("fastgw[plain]" in line for line in lines)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_redis_server_runs_for_the_block_and_stops(tmp_path: Path) -> None:
    redis = e2e_peers.RedisServer(e2e_processes.free_port())
    with e2e_peers.redis_server(redis, e2e_processes.Pinning(None, None)):
        assert redis.pid is not None and redis.error is None
        pid = redis.pid
        assert e2e_peers.redis_ping(redis.port)
    assert redis.pid is None
    assert not e2e_peers.redis_ping(redis.port)
    assert not Path(f"/proc/{pid}").exists()


def test_fallback_upstream_starts_and_answers_keep_alive_and_close() -> None:
    # The runner falls back to bench/upstream.py where nginx is absent; its readiness probe
    # sends `Connection: close` and reads to EOF, on uvloop's transports.
    pinning = e2e_processes.Pinning(None, None)
    with e2e_peers.upstream_server("python", pinning) as (port, pid, description):
        assert pid > 0 and "bench/upstream.py" in description
        assert e2e_processes.http_get(port) == (200, b"ok")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while data.count(b"ok") < 2:
                chunk = sock.recv(65536)
                assert chunk, f"closed early after {data!r}"
                data += chunk
            assert data.count(b"HTTP/1.1 200 OK") == 2
