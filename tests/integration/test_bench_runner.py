"""Smoke test of the end-to-end benchmark runner (bench/e2e.py) on real nginx and wrk output."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

E2E_PATH = Path(__file__).resolve().parents[2] / "bench" / "e2e.py"


def _load_runner():
    spec = importlib.util.spec_from_file_location("bench_e2e", E2E_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


e2e = _load_runner()

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
    assert e2e.parse_duration_us(text) == pytest.approx(expected_us)


def test_proc_stat_reader_counts_fields_after_a_command_name_with_spaces() -> None:
    # proc(5) fields 1..17 with a comm that would break a naive split.
    line = "42 (a) b c) S 7 42 42 0 -1 4194560 100 0 0 0 250 30 5 2 20 0 1 0 1 0 0"
    assert e2e.parse_proc_stat(line) == {
        "ppid": 7,
        "pgrp": 42,
        "utime": 250,
        "stime": 30,
        "cutime": 5,
        "cstime": 2,
    }


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_proc_stat_reader_reads_this_process() -> None:
    stat = e2e.read_proc_stat(os.getpid())
    assert stat["ppid"] == os.getppid()
    assert stat["pgrp"] == os.getpgrp()
    user, system = e2e.cpu_seconds(os.getpid())
    assert user > 0 and system >= 0


@needs_nginx_and_wrk
def test_wrk_text_parser_agrees_with_the_lua_summary(tmp_path: Path) -> None:
    pinning = e2e.Pinning(None, None)
    with e2e.upstream_server("nginx", pinning) as (port, _pid, _description):
        plain = subprocess.run(
            ["wrk", "-t1", "-c4", "-d1s", "--latency", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
        script = e2e.write_lua(tmp_path, None)
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
    from_text = e2e.parse_wrk_output(plain)
    assert from_text["requests"] > 0
    assert from_text["rps"] > 0
    assert set(from_text["latency_us"]) == {"p50", "p75", "p90", "p99"}
    assert from_text["latency_us"]["p50"] <= from_text["latency_us"]["p99"]
    assert sum(from_text["errors"].values()) == 0
    from_summary = e2e.parse_wrk_output(scripted)
    assert e2e.SUMMARY_MARK in scripted
    # The summary line is exact; wrk's own text rounds, so the two agree to within rounding.
    text_part = e2e.parse_wrk_output(scripted.split(e2e.SUMMARY_MARK)[0])
    assert from_summary["requests"] == text_part["requests"]
    assert from_summary["rps"] == pytest.approx(text_part["rps"], rel=0.01)
    assert from_summary["latency_us"]["p99"] == pytest.approx(
        text_part["latency_us"]["p99"], rel=0.02, abs=20
    )


@needs_nginx_and_wrk
def test_runner_measures_nginx_and_reports_a_peer_that_cannot_start(tmp_path: Path) -> None:
    broken = e2e.custom_peer("broken=sh -c 'echo engine not built >&2; exit 3'")
    workload = e2e.Workload(
        duration_s=1,
        warmup_s=0,
        connections=8,
        threads=1,
        rate=1000,
        pinning=e2e.Pinning("1", "0") if (os.cpu_count() or 1) > 1 else e2e.Pinning(None, None),
    )
    report = e2e.run_benchmark(
        ["broken", "nginx"], workload, upstream_kind="nginx", custom=[broken]
    )
    json_path, md_path = e2e.write_results(report, tmp_path)

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
