"""Gateway: run fastgw inside a Python program.

    gw = Gateway.from_file("gateway.yaml")
    await gw.start()
    print(gw.addresses)
    await gw.reload("gateway.yaml")   # or a dict / Config
    await gw.stop()

`async with Gateway(config) as gw:` does start/stop; `gw.run()` blocks until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from fastgw import _core
from fastgw.admin.server import AdminServer
from fastgw.config import Config, Listener, load_config, parse_config
from fastgw.config.redaction import redacted_config
from fastgw.errors import GatewayError
from fastgw.observe import Observability
from fastgw.observe.metrics import merge, render
from fastgw.plan import Plan, build_plan
from fastgw.runtime.listeners import Endpoint, endpoint_for, open_listeners
from fastgw.runtime.reload import RELOAD_REJECTED, reload_error_lines, restart_required

logger = logging.getLogger("fastgw")


def _file_of(config: object, current: str | None) -> str | None:
    """The file a reload of `config` reads: a path given to reload(), the current file for
    reload(), none for a config given as data."""
    if config is None:
        return current
    return str(config) if isinstance(config, str | os.PathLike) else None


class Gateway:
    """One gateway: its listeners, its engine and its current Plan."""

    def __init__(
        self,
        config: Config | dict[str, Any],
        *,
        config_file: str | None = None,
        admin: bool = True,
        embedded: bool = True,
        endpoint_for: Callable[[Listener], Endpoint] = endpoint_for,
    ):
        """`admin=False` skips the admin listener even when the config has an `admin:` block
        (a supervisor's workers: the supervisor answers for them). `embedded=False` is for
        `fastgw run`, which starts the `workers:` processes itself; an embedded Gateway serves
        in this one process and logs a warning when the config asks for more.
        `endpoint_for` chooses how each listener's connections are accepted (see
        fastgw.runtime.listeners; plain TCP by default)."""
        self._config_file = config_file
        self._endpoint_for = endpoint_for
        self.config = config if isinstance(config, Config) else parse_config(config, config_file)
        if embedded and self.config.workers != 1:
            logger.warning(
                "workers: %s is not applied: an embedded Gateway serves in this one process "
                "(`fastgw run` starts worker processes)",
                self.config.workers,
            )
        self.plan: Plan | None = None
        self._engine: Any = None
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped: asyncio.Event | None = None
        self._admin_enabled = admin
        self.admin: AdminServer | None = None  # while it runs
        self.draining = False
        self.config_hash = self._hash_config(self.config, config_file)
        # The outcome of the last reload, for the admin API's /status.
        self.last_reload: dict[str, Any] = {
            "result": None,
            "at": None,
            "errors": [],
            "restart_required": [],
        }
        self.reloads = {"ok": 0, "error": 0}
        self._restart_required: list[str] = []
        self._started_with = self.config  # what the listeners were opened for
        self._observe = Observability()
        # The loop holds only weak references to tasks: a signal's task lives here until done.
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Gateway:
        return cls(load_config(path), config_file=str(path))

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of every listener, ephemeral ports resolved."""
        result = []
        for server in self._servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                result.append((host, port))
        return result

    @property
    def engine(self) -> Any:
        return self._engine

    @property
    def config_file(self) -> str | None:
        return self._config_file

    @staticmethod
    def _hash_config(config: Config, file: str | None) -> str:
        """sha256 of the file's bytes, or of the canonical JSON of a config built in Python."""
        if file is not None:
            try:
                with open(file, "rb") as stream:
                    return hashlib.sha256(stream.read()).hexdigest()
            except OSError:
                pass
        canonical = json.dumps(redacted_config(config), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    async def start(
        self, *, reuse_port: bool = False, sockets: list[socket.socket] | None = None
    ) -> None:
        """Listen and serve; `reuse_port` opens the listeners with SO_REUSEPORT, so that
        several processes can share them on purpose (the kernel spreads connections among
        them). `sockets`: one bound socket per `config.listeners` entry, in order, served
        instead of binding (a supervisor's workers)."""
        if self._engine is not None:
            raise GatewayError("gateway already started")
        loop = asyncio.get_running_loop()
        engine = _core.Engine(loop)
        self._started_with = self.config
        _core.set_rate_table_slots(self.config.rate_limit_table.slots)
        plan = build_plan(self.config, self._config_file, engine, strict=False)
        try:
            self._observe.apply(engine, self.config)
        except GatewayError:
            plan.close()
            raise
        engine.plan = plan.core
        self._engine = engine
        self.plan = plan
        self._stopped = asyncio.Event()
        try:
            if sockets is None:
                sockets = open_listeners(self.config.listeners, reuse_port=reuse_port)
        except GatewayError:
            self._abandon_start(engine)
            raise
        # From here each socket belongs to its server once served; the rest are closed here.
        for index, (listener, sock) in enumerate(zip(self.config.listeners, sockets, strict=True)):
            factory = (
                engine.proxy_protocol_factory
                if listener.proxy_protocol
                else engine.protocol_factory
            )
            try:
                server = await self._endpoint_for(listener).serve(sock, factory)
            except OSError as exc:
                for unserved in sockets[index:]:
                    unserved.close()
                self._abandon_start(engine)
                raise GatewayError(
                    f"cannot listen on {listener.address}: {exc.strerror or exc}"
                ) from exc
            self._servers.append(server)
        self.draining = False
        if self._admin_enabled and self.config.admin is not None:
            settings = self.config.admin
            admin = AdminServer(GatewayView(self), settings.listen, settings.token)
            try:
                await admin.start()
            except GatewayError:
                self._abandon_start(engine)
                raise
            self.admin = admin
        engine.start()

    def _abandon_start(self, engine: Any) -> None:
        """A listener could not open: undo what start() set up so far."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        engine.close()
        self._observe.close(engine)
        if self.plan is not None:
            self.plan.close()
            self.plan = None
        self._engine = None

    async def reload(
        self, config: Config | dict[str, Any] | str | os.PathLike[str] | None = None
    ) -> Plan:
        """Compile a new Plan and swap it in; on any error the current Plan keeps serving.

        In-flight requests finish on the Plan they started with; new requests use the new one.
        Listener changes are not applied by a reload (they need a restart).
        """
        if self._engine is None:
            raise GatewayError("gateway not started")
        try:
            plan = await self._reload(config)
        except Exception as exc:
            file = _file_of(config, self._config_file)
            self._record_reload("error", reload_error_lines(exc, file))
            raise
        self._record_reload("ok", [], self._restart_required)
        return plan

    def _record_reload(self, result: str, errors: list[str], restart: list[str] = ()) -> None:
        self.reloads[result] += 1
        at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.last_reload = {
            "result": result,
            "at": at,
            "errors": errors,
            "restart_required": list(restart),
        }

    async def _reload(
        self, config: Config | dict[str, Any] | str | os.PathLike[str] | None
    ) -> Plan:
        file = self._config_file
        if config is None:
            if file is None:
                raise GatewayError("no config file to reload from")
            config = load_config(file)
        elif isinstance(config, str | os.PathLike):
            file = str(config)
            config = load_config(config)
        else:
            # A dict or a Config comes from the program, not from the file loaded before:
            # its errors name no file, and from now on there is no file to reload.
            file = None
            if not isinstance(config, Config):
                config = parse_config(config)
        plan = build_plan(config, file, self._engine, strict=False)
        try:
            self._observe.apply(self._engine, config)
        except GatewayError:
            plan.close()
            raise
        # Listeners keep their sockets: serving the old addresses while a config names new
        # ones is what a reload can do without dropping a connection. Say so.
        self._restart_required = restart_required(self._started_with, config)
        if self._restart_required:
            logger.warning(
                "reloaded, but %s changes apply only after a restart",
                ", ".join(self._restart_required),
            )
        old = self.plan
        self._engine.plan = plan.core
        self.plan = plan
        if old is not None:
            # Requests in flight may still run the old chain's hooks: release its policies
            # once they have had the drain timeout to finish.
            asyncio.get_running_loop().call_later(self.config.timeouts.drain, old.close)
        self.config = config
        self._config_file = file
        self.config_hash = self._hash_config(config, file)
        return plan

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, let in-flight exchanges finish (up to the drain timeout), close."""
        engine = self._engine
        if engine is None:
            return
        if drain_timeout is None:
            drain_timeout = self.config.timeouts.drain
        self.draining = True
        for server in self._servers:
            server.close()
        engine.begin_drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while engine.busy_connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        engine.close()
        self._observe.close(engine)
        if self.plan is not None:
            self.plan.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._engine = None
        if self._stopped is not None:
            self._stopped.set()

    def metrics_snapshot(self) -> dict[str, Any]:
        """This gateway's counters as plain data (fastgw.observe.metrics.merge/render)."""
        if self._engine is None:
            raise GatewayError("gateway not started")
        return self._engine.metrics_snapshot()

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of this gateway's metrics."""
        return render(merge([self.metrics_snapshot()]), reloads=self.reloads, workers=1)

    def reopen_logs(self) -> None:
        """Reopen the access log file (SIGUSR1, after logrotate moved it)."""
        self._observe.reopen()

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve(
        self,
        *,
        handle_signals: bool = True,
        on_ready: Any = None,
        reuse_port: bool = False,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        """Start, then serve until SIGTERM/SIGINT (drain) ; SIGHUP reloads the config file."""
        await self.start(reuse_port=reuse_port, sockets=sockets)
        loop = asyncio.get_running_loop()
        # Signal handlers first: whoever waits for the "listening" line may signal at once.
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: self._keep(loop.create_task(self.stop())))
            loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
            if self._config_file is not None:
                loop.add_signal_handler(
                    signal.SIGHUP, lambda: self._keep(loop.create_task(self._reload_logged()))
                )
        if on_ready is not None:
            on_ready(self)
        try:
            await self.wait_stopped()
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                    loop.remove_signal_handler(sig)

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception:  # the old Plan keeps serving; say why the new one did not
            for line in self.last_reload["errors"]:
                logger.error("%s: %s", RELOAD_REJECTED, line)
        else:
            logger.info("reloaded %s", self._config_file)

    def run(self) -> None:
        """Block: serve until SIGTERM/SIGINT, on a uvloop event loop."""
        import uvloop

        uvloop.run(self.serve())


class GatewayView:
    """What the admin API shows of a single-process Gateway (a fastgw.admin.AdminView)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def config(self) -> Config:
        return self.gateway.config

    @property
    def config_file(self) -> str | None:
        file = self.gateway.config_file
        return os.path.abspath(file) if file is not None else None

    @property
    def config_hash(self) -> str:
        return self.gateway.config_hash

    @property
    def last_reload(self) -> dict[str, Any]:
        return self.gateway.last_reload

    def ready(self) -> bool:
        return self.gateway.engine is not None and not self.gateway.draining

    def workers(self) -> list[int]:
        return [os.getpid()]

    def routes(self) -> list[dict[str, Any]]:
        plan = self.gateway.plan
        return plan.describe_routes() if plan is not None else []

    def upstreams(self) -> list[dict[str, Any]]:
        plan = self.gateway.plan
        pools = plan.pools if plan is not None else {}
        return [
            {
                "name": name,
                "targets": [
                    {
                        "host": target.host,
                        "port": target.port,
                        "open_connections": target.open_connections,
                        "idle_connections": target.idle_count,
                        "healthy": target.failures == 0,
                    }
                    for target in pool.target_list
                ],
            }
            for name, pool in pools.items()
        ]

    async def metrics(self) -> bytes:
        return self.gateway.metrics_text()

    async def reload(self) -> list[str]:
        """Reload the config file; the errors (none when it worked)."""
        try:
            await self.gateway.reload()
        except Exception:  # a bad file, a policy that cannot start, a file that vanished...
            return list(self.gateway.last_reload["errors"])
        return []
