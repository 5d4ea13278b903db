"""The peers: nginx, HAProxy, fastgw (one per scenario) and custom commands as reverse proxies
in front of one shared upstream, plus that upstream and the Redis scenarios' redis-server."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pwd
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.e2e.processes import (
    BENCH_DIR,
    LOOPBACK,
    REPO,
    START_TIMEOUT_S,
    UPSTREAM_BODY,
    PeerError,
    Pinning,
    Process,
    free_port,
)
from bench.e2e.scenarios import PLAIN, SCENARIOS, fastgw_config, fastgw_peer_name


def nginx_user_line() -> str:
    # As root, nginx workers would switch to "nobody", who cannot reach the private temp dir.
    if os.geteuid() == 0:
        return f"user {pwd.getpwuid(0).pw_name};\n"
    return ""


def nginx_main_conf(workdir: Path, http_block: str) -> str:
    return (
        f"{nginx_user_line()}"
        "worker_processes 1;\n"
        "daemon off;\n"
        "master_process on;\n"
        f"pid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log warn;\n"
        "events { worker_connections 4096; multi_accept on; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {workdir}/client_body;\n"
        f"  proxy_temp_path {workdir}/proxy;\n"
        f"  fastcgi_temp_path {workdir}/fastcgi;\n"
        f"  uwsgi_temp_path {workdir}/uwsgi;\n"
        f"  scgi_temp_path {workdir}/scgi;\n"
        "  keepalive_timeout 75s;\n"
        # nginx closes a client connection after 1000 requests by default; the other peers
        # do not, so the limit is lifted to compare the same workload.
        "  keepalive_requests 10000000;\n"
        f"{http_block}"
        "}\n"
    )


def nginx_argv(workdir: Path, conf: str) -> list[str]:
    path = workdir / "nginx.conf"
    path.write_text(conf)
    return ["nginx", "-p", f"{workdir}/", "-e", f"{workdir}/error.log", "-c", str(path)]


def nginx_upstream_argv(workdir: Path, port: int) -> list[str]:
    """A second nginx that answers every request with 200 ``ok``: the shared upstream."""
    http_block = (
        "  default_type text/plain;\n"
        f"  server {{ listen {LOOPBACK}:{port} backlog=4096; "
        f'location / {{ return 200 "{UPSTREAM_BODY.decode()}"; }} }}\n'
    )
    return nginx_argv(workdir, nginx_main_conf(workdir, http_block))


def nginx_peer_argv(workdir: Path, port: int, upstream_port: int) -> list[str]:
    http_block = (
        "  upstream upstream_block {\n"
        f"    server {LOOPBACK}:{upstream_port};\n"
        "    keepalive 64;\n"
        "    keepalive_requests 10000000;\n"
        "  }\n"
        f"  server {{\n    listen {LOOPBACK}:{port} backlog=4096;\n"
        "    location / {\n"
        "      proxy_pass http://upstream_block;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "    }\n  }\n"
    )
    return nginx_argv(workdir, nginx_main_conf(workdir, http_block))


def haproxy_peer_argv(workdir: Path, port: int, upstream_port: int) -> list[str]:
    conf = (
        "global\n"
        "  nbthread 1\n"
        "  maxconn 4096\n"
        "defaults\n"
        "  mode http\n"
        "  option http-keep-alive\n"
        "  http-reuse always\n"
        "  timeout connect 5s\n"
        "  timeout client 60s\n"
        "  timeout server 60s\n"
        "  timeout http-keep-alive 75s\n"
        "frontend bench\n"
        f"  bind {LOOPBACK}:{port}\n"
        "  default_backend upstream_block\n"
        "backend upstream_block\n"
        f"  server upstream {LOOPBACK}:{upstream_port}\n"
    )
    path = workdir / "haproxy.cfg"
    path.write_text(conf)
    # -db: stay in the foreground, one process (no master-worker).
    return ["haproxy", "-db", "-f", str(path)]


def fastgw_peer_argv(
    workdir: Path,
    port: int,
    upstream_port: int,
    python: str,
    scenario: str = PLAIN,
    redis_port: int | None = None,
) -> list[str]:
    path = workdir / "gateway.yaml"
    path.write_text(fastgw_config(port, upstream_port, scenario, workdir, redis_port))
    return [python, "-m", "fastgw", "run", "-c", str(path)]


@dataclasses.dataclass
class PeerSpec:
    name: str
    # (workdir, port, upstream_port) -> argv
    build: Callable[[Path, int, int], list[str]]
    cwd: Path | None = None
    # The load sends BENCH_KEY_HEADER with this many distinct values (0: not at all).
    keys: int = 0
    # Or one fixed field on every request (name, value).
    header: tuple[str, str] | None = None


@dataclasses.dataclass
class RedisServer:
    """The redis-server of the scenarios that need one: its port is chosen before the peers
    are built; ``pid`` is set while it runs, ``error`` when it could not start."""

    port: int
    pid: int | None = None
    error: str | None = None


def default_fastgw_python() -> str:
    venv_python = REPO / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def custom_peer(spec: str) -> PeerSpec:
    """``NAME=COMMAND`` where COMMAND may use {port}, {upstream_port} and {workdir}."""
    name, sep, template = spec.partition("=")
    if not sep or not name or not template:
        raise argparse.ArgumentTypeError("expected NAME=COMMAND")

    def build(workdir: Path, port: int, upstream_port: int) -> list[str]:
        command = template.format(port=port, upstream_port=upstream_port, workdir=workdir)
        return shlex.split(command)

    return PeerSpec(name, build)


def fastgw_spec(
    fastgw_python: str, scenario: str, scenarios: list[str], redis: RedisServer | None = None
) -> PeerSpec:
    def build(workdir: Path, port: int, upstream_port: int) -> list[str]:
        redis_port = None
        if SCENARIOS[scenario].redis:
            if redis is None or redis.pid is None:
                reason = redis.error if redis is not None else "no redis-server was started"
                raise PeerError(f"needs redis-server: {reason or 'not running'}")
            redis_port = redis.port
        return fastgw_peer_argv(workdir, port, upstream_port, fastgw_python, scenario, redis_port)

    # From the repository root, so "bench.policies:..." imports without installing anything.
    return PeerSpec(
        fastgw_peer_name(scenario, scenarios),
        build,
        cwd=REPO,
        keys=SCENARIOS[scenario].keys,
        header=SCENARIOS[scenario].header,
    )


def peer_specs(
    names: list[str],
    fastgw_python: str,
    custom: list[PeerSpec],
    scenarios: list[str] | None = None,
    redis: RedisServer | None = None,
) -> list[PeerSpec]:
    """The peers in order; ``fastgw`` stands for one row per scenario, in scenario order."""
    scenarios = scenarios or [PLAIN]
    known: dict[str, list[PeerSpec]] = {
        "nginx": [PeerSpec("nginx", nginx_peer_argv)],
        "haproxy": [PeerSpec("haproxy", haproxy_peer_argv)],
        "fastgw": [
            fastgw_spec(fastgw_python, scenario, scenarios, redis) for scenario in scenarios
        ],
    }
    known.update((spec.name, [spec]) for spec in custom)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown peer(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [spec for name in names for spec in known[name]]


@contextlib.contextmanager
def upstream_server(kind: str, pinning: Pinning) -> Iterator[tuple[int, int, str]]:
    """Starts the shared upstream; yields (port, pid, description)."""
    if kind == "auto":
        kind = "nginx" if shutil.which("nginx") else "python"
    workdir = Path(tempfile.mkdtemp(prefix="fastgw-e2e-upstream-"))
    port = free_port()
    if kind == "nginx":
        argv = nginx_upstream_argv(workdir, port)
        description = 'nginx, worker_processes 1, return 200 "ok", keep-alive'
    else:
        argv = [sys.executable, str(BENCH_DIR / "upstream.py"), "--port", str(port)]
        description = "bench/upstream.py (asyncio), fixed 200 ok, keep-alive"
    process = Process("upstream", pinning.wrap(argv, pinning.load_cpu), workdir)
    try:
        process.wait_ready(port)
        yield port, process.pid, description
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def redis_ping(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server on loopback ``port`` answers PING."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(redis: RedisServer, pinning: Pinning) -> Iterator[RedisServer]:
    """Runs redis-server on ``redis.port`` (loopback, no persistence) on the load CPU, next to
    wrk and the upstream, so the proxy's CPU stays its own; sets ``redis.pid``, or
    ``redis.error`` when it cannot start (the scenarios needing it then fail with that
    reason, the others run)."""
    workdir = Path(tempfile.mkdtemp(prefix="fastgw-e2e-redis-"))
    process = None
    try:
        if not shutil.which("redis-server"):
            redis.error = "redis-server not found (Debian: apt-get install redis-server)"
        else:
            argv = [
                "redis-server", "--port", str(redis.port), "--bind", LOOPBACK,
                "--save", "", "--appendonly", "no", "--dir", str(workdir),
                "--daemonize", "no", "--loglevel", "warning",
            ]  # fmt: skip
            process = Process("redis", pinning.wrap(argv, pinning.load_cpu), workdir)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not redis_ping(redis.port):
                failure = process.failure()
                if failure or time.monotonic() > deadline:
                    redis.error = failure or f"no PONG on port {redis.port}"
                    break
                time.sleep(0.05)
            else:
                redis.pid = process.pid
        yield redis
    finally:
        redis.pid = None
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
