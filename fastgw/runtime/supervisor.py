"""`fastgw run --workers N`: a supervisor process and N worker processes.

The supervisor opens the listening sockets itself: one per worker and listen address, all with
SO_REUSEPORT, so the kernel spreads new connections among the workers (each has its own
accept queue). It starts each worker as `python -m fastgw run -c FILE --worker` with its
sockets inherited (`--listen-fd`) and the last valid config (pickled on its stdin); every
worker runs the ordinary single-process gateway on them. A worker reports on a pipe once it
serves; the supervisor prints the "listening on" lines (on stdout) when all of them do.

SO_REUSEPORT lets any process of the same user join a port's group, so a second gateway
started on a running one's port would silently take part of its traffic. Before it opens
anything the supervisor therefore probes each address (fastgw.runtime.listeners, which opens
every socket) and start fails with "address already in use" while anything listens there.
The sockets listen right after the probes (not when the workers are up), so a second
gateway's probe fails from then on. One race remains: two gateways whose probes both run
before either listens (the same few microseconds) would share the port. A single-process
gateway binds without SO_REUSEPORT and is refused by the kernel itself. The sockets of a
worker that dies are closed (connections queued on them are reset, new ones go to the other
workers) and opened again for its replacement, which joins the group of the sockets the
supervisor still holds; only when no worker is left is the probe run again first.

Signals go to the supervisor: SIGHUP (or, with --watch, a change of the file) validates and
compiles the file first, then sends SIGHUP to every worker, which reloads it; an invalid file
is reported and the running config keeps serving. SIGTERM/SIGINT drain every worker; SIGQUIT
stops them without waiting for requests in flight. A worker that dies is restarted after a
bounded back-off. Listener and worker-count changes need a restart.

With an `admin:` block the supervisor answers the admin API for all workers, from an asyncio
loop in a thread of its own; POST /reload is handed to the main loop (through the wakeup
pipe) and takes the same validate-then-SIGHUP path as a signal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import hashlib
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from fastgw import _core
from fastgw.admin.server import AdminServer, log_address
from fastgw.config import Config, load_config, parse_listen_address
from fastgw.errors import GatewayError, redact_text
from fastgw.observe.metrics import merge, render
from fastgw.plan import build_plan
from fastgw.runtime.listeners import open_socket, refuse_if_served, shown_address
from fastgw.runtime.reload import RELOAD_REJECTED, reload_error_lines, restart_required
from fastgw.runtime.watch import WATCH_INTERVAL, FileWatcher
from fastgw.runtime.worker import CONTROL_FRAME

__all__ = ["Supervisor", "resolve_workers"]

BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
# A worker that lived this long is considered healthy again: its next restart is immediate.
BACKOFF_RESET_AFTER = 30.0
# Past the drain timeout, workers that still have not exited are killed.
KILL_GRACE = 5.0
# How long a worker may take to answer a metrics request on its control socket.
CONTROL_TIMEOUT = 2.0


def resolve_workers(config: Config) -> int:
    """The number of worker processes: `workers:`, with "auto" one per CPU."""
    if config.workers == "auto":
        return os.cpu_count() or 1
    return int(config.workers)


logger = logging.getLogger("fastgw")


def _log(message: str, level: int = logging.INFO) -> None:
    """The supervisor's messages go to the error log (stderr unless `error_log` says),
    URL passwords hidden (a worker's error may quote a config value)."""
    logger.log(level, redact_text(message))


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int = -1
    ready: bool = False
    started: float = 0.0
    restart_at: float | None = None
    backoff: float = BACKOFF_MIN
    reload_pending: bool = False
    # The supervisor's end of the worker's control socket (metrics), used by the admin
    # thread under `control_lock`: the last request's sequence number, bytes received but
    # not yet parsed, the snapshot last read and whether the last scrape got a fresh one.
    control: socket.socket | None = None
    control_lock: threading.Lock = field(default_factory=threading.Lock)
    sequence: int = 0
    inbox: bytearray = field(default_factory=bytearray)
    last_snapshot: dict[str, Any] | None = None
    up: bool = False
    scrape_errors: int = 0
    # Set by the admin thread when the control channel broke; the main loop replaces it.
    broken: bool = False
    # The supervisor's copies of this worker's listening sockets, one per listen address.
    sockets: list[socket.socket] = field(default_factory=list)


class Supervisor:
    """Starts, restarts, reloads and stops the worker processes of one gateway."""

    def __init__(
        self, config: Config, config_file: str, workers: int, *, watch: bool = False
    ) -> None:
        self.config = config
        self._launched_with = config  # listen, workers and admin as they were set up
        self.config_file = config_file
        self.workers = [_Worker(i) for i in range(workers)]
        self.watch = watch
        self._addresses: list[tuple[str, int]] = []
        self._signals: list[int] = []
        self._announced = False
        self._stopping = False
        self._kill_at: float | None = None
        self._failed = False
        self._wake_w = -1
        # Admin API state: requests from its thread, answered by the main loop.
        self._admin_requests: list[concurrent.futures.Future[list[str]]] = []
        self._admin_lock = threading.Lock()
        self.last_reload: dict[str, Any] = {
            "result": None,
            "at": None,
            "errors": [],
            "restart_required": [],
        }
        self.config_hash = _file_hash(config_file)
        self.route_rows: list[dict[str, Any]] = []
        self.upstream_rows: list[dict[str, Any]] = []
        self.reloads = {"ok": 0, "error": 0}
        self.worker_restarts = 0
        # Counters of workers that died, as last read, so the sums never go back.
        self._retired: list[dict[str, Any]] = []
        # The rate limit table every worker maps: one limit for the gateway, not per worker.
        self._rate_fd = -1
        self._rate_table: Any = None

    # -- listeners ---------------------------------------------------------------------

    def _reserve_listeners(self) -> None:
        """Check that nobody serves the addresses, then open every worker's sockets (the
        first worker's resolve an ephemeral port; the others bind to the same one)."""
        self._addresses = [
            parse_listen_address(listener.address) for listener in self.config.listeners
        ]
        try:
            self._probe_addresses()
            for worker in self.workers:
                self._open_sockets(worker)
        except BaseException:
            self._release_listeners()
            raise

    def _probe_addresses(self) -> None:
        for (host, port), listener in zip(self._addresses, self.config.listeners, strict=True):
            if port:
                refuse_if_served(host, port, listener.address)

    def _open_sockets(self, worker: _Worker) -> None:
        """Bind and listen one SO_REUSEPORT socket per address for `worker`."""
        for index, (host, port) in enumerate(self._addresses):
            shown = self.config.listeners[index].address if port == 0 else shown_address(host, port)
            sock = open_socket(host, port, shown, reuse_port=True)
            worker.sockets.append(sock)
            # As bound: the port an ephemeral `:0` got, the address a name resolved to.
            self._addresses[index] = sock.getsockname()[:2]

    def _close_sockets(self, worker: _Worker) -> None:
        for sock in worker.sockets:
            sock.close()
        worker.sockets.clear()

    def _release_listeners(self) -> None:
        for worker in self.workers:
            self._close_sockets(worker)

    # -- workers -----------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        control, child_control = socket.socketpair()
        command = [
            sys.executable,
            "-m",
            "fastgw",
            "run",
            "-c",
            self.config_file,
            "--worker",
            "--ready-fd",
            str(write_fd),
            "--control-fd",
            str(child_control.fileno()),
            "--rate-fd",
            str(self._rate_fd),
        ]
        for sock in worker.sockets:
            command += ["--listen-fd", str(sock.fileno())]
        try:
            # A session of its own: a terminal's Ctrl-C reaches the supervisor only, which
            # forwards it once.
            worker.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                pass_fds=(
                    write_fd,
                    child_control.fileno(),
                    self._rate_fd,
                    *(sock.fileno() for sock in worker.sockets),
                ),
                start_new_session=True,
            )
        except BaseException:
            control.close()
            raise
        finally:
            os.close(write_fd)
            child_control.close()
        with worker.control_lock:
            worker.control = control
            worker.inbox.clear()
            worker.last_snapshot = None
            worker.broken = False
        # The worker serves the last config that passed validation, not whatever the file
        # holds now: a worker restarted after a rejected reload serves what the others serve.
        assert worker.proc.stdin is not None
        try:
            worker.proc.stdin.write(pickle.dumps(self.config))
            worker.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died already; reaped and restarted like any other
        worker.ready_fd = read_fd
        worker.ready = False
        worker.started = time.monotonic()
        worker.restart_at = None

    def _close_ready_fd(self, worker: _Worker) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _on_ready_fd(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.ready_fd, 64)
        except OSError:
            data = b""
        if b"ready" in data and worker.proc is not None:
            worker.ready = True
            _log(f"worker {worker.index} pid {worker.proc.pid} ready")
            if worker.reload_pending:
                worker.reload_pending = False
                self._send(worker, signal.SIGHUP)
        if not data or worker.ready:
            self._close_ready_fd(worker)
        if not self._announced and all(w.ready for w in self.workers):
            self._announced = True
            for host, port in self._addresses:
                address = shown_address(host, port)
                print(f"fastgw listening on http://{address}", flush=True)

    def _send(self, worker: _Worker, sig: int) -> None:
        if worker.proc is not None and worker.proc.poll() is None:
            try:
                worker.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _reap(self, now: float) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            worker.proc = None
            worker.ready = False
            self._close_ready_fd(worker)
            self._close_control(worker)
            # Connections queued on its sockets would wait for nobody: reset them now.
            self._close_sockets(worker)
            if self._stopping:
                continue
            if not self._announced:
                # A worker that cannot start (bad listener, bad config) would fail again:
                # give up instead of looping.
                _log(f"worker {worker.index} pid {proc.pid} exited with {code} while starting")
                self._failed = True
                self._begin_stop(signal.SIGTERM)
                continue
            if now - worker.started > BACKOFF_RESET_AFTER:
                worker.backoff = BACKOFF_MIN
            delay = worker.backoff
            worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)
            worker.restart_at = now + delay
            _log(
                f"worker {worker.index} pid {proc.pid} exited with {code}; restart in {delay:g}s",
                logging.WARNING,
            )

    def _close_control(self, worker: _Worker) -> None:
        with worker.control_lock:
            if worker.control is not None:
                worker.control.close()
                worker.control = None
            worker.up = False
            if worker.last_snapshot is not None:
                self._retired.append(worker.last_snapshot)
                worker.last_snapshot = None

    def _restart_due(self, now: float) -> None:
        if self._stopping:
            return
        for worker in self.workers:
            if worker.proc is None and worker.restart_at is not None and now >= worker.restart_at:
                try:
                    if not any(other.sockets for other in self.workers):
                        # No socket of ours holds the port: check nobody took it meanwhile.
                        self._probe_addresses()
                    self._open_sockets(worker)
                except GatewayError as exc:
                    self._close_sockets(worker)
                    delay = worker.backoff
                    worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)
                    worker.restart_at = now + delay
                    _log(f"worker {worker.index}: {exc}; retry in {delay:g}s", logging.ERROR)
                    continue
                self.worker_restarts += 1
                self._spawn(worker)

    # -- metrics -----------------------------------------------------------------------

    def _read_snapshot(self, worker: _Worker) -> dict[str, Any] | None:
        """Ask one worker for its counters (admin thread; bounded by CONTROL_TIMEOUT).

        A worker that does not answer in time (stopped, overloaded) keeps its socket: the
        sequence number in each answer lets the next scrape skip the late one. A channel that
        broke (closed, garbled) cannot be trusted again: the worker is replaced. Either way
        the worker counts as down and the error is counted and logged; its last counts are
        returned, so that sums never go back.
        """
        with worker.control_lock:
            sock = worker.control
            if sock is None or worker.broken or not worker.ready:
                # Not serving yet (its control task starts once it listens) or on its way out.
                worker.up = False
                return worker.last_snapshot
            worker.sequence += 1
            try:
                snapshot = self._ask(sock, worker)
            except TimeoutError:
                self._scrape_failed(
                    worker, f"no answer on its control socket within {CONTROL_TIMEOUT:g}s"
                )
                return worker.last_snapshot
            except (OSError, ValueError, struct.error) as exc:
                worker.broken = True
                self._scrape_failed(
                    worker,
                    f"control socket failed ({exc or type(exc).__name__}); replacing the worker",
                )
                try:
                    os.write(self._wake_w, b"c")
                except OSError:
                    pass
                return worker.last_snapshot
            worker.up = True
            worker.last_snapshot = snapshot
            return snapshot

    @staticmethod
    def _ask(sock: socket.socket, worker: _Worker) -> dict[str, Any]:
        """Send one metrics request and read frames until the answer to it."""
        deadline = time.monotonic() + CONTROL_TIMEOUT
        sock.settimeout(CONTROL_TIMEOUT)
        sock.sendall(b"metrics %d\n" % worker.sequence)
        inbox = worker.inbox
        while True:
            if len(inbox) >= CONTROL_FRAME.size:
                size, sequence = CONTROL_FRAME.unpack_from(inbox)
                end = CONTROL_FRAME.size + size
                if len(inbox) >= end:
                    body = bytes(inbox[CONTROL_FRAME.size : end])
                    del inbox[:end]
                    if sequence == worker.sequence:
                        snapshot: dict[str, Any] = orjson.loads(body)
                        return snapshot
                    continue  # the late answer to a scrape that gave up on it
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the worker closed its control socket")
            inbox += chunk

    def _scrape_failed(self, worker: _Worker, reason: str) -> None:
        worker.up = False
        worker.scrape_errors += 1
        pid = worker.proc.pid if worker.proc is not None else "-"
        stale = "its last counts are reported" if worker.last_snapshot else "no counts yet"
        _log(f"worker {worker.index} pid {pid}: {reason}; {stale}", logging.ERROR)

    def _replace_broken(self) -> None:
        """Main loop: a worker whose control channel broke cannot be observed any more; it
        drains and exits, and is restarted like a worker that died."""
        for worker in self.workers:
            if worker.broken and worker.proc is not None and not self._stopping:
                worker.broken = False
                with worker.control_lock:
                    if worker.control is not None:
                        worker.control.close()
                        worker.control = None
                self._send(worker, signal.SIGTERM)

    def metrics_text(self) -> bytes:
        """Every worker's counters summed (and those of workers that died), as Prometheus
        text."""
        snapshots = []
        for worker in self.workers:
            snapshot = self._read_snapshot(worker)
            if snapshot is None:
                continue
            if not worker.up:
                # Counts stand as last read; gauges of a worker that did not answer are unknown.
                snapshot = {**snapshot, "connections": {}, "targets": []}
            snapshots.append(snapshot)
        with self._admin_lock:
            retired = list(self._retired)
        for worker_snapshot in retired:
            # Gauges (connections, pools) of a dead worker are gone with it.
            snapshots.append({**worker_snapshot, "connections": {}, "targets": []})
        return render(
            merge(snapshots),
            reloads=self.reloads,
            workers=sum(1 for w in self.workers if w.proc is not None),
            worker_restarts=self.worker_restarts,
            worker_up={w.index: int(w.up) for w in self.workers},
            worker_scrape_errors={w.index: w.scrape_errors for w in self.workers},
        )

    # -- signals and reload --------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGUSR1:
                for worker in self.workers:
                    self._send(worker, signal.SIGUSR1)
            elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self._begin_stop(signum)

    def _begin_stop(self, signum: int) -> None:
        """SIGTERM/SIGINT: workers drain (up to timeouts.drain); SIGQUIT: they stop now."""
        forward = signal.SIGQUIT if signum == signal.SIGQUIT else signal.SIGTERM
        if not self._stopping:
            self._stopping = True
            self._kill_at = time.monotonic() + self.config.timeouts.drain + KILL_GRACE
            # The workers stop accepting as they drain; the supervisor's copies must not keep
            # the sockets listening (connections would queue for nobody).
            self._release_listeners()
        elif forward != signal.SIGQUIT:
            return
        for worker in self.workers:
            worker.restart_at = None
            self._send(worker, forward)

    def reload(self) -> bool:
        """Validate and compile the file; if it is good, have every worker reload it."""
        file = self.config_file
        errors: list[str] = []
        try:
            config = load_config(file)
            self._describe(config)
        except Exception as exc:  # a bad file, a policy that cannot start, a file that vanished
            errors = reload_error_lines(exc, file)
        at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        restart = [] if errors else restart_required(self._launched_with, config)
        self.last_reload = {
            "result": "error" if errors else "ok",
            "at": at,
            "errors": errors,
            "restart_required": restart,
        }
        self.reloads["error" if errors else "ok"] += 1
        if errors:
            for error in errors:
                _log(f"{RELOAD_REJECTED}: {error}", logging.ERROR)
            return False
        self.config_hash = _file_hash(file)
        if restart:
            _log(f"reloaded, but {', '.join(restart)} changes apply only after a restart")
        self.config = config
        count = 0
        for worker in self.workers:
            if worker.ready:
                self._send(worker, signal.SIGHUP)
                count += 1
            elif worker.proc is not None:
                worker.reload_pending = True
        _log(f"reloading {file} in {count} workers")
        return True

    def _describe(self, config: Config) -> None:
        """Compile `config` (raising on errors) and keep its route and upstream tables."""
        plan = build_plan(config, self.config_file, strict=True)
        try:
            routes = plan.describe_routes()
            upstreams = [
                {
                    "name": name,
                    "targets": [{"host": t.host, "port": t.port} for t in pool.target_list],
                }
                for name, pool in plan.pools.items()
            ]
        finally:
            plan.close()
        self.route_rows, self.upstream_rows = routes, upstreams

    # -- admin API -----------------------------------------------------------------------

    def request_reload(self) -> concurrent.futures.Future[list[str]]:
        """From the admin thread: reload on the main loop; the future holds the errors."""
        future: concurrent.futures.Future[list[str]] = concurrent.futures.Future()
        with self._admin_lock:
            self._admin_requests.append(future)
        try:
            os.write(self._wake_w, b"r")
        except OSError:
            pass
        return future

    def _handle_admin_requests(self) -> None:
        with self._admin_lock:
            requests, self._admin_requests = self._admin_requests, []
        for future in requests:
            if self._stopping:
                future.set_result(["the gateway is stopping"])
            elif self.reload():
                future.set_result([])
            else:
                future.set_result(list(self.last_reload["errors"]) or ["reload failed"])

    def _start_admin(self) -> _AdminThread | None:
        if self.config.admin is None:
            return None
        self._describe(self.config)
        admin = _AdminThread(self)
        admin.start()
        return admin

    # -- main loop ---------------------------------------------------------------------

    def _create_rate_table(self) -> None:
        """An anonymous shared file for the workers' rate limit buckets (pages are only
        allocated as keys arrive)."""
        slots = self.config.rate_limit_table.slots
        self._rate_fd = os.memfd_create("fastgw-ratelimit")
        os.ftruncate(self._rate_fd, _core.RateTable.bytes_for(slots))
        self._rate_table = _core.RateTable(slots, self._rate_fd)  # writes header and seed

    def run(self) -> int:
        """Serve until a stop signal and every worker has exited; return the exit code."""
        self._create_rate_table()
        self._reserve_listeners()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake_w = wake_w
        admin: _AdminThread | None = None
        handled = (
            signal.SIGHUP,
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGQUIT,
            signal.SIGUSR1,
            signal.SIGCHLD,
        )
        previous = {sig: signal.getsignal(sig) for sig in handled}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        try:
            for sig in handled:
                if sig == signal.SIGCHLD:
                    # Only to wake the loop through the wakeup fd; children are polled.
                    signal.signal(sig, lambda signum, frame: None)
                else:
                    signal.signal(sig, self._on_signal)
            watcher = FileWatcher(self.config_file) if self.watch else None
            admin = self._start_admin()
            for worker in self.workers:
                self._spawn(worker)
            self._loop(wake_r, watcher)
        finally:
            if admin is not None:
                admin.stop()
            with self._admin_lock:
                for future in self._admin_requests:
                    future.set_result(["the gateway is stopping"])
                self._admin_requests.clear()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
            self._rate_table = None
            os.close(self._rate_fd)
            for worker in self.workers:
                self._close_ready_fd(worker)
                self._close_control(worker)
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
            self._release_listeners()
        if self._failed:
            return 1
        print("fastgw stopped", file=sys.stderr, flush=True)
        return 0

    def _loop(self, wake_r: int, watcher: FileWatcher | None) -> None:
        next_watch = time.monotonic() + WATCH_INTERVAL
        while True:
            now = time.monotonic()
            timeout = max(0.0, next_watch - now) if watcher is not None else 1.0
            for worker in self.workers:
                if worker.restart_at is not None:
                    timeout = min(timeout, max(0.0, worker.restart_at - now))
            fds = [wake_r] + [w.ready_fd for w in self.workers if w.ready_fd >= 0]
            readable, _, _ = select.select(fds, [], [], timeout)
            if wake_r in readable:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            self._handle_signals()
            self._handle_admin_requests()
            self._replace_broken()
            now = time.monotonic()
            self._reap(now)
            for worker in self.workers:
                if worker.ready_fd >= 0 and worker.ready_fd in readable:
                    self._on_ready_fd(worker)
            self._restart_due(now)
            if watcher is not None and now >= next_watch:
                next_watch = now + WATCH_INTERVAL
                if not self._stopping and watcher.changed():
                    self.reload()
            if self._stopping:
                if all(w.proc is None for w in self.workers):
                    return
                if self._kill_at is not None and now > self._kill_at:
                    for worker in self.workers:
                        self._send(worker, signal.SIGKILL)
                    self._kill_at = None


def _file_hash(file: str) -> str | None:
    try:
        with open(file, "rb") as stream:
            return hashlib.sha256(stream.read()).hexdigest()
    except OSError:
        return None


class _SupervisorView:
    """What the admin API shows of a supervisor and its workers (a fastgw.admin.AdminView,
    read from the admin thread)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    @property
    def config(self) -> Config:
        return self.supervisor.config

    @property
    def config_file(self) -> str:
        return os.path.abspath(self.supervisor.config_file)

    @property
    def config_hash(self) -> str | None:
        return self.supervisor.config_hash

    @property
    def last_reload(self) -> dict[str, Any]:
        return self.supervisor.last_reload

    def ready(self) -> bool:
        return self.supervisor._announced and not self.supervisor._stopping

    def workers(self) -> list[int]:
        return [w.proc.pid for w in self.supervisor.workers if w.proc is not None]

    def routes(self) -> list[dict[str, Any]]:
        return self.supervisor.route_rows

    def upstreams(self) -> list[dict[str, Any]]:
        # Connection counts live in the workers: only the targets are known here.
        return self.supervisor.upstream_rows

    async def reload(self) -> list[str]:
        return await asyncio.wrap_future(self.supervisor.request_reload())

    async def metrics(self) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.supervisor.metrics_text)


class _AdminThread:
    """The admin API of a supervisor: an asyncio loop in a daemon thread."""

    def __init__(self, supervisor: Supervisor) -> None:
        settings = supervisor.config.admin
        assert settings is not None
        self.loop = asyncio.new_event_loop()
        self.server = AdminServer(_SupervisorView(supervisor), settings.listen, settings.token)
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="fastgw-admin", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        except GatewayError:
            self.stop()
            raise
        log_address(self.server)

    def stop(self) -> None:
        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        self.loop.close()
