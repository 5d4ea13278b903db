"""`fastgw run` with several worker processes: shared listeners, restarts, reload, drain.

Which worker served what is read from /proc (sockets each worker process owns), so nothing
is added to the proxy path for the tests.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads worker sockets from /proc"
)

# What a gateway prints on stdout once it serves (the stderr has its other messages).
LISTENING = "fastgw listening on"
LISTENING_RE = re.compile(LISTENING + r" http://([0-9.]+):(\d+)")
READY_RE = re.compile(r"worker (\d+) pid (\d+) ready")
TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"


class Supervised:
    """`python -m fastgw run -c FILE [args]` with its output (stdout and stderr, in order)
    collected by a thread."""

    def __init__(self, workdir: Path, config: dict[str, Any], *args: str) -> None:
        self.config_path = workdir / "gateway.yaml"
        self.write(config)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastgw", "run", "-c", str(self.config_path), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        found = self.wait_line(LISTENING_RE, timeout=15)
        self.host, self.port = found.group(1), int(found.group(2))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def write(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def count(self, pattern: re.Pattern[str] | str) -> int:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        return sum(1 for line in list(self.lines) if regex.search(line))

    def wait_count(self, pattern: str, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(pattern) < n:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {n} x {pattern!r} in:\n{self.output}"
            time.sleep(0.02)

    def wait_line(self, regex: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                found = regex.search(line)
                if found:
                    return found
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"no {regex.pattern!r}; output:\n{self.output}", pytrace=False)
            time.sleep(0.02)

    def workers(self) -> set[int]:
        return children(self.proc.pid)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        return self.proc.returncode


def children(pid: int) -> set[int]:
    """Live (not zombie) child processes of `pid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def tcp_sockets(pid: int) -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of every IPv4 TCP socket process `pid` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    result = []
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            cols = row.split()
            if cols[9] in inodes:
                local = int(cols[1].split(":")[1], 16)
                remote = int(cols[2].split(":")[1], 16)
                result.append((local, remote, cols[3]))
    return result


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def supervised(tmp_path: Path) -> Any:
    started: list[Supervised] = []

    def start(config: dict[str, Any], *args: str) -> Supervised:
        started.append(Supervised(tmp_path, config, *args))
        return started[-1]

    yield start
    for each in started:
        each.stop()
        print(f"--- supervisor {each.proc.pid} exit {each.proc.returncode} ---\n{each.output}")


def config(http: Any, up: Any, paths: list[str], **top: Any) -> dict[str, Any]:
    top.setdefault("workers", 2)
    return http.gateway_config(
        routes=[http.route(f"r{i}", [p], "up") for i, p in enumerate(paths)],
        upstreams={"up": up},
        **top,
    )


def fresh_requests(http: Any, gw: Supervised, path: str, n: int = 16) -> list[int]:
    statuses = []
    for _ in range(n):
        with http.RawClient(gw.host, gw.port) as client:
            statuses.append(client.request("GET", path).status)
    return statuses


def test_two_workers_share_the_port_and_both_serve(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(config(http, up, ["/{*rest}"]))
    workers = gw.workers()
    assert len(workers) == 2, gw.output
    for pid in workers:
        assert (gw.port, 0, TCP_LISTEN) in tcp_sockets(pid), f"worker {pid} is not listening"
    # Fresh connections are spread by the kernel: both workers proxy, and each keeps its
    # own idle keep-alive connection to the upstream afterwards.
    assert fresh_requests(http, gw, "/spread", 24) == [200] * 24
    for pid in workers:
        upstream_conns = [s for s in tcp_sockets(pid) if s[1] == up.port]
        assert any(state == TCP_ESTABLISHED for _, _, state in upstream_conns), (
            f"worker {pid} proxied nothing"
        )


def test_killed_worker_is_restarted(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(config(http, up, ["/{*rest}"]))
    before = gw.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # Reaped, so every thread is gone and its listener is closed: new connections go to
    # the other worker (those queued on the killed one's listener were lost with it).
    wait_for(lambda: not Path(f"/proc/{victim}").exists(), 5, "the killed worker to be reaped")
    assert fresh_requests(http, gw, "/during", 8) == [200] * 8
    wait_for(lambda: len(gw.workers() - before) == 1, 5, "a new worker")
    gw.wait_count(r"pid \d+ ready", 3)
    (new,) = gw.workers() - before
    wait_for(lambda: (gw.port, 0, TCP_LISTEN) in tcp_sockets(new), 5, "the new worker")
    assert "restart in 0.1s" in gw.output
    assert fresh_requests(http, gw, "/after", 16) == [200] * 16


def test_sighup_valid_config_reloads_every_worker(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(config(http, up, ["/old"]))
    assert fresh_requests(http, gw, "/new", 2) == [404, 404]
    gw.write(config(http, up, ["/old", "/new"]))
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_count(r"worker \d+ reloaded ", 2)
    reloaded = {int(m) for m in re.findall(r"worker (\d+) reloaded ", gw.output)}
    assert reloaded == gw.workers()
    assert fresh_requests(http, gw, "/new") == [200] * 16
    assert fresh_requests(http, gw, "/old", 4) == [200] * 4


def test_sighup_invalid_config_keeps_serving(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(config(http, up, ["/old"]))
    broken = config(http, up, ["/old"])
    broken["routes"][0]["upstream"] = "missing"
    broken["routes"].append({"name": "x", "match": {"paths": ["/x"]}, "upstream": "gone"})
    gw.write(broken)
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_count("reload rejected", 2)
    rejected = [line for line in gw.lines if "reload rejected" in line]
    assert any("$.routes[0].upstream" in line for line in rejected), rejected
    assert any("$.routes[1].upstream" in line for line in rejected), rejected
    assert all(str(gw.config_path) in line for line in rejected), rejected
    assert fresh_requests(http, gw, "/old", 8) == [200] * 8
    assert gw.count("reloaded ") == 0
    # A worker restarted now gets the config that is serving, not the broken file.
    before = gw.workers()
    os.kill(min(before), signal.SIGKILL)
    gw.wait_count(r"pid \d+ ready", 3)
    assert len(gw.workers() - before) == 1
    assert fresh_requests(http, gw, "/old") == [200] * 16


@pytest.mark.parametrize("who", ["one process", "supervisor", "worker"])
def test_reload_rejection_is_one_line_per_error(upstream, supervised, http, who) -> None:
    """Whoever rejects a reload says it the same way: one line per error, with the file and
    the `$.path` in each."""
    up = upstream("echo")
    gw = supervised(config(http, up, ["/old"], workers=1 if who == "one process" else 2))
    broken = config(http, up, ["/old"])
    broken["routes"][0]["upstream"] = "missing"
    broken["routes"].append({"name": "x", "match": {"paths": ["/x"]}, "upstream": "gone"})
    gw.write(broken)
    prefix = "fastgw: "
    if who == "worker":
        # A worker told to reload on its own (not through the supervisor) checks the file too.
        pid = min(gw.workers())
        os.kill(pid, signal.SIGHUP)
        prefix += f"worker {pid}: "
    else:
        gw.proc.send_signal(signal.SIGHUP)
    gw.wait_count("reload rejected", 2)
    time.sleep(0.2)  # nothing more may follow
    lines = [line.rstrip("\n") for line in gw.lines if "reload" in line]
    head = f"{prefix}reload rejected, still serving the previous config: {gw.config_path}: "
    assert len(lines) == 2, lines
    assert lines[0].startswith(head + "$.routes[0].upstream: "), lines
    assert lines[1].startswith(head + "$.routes[1].upstream: "), lines
    assert fresh_requests(http, gw, "/old", 4) == [200] * 4


def test_watch_reloads_on_edit(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(config(http, up, ["/old"]), "--watch")
    gw.write(config(http, up, ["/old", "/watched"]))
    gw.wait_count(r"worker \d+ reloaded ", 2)
    assert fresh_requests(http, gw, "/watched") == [200] * 16


def test_sigterm_drains_in_flight_request(upstream, supervised, http) -> None:
    up = upstream("slow", delay=1.5)
    gw = supervised(config(http, up, ["/{*rest}"], timeouts={"drain": "5s"}))
    workers = gw.workers()
    result: dict[str, Any] = {}

    def client() -> None:
        try:
            with http.RawClient(gw.host, gw.port) as conn:
                result["resp"] = conn.request("GET", "/in-flight")
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    up.wait_requests(1)
    gw.proc.send_signal(signal.SIGTERM)
    thread.join(10)
    assert "error" not in result, result.get("error")
    assert result["resp"].status == 200
    assert result["resp"].json()["target"] == "/in-flight"
    assert gw.proc.wait(10) == 0, gw.output
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a worker outlived it"


def test_sigquit_stops_without_draining(upstream, supervised, http) -> None:
    up = upstream("slow", delay=30)
    gw = supervised(config(http, up, ["/{*rest}"], timeouts={"drain": "20s"}))
    with http.RawClient(gw.host, gw.port, timeout=10) as client:
        client.send(http.build_request("GET", "/stuck"))
        up.wait_requests(1)
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGQUIT)
        assert gw.proc.wait(10) == 0, gw.output
        assert time.monotonic() - started < 5.0, "waited for the drain timeout"
        assert client.wait_closed(2.0)


def test_watch_with_one_process(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(config(http, up, ["/old"], workers=1), "--watch")
    assert gw.workers() == set(), "one worker: no supervisor, this process serves"
    gw.write(config(http, up, ["/old", "/watched"], workers=1))
    gw.wait_count(r"^fastgw: reloaded ", 1)
    assert fresh_requests(http, gw, "/watched", 4) == [200] * 4


@pytest.mark.skipif((os.cpu_count() or 1) > 8, reason="one worker per CPU: too many here")
def test_workers_auto_is_one_per_cpu(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(config(http, up, ["/{*rest}"], workers="auto"))
    assert len(gw.workers()) == (os.cpu_count() or 1)
    assert gw.count(READY_RE) == (os.cpu_count() or 1)


# --- a running gateway's port is never shared with a second one -------------------------

IN_USE = "address already in use"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_fails(tmp_path: Path, name: str, config: dict[str, Any]) -> subprocess.CompletedProcess:
    """`fastgw run` that must give up at start: its exit code, stdout and stderr. It never
    said it was listening, on either stream (the line goes to stdout)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "fastgw", "run", "-c", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert LISTENING not in result.stdout, result.stdout
    assert LISTENING not in result.stderr, result.stderr
    return result


def answered_by(http: Any, gw: Any, n: int = 24) -> set[bytes]:
    """The bodies of `n` requests on fresh connections (each upstream says who it is)."""
    bodies = set()
    for _ in range(n):
        with http.RawClient("127.0.0.1", gw.port) as client:
            resp = client.request("GET", "/who")
            assert resp.status == 200
            bodies.add(resp.body)
    return bodies


@pytest.mark.parametrize(
    ("first_workers", "second_workers"),
    [(2, 2), (1, 2), (2, 1)],
    ids=["supervisor-then-supervisor", "single-then-supervisor", "supervisor-then-single"],
)
def test_second_gateway_on_a_served_port_fails_and_takes_no_traffic(
    tmp_path, upstream, supervised, http, first_workers, second_workers
) -> None:
    port = free_port()
    first_up = upstream("fixed", body=b"first")
    second_up = upstream("fixed", body=b"second")
    listen = [f"127.0.0.1:{port}"]
    gw = supervised(config(http, first_up, ["/{*rest}"], workers=first_workers, listen=listen))
    assert answered_by(http, gw) == {b"first"}
    failed = start_fails(
        tmp_path,
        "second",
        config(http, second_up, ["/{*rest}"], workers=second_workers, listen=listen),
    )
    assert failed.returncode == 1, failed.stderr
    assert f"cannot listen on 127.0.0.1:{port}: " in failed.stderr
    assert IN_USE in failed.stderr.lower()
    # start_fails checked that it never printed the listening line (stdout) nor logged it
    assert LISTENING not in failed.stdout + failed.stderr
    # Only the first gateway answers, before and after the attempt.
    assert answered_by(http, gw, 32) == {b"first"}
    assert second_up.requests == []


def test_second_supervisor_fails_on_an_overlapping_wildcard(
    tmp_path, upstream, supervised, http
) -> None:
    # 0.0.0.0:PORT covers 127.0.0.1:PORT: the kernel's overlap rule applies to the probe too.
    port = free_port()
    up = upstream("fixed", body=b"first")
    gw = supervised(config(http, up, ["/{*rest}"], listen=[f"127.0.0.1:{port}"]))
    failed = start_fails(
        tmp_path, "wide", config(http, up, ["/{*rest}"], listen=[f"0.0.0.0:{port}"])
    )
    assert failed.returncode == 1, failed.stderr
    assert f"cannot listen on 0.0.0.0:{port}: address already in use" in failed.stderr
    assert answered_by(http, gw, 8) == {b"first"}


def test_supervisor_restarted_right_after_a_stop_binds_again(upstream, supervised, http) -> None:
    port = free_port()
    up = upstream("echo")
    listen = [f"127.0.0.1:{port}"]
    gw = supervised(config(http, up, ["/{*rest}"], listen=listen))
    # A keep-alive connection the gateway closes when it drains: the gateway's side of it
    # ends in TIME_WAIT on the listening port.
    client = http.RawClient("127.0.0.1", port)
    assert client.request("GET", "/kept").status == 200
    assert gw.stop() == 0, gw.stderr
    assert client.wait_closed(5.0)
    client.close()
    wait_for(lambda: any(state == "06" for state in local_states(port)), 5, "TIME_WAIT")
    again = supervised(config(http, up, ["/{*rest}"], listen=listen))
    assert again.port == port
    assert fresh_requests(http, again, "/again", 8) == [200] * 8


def test_restarted_worker_rejoins_its_supervisors_port(upstream, supervised, http) -> None:
    # Every worker killed at once: the supervisor checks the port is still free, then its
    # replacements listen on it again.
    port = free_port()
    up = upstream("echo")
    gw = supervised(config(http, up, ["/{*rest}"], listen=[f"127.0.0.1:{port}"]))
    before = gw.workers()
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(gw.workers() - before) == 2, 10, "two new workers")
    gw.wait_count(r"pid \d+ ready", 4)
    for pid in gw.workers():
        wait_for(lambda p=pid: (port, 0, TCP_LISTEN) in tcp_sockets(p), 5, f"worker {pid}")
    assert fresh_requests(http, gw, "/after", 16) == [200] * 16


def local_states(port: int) -> list[str]:
    """TCP states of every IPv4 socket on local port `port` (any process)."""
    with open("/proc/net/tcp") as table:
        next(table)
        return [
            cols[3]
            for cols in (row.split() for row in table)
            if int(cols[1].split(":")[1], 16) == port
        ]


def test_proxy_protocol_listener_in_every_worker(upstream, supervised, http) -> None:
    up = upstream("echo")
    gw = supervised(
        config(
            http,
            up,
            ["/{*rest}"],
            listen=[{"address": "127.0.0.1:0", "proxy_protocol": True}],
            trusted_proxies=["127.0.0.2/32"],
        )
    )
    # Fresh connections land on both workers; each reads the header the same way.
    for i in range(24):
        with http.RawClient(gw.host, gw.port, source="127.0.0.2") as client:
            client.send(f"PROXY TCP4 203.0.113.{i} 127.0.0.1 4000 80\r\n".encode())
            assert client.request("GET", f"/pp/{i}").status == 200
    seen = {r.target: r.header("x-forwarded-for") for r in up.requests}
    assert seen == {f"/pp/{i}": f"203.0.113.{i}" for i in range(24)}
    for pid in gw.workers():
        upstream_conns = [s for s in tcp_sockets(pid) if s[1] == up.port]
        assert upstream_conns, f"worker {pid} proxied nothing"
    # An untrusted peer's header is refused by whichever worker gets it.
    with http.RawClient(gw.host, gw.port) as client:
        client.send(b"PROXY TCP4 203.0.113.99 127.0.0.1 4000 80\r\n")
        client.send(http.build_request("GET", "/refused"))
        assert client.wait_closed(2.0)
        assert client.buf == b""
    assert "/refused" not in {r.target for r in up.requests}


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_second_supervisor_fails_on_a_served_ipv6_port(tmp_path, upstream, supervised, http):
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    up = upstream("fixed", body=b"first")
    listen = ["127.0.0.1:0", f"[::1]:{port}"]
    gw = supervised(config(http, up, ["/{*rest}"], listen=listen))
    failed = start_fails(tmp_path, "six", config(http, up, ["/{*rest}"], listen=[f"[::1]:{port}"]))
    assert failed.returncode == 1, failed.stderr
    assert f"cannot listen on [::1]:{port}: address already in use" in failed.stderr
    with http.RawClient("::1", port) as client:
        # read the whole response: head and body may arrive in separate segments
        resp = client.request("GET", "/who", host="[::1]")
        assert (resp.status, resp.body) == (200, b"first")
    assert gw.proc.poll() is None
