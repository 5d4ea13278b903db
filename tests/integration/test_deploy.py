"""examples/deploy/: the config the unit and the image install, the systemd unit, the
logrotate snippet and the Dockerfile, checked as far as this machine allows.

There is no systemd as PID 1 and no Docker engine here: the unit is checked with
`systemd-analyze verify` and by running its guard commands, the Dockerfile by what it copies
and how it starts. The logrotate snippet runs for real against a running gateway when
logrotate is installed (skipped otherwise).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
UNIT = DEPLOY / "fastgw.service"
INSTALLED_BINARY = "/opt/fastgw/bin/fastgw"
INSTALLED_CONFIG = "/etc/fastgw/gateway.yaml"


def fastgw_check(file: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", "check", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def unit_settings(name: str) -> list[str]:
    """Every value of `name=` in the unit's [Service] section, in order."""
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{name}=")
    ]


@pytest.mark.parametrize("env", [{}, {"FASTGW_ACCESS_LOG": "stdout"}], ids=["unit", "image"])
def test_deploy_config_passes_check(env: dict[str, str]) -> None:
    result = fastgw_check(DEPLOY / "gateway.yaml", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{DEPLOY / 'gateway.yaml'}: ok\n"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    binary = Path(sys.executable).parent / "fastgw"
    if not binary.exists():
        pytest.skip(f"no fastgw console script next to {sys.executable}")
    # verify checks that each command exists: point them at the fastgw installed here.
    unit = tmp_path / "fastgw.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # A setting it does not understand is only a warning, with exit status 0: none allowed.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_guards_start_and_reload_with_check(tmp_path: Path) -> None:
    """The unit's check commands, run as they are: the example config passes, a broken one
    fails, and on reload the check runs before the SIGHUP (systemd stops at the first
    failing ExecReload=)."""
    reload = unit_settings("ExecReload")
    assert reload == [f"{INSTALLED_BINARY} check {INSTALLED_CONFIG}", "/bin/kill -HUP $MAINPID"]
    assert unit_settings("ExecStartPre") == [reload[0]]
    assert unit_settings("ExecStart") == [f"{INSTALLED_BINARY} run -c {INSTALLED_CONFIG}"]
    broken = tmp_path / "gateway.yaml"
    broken.write_text(
        (DEPLOY / "gateway.yaml").read_text().replace("upstream: backend", "upstream: nowhere")
    )
    for config, code in ((DEPLOY / "gateway.yaml", 0), (broken, 1)):
        argv = shlex.split(reload[0].replace(INSTALLED_CONFIG, str(config)))
        assert argv[:2] == [INSTALLED_BINARY, "check"]
        result = subprocess.run(
            [sys.executable, "-m", "fastgw", *argv[1:]], capture_output=True, text=True
        )
        assert result.returncode == code, result.stdout + result.stderr
    assert f"{broken}: $.routes[0].upstream" in result.stderr


def test_unit_stop_timeout_exceeds_the_drain() -> None:
    """systemd's SIGKILL must come after the supervisor's own drain + kill grace."""
    from fastgw.config import load_config
    from fastgw.runtime.supervisor import KILL_GRACE

    drain = load_config(DEPLOY / "gateway.yaml").timeouts.drain
    (stop,) = unit_settings("TimeoutStopSec")
    assert float(stop.removesuffix("s")) > drain + KILL_GRACE
    assert unit_settings("KillSignal") == ["SIGTERM"]
    assert unit_settings("KillMode") == ["mixed"]


def test_dockerfile_copies_what_exists_and_execs_fastgw() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    assert sources, "no COPY found"
    for source in sources:
        assert (ROOT / source).exists(), source
    assert "COPY examples/deploy/gateway.yaml /etc/fastgw/gateway.yaml" in text
    assert f"RUN {INSTALLED_BINARY} check {INSTALLED_CONFIG}" in text
    (cmd,) = [line for line in text.splitlines() if line.startswith("CMD ")]
    # Exec form (a JSON array): fastgw itself is PID 1 and receives SIGTERM, not a shell.
    assert json.loads(cmd[4:]) == [INSTALLED_BINARY, "run", "-c", INSTALLED_CONFIG]
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert re.search(r"^EXPOSE 8080$", text, re.M)


def test_dockerfile_build_stage_copies_what_pyproject_needs() -> None:
    """`pip install .` in the build stage reads pyproject.toml, setup.py, the readme and the
    license files it names, and the package: a missing one is a warning or a broken build."""
    text = (DEPLOY / "Dockerfile").read_text()
    build_stage = text.split("\nFROM ")[1]  # from the first FROM to the second
    copied: set[str] = set()
    for line in build_stage.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(source.rstrip("/") for source in line.split()[1:-1])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {"pyproject.toml", "setup.py", "fastgw"}
    readme = project.get("readme")
    if readme is not None:
        needed.add(readme if isinstance(readme, str) else readme["file"])
    needed.update(project.get("license-files", []))
    assert (ROOT / "setup.py").exists()
    assert {"README.md", "LICENSE"} <= needed  # what pyproject names today
    missing = sorted(needed - copied)
    assert not missing, f"the build stage does not COPY {missing}"
    assert re.search(r"^RUN /opt/fastgw/bin/pip install .*\.$", build_stage, re.M)


def read_lines(path: Path, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, f"{len(lines)} of {count} lines in {path}"
        time.sleep(0.02)


def test_logrotate_snippet_rotates_a_running_gateway(
    gateway: Any, upstream: Any, tmp_path: Path
) -> None:
    """logrotate with the snippet as shipped (its path and its signal pointed at this
    gateway): the file moves, SIGUSR1 has the gateway write a new one, no line is lost, and
    the next rotation compresses the one before."""
    logrotate = shutil.which("logrotate") or (
        "/usr/sbin/logrotate" if Path("/usr/sbin/logrotate").exists() else None
    )
    if logrotate is None:
        pytest.skip("logrotate is not installed (Debian: apt-get install logrotate)")
    log = tmp_path / "access.log"
    gw = gateway(
        routes=[gateway.route("items", ["/items/{id}"], "be")],
        upstreams={"be": upstream("echo")},
        access_log={"path": str(log), "flush_interval": "50ms", "fields": ["path"]},
    )
    snippet = (DEPLOY / "logrotate.conf").read_text()
    command = "systemctl kill --signal=SIGUSR1 --kill-whom=main fastgw.service"
    assert snippet.count("/var/log/fastgw/access.log {") == 1 and command in snippet
    config = tmp_path / "logrotate.conf"
    config.write_text(
        snippet.replace("/var/log/fastgw/access.log", str(log)).replace(
            command, f"kill -USR1 {gw.pid}"
        )
    )
    state = tmp_path / "logrotate.state"

    def rotate(*flags: str) -> str:
        result = subprocess.run(
            [logrotate, *flags, "--state", str(state), str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "error" not in result.stderr.lower(), result.stderr
        return result.stdout + result.stderr

    def send(first: int, count: int) -> None:
        for i in range(first, first + count):
            assert gw.request("GET", f"/items/{i}").status == 200

    send(0, 3)
    assert read_lines(log, 3) == [{"path": f"/items/{i}"} for i in range(3)]
    assert "rotating pattern" in rotate("--debug")  # a dry run: nothing moves
    assert not (tmp_path / "access.log.1").exists()

    rotate("--force")
    assert read_lines(tmp_path / "access.log.1", 3) == [{"path": f"/items/{i}"} for i in range(3)]
    send(3, 2)
    assert read_lines(log, 2) == [{"path": "/items/3"}, {"path": "/items/4"}]

    rotate("--force")
    with gzip.open(tmp_path / "access.log.2.gz", "rt") as first:
        assert [json.loads(line)["path"] for line in first] == [f"/items/{i}" for i in range(3)]
    assert read_lines(tmp_path / "access.log.1", 2) == [{"path": "/items/3"}, {"path": "/items/4"}]
    send(5, 1)
    assert read_lines(log, 1) == [{"path": "/items/5"}]
