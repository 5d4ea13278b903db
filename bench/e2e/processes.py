"""The processes a run starts (proxies, upstream, redis-server): start in their own session,
wait until they answer, stop with every child; their CPU time from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "bench"


LOOPBACK = "127.0.0.1"
REQUEST_PATH = "/bench"
UPSTREAM_BODY = b"ok"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 15.0
STOP_GRACE_S = 3.0


class PeerError(Exception):
    """A peer could not be started or stopped working; the message is the reason."""


def parse_proc_stat(text: str) -> dict[str, int]:
    """Fields of one ``/proc/PID/stat`` line: ppid, pgrp and CPU times in clock ticks.

    The command name (field 2) is parenthesised and may hold spaces or ``)``, so the
    numbered fields are counted from the last ``)`` (proc(5)).
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return {
        "ppid": int(rest[1]),
        "pgrp": int(rest[2]),
        "utime": int(rest[11]),
        "stime": int(rest[12]),
        "cutime": int(rest[13]),
        "cstime": int(rest[14]),
    }


def read_proc_stat(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat_file:
        return parse_proc_stat(stat_file.read())


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its live descendants (e.g. the nginx master and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = read_proc_stat(int(entry))["ppid"]
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(root_pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process tree.

    ``/proc/PID/stat`` already sums all threads of a process; reaped children that exited are
    included through ``cutime``/``cstime``. Resolution is one clock tick (usually 10 ms).
    """
    user = system = 0
    for pid in process_tree(root_pid):
        try:
            stat = read_proc_stat(pid)
        except OSError:
            continue
        user += stat["utime"] + stat["cutime"]
        system += stat["stime"] + stat["cstime"]
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str = REQUEST_PATH, timeout: float = 2.0) -> tuple[int, bytes]:
    """One ``Connection: close`` GET on loopback; returns (status, body)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(request.encode("ascii"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"not an HTTP response: {head[:80]!r}")
    return int(status_line[1]), body


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    # Traceback caret lines (``^^^^``) only point at columns; the reason reads better without.
    kept = [line for line in text.splitlines() if line.strip(" ^~")]
    return " | ".join(kept[-lines:])


class Pinning:
    """Which CPUs the proxy under test and the load (wrk + upstream) run on."""

    def __init__(self, proxy_cpu: str | None, load_cpu: str | None) -> None:
        self.enabled = bool(proxy_cpu and load_cpu and shutil.which("taskset"))
        self.proxy_cpu = proxy_cpu if self.enabled else None
        self.load_cpu = load_cpu if self.enabled else None

    def wrap(self, argv: list[str], cpu: str | None) -> list[str]:
        return ["taskset", "-c", cpu, *argv] if cpu else argv


class Process:
    """A started command in its own session, so stopping it reaches all its children."""

    def __init__(self, name: str, argv: list[str], workdir: Path, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def failure(self) -> str | None:
        code = self.popen.poll()
        if code is None:
            return None
        output = tail(self.stderr_path) or tail(self.stdout_path) or "no output"
        return f"{self.name} exited with status {code}: {output}"

    def wait_ready(self, port: int, timeout: float = START_TIMEOUT_S) -> None:
        """Until a GET through ``port`` returns the upstream's 200 ``ok``."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            failure = self.failure()
            if failure:
                raise PeerError(failure)
            try:
                status, body = http_get(port)
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200 and body == UPSTREAM_BODY:
                    return
                last = f"status {status}, body {body[:80]!r}"
            time.sleep(0.05)
        raise PeerError(f"{self.name} not ready on port {port} after {timeout:.0f}s ({last})")

    def group_members(self) -> list[int]:
        """Live processes still in this command's process group (its session leader's id)."""
        members = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    if read_proc_stat(int(entry))["pgrp"] == self.pid:
                        members.append(int(entry))
        return members

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(STOP_GRACE_S)
        # A process left in the group kept the group id reserved, so it is one of ours
        # (e.g. a worker that outlived its master).
        for pid in self.group_members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
