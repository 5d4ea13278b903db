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
import os
import signal
import socket
from typing import Any

from fastgw import _core
from fastgw.config import Config, load_config, parse_config, parse_listen_address
from fastgw.errors import GatewayError
from fastgw.plan import Plan, build_plan


class Gateway:
    """One gateway: its listeners, its engine and its current Plan."""

    def __init__(self, config: Config | dict[str, Any], *, config_file: str | None = None):
        self._config_file = config_file
        self.config = config if isinstance(config, Config) else parse_config(config, config_file)
        self.plan: Plan | None = None
        self._engine: Any = None
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped: asyncio.Event | None = None

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

    async def start(self, *, reuse_port: bool = False) -> None:
        """Listen and serve; `reuse_port` opens the listeners with SO_REUSEPORT, so that
        several processes can share them (the kernel spreads connections among them)."""
        if self._engine is not None:
            raise GatewayError("gateway already started")
        loop = asyncio.get_running_loop()
        engine = _core.Engine(loop)
        plan = build_plan(self.config, self._config_file, engine, strict=False)
        engine.plan = plan.core
        self._engine = engine
        self.plan = plan
        self._stopped = asyncio.Event()
        try:
            for address in self.config.listen:
                host, port = parse_listen_address(address)
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                server = await loop.create_server(
                    engine.protocol_factory,
                    host,
                    port,
                    family=family,
                    reuse_address=True,
                    reuse_port=reuse_port or None,
                    backlog=1024,
                )
                self._servers.append(server)
        except OSError as exc:
            for server in self._servers:
                server.close()
            self._servers.clear()
            engine.close()
            self._engine = None
            raise GatewayError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        engine.start()

    async def reload(
        self, config: Config | dict[str, Any] | str | os.PathLike[str] | None = None
    ) -> Plan:
        """Compile a new Plan and swap it in; on any error the current Plan keeps serving.

        In-flight requests finish on the Plan they started with; new requests use the new one.
        Listener changes are not applied by a reload (they need a restart).
        """
        if self._engine is None:
            raise GatewayError("gateway not started")
        file = self._config_file
        if config is None:
            if file is None:
                raise GatewayError("no config file to reload from")
            config = load_config(file)
        elif isinstance(config, str | os.PathLike):
            file = str(config)
            config = load_config(config)
        elif not isinstance(config, Config):
            config = parse_config(config, file)
        plan = build_plan(config, file, self._engine, strict=False)
        old = self.plan
        self._engine.plan = plan.core
        self.plan = plan
        if old is not None:
            # Requests in flight may still run the old chain's hooks: release its policies
            # once they have had the drain timeout to finish.
            asyncio.get_running_loop().call_later(self.config.timeouts.drain, old.close)
        self.config = config
        self._config_file = file
        return plan

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, let in-flight exchanges finish (up to the drain timeout), close."""
        engine = self._engine
        if engine is None:
            return
        if drain_timeout is None:
            drain_timeout = self.config.timeouts.drain
        for server in self._servers:
            server.close()
        engine.begin_drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while engine.busy_connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        engine.close()
        if self.plan is not None:
            self.plan.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._engine = None
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve(
        self, *, handle_signals: bool = True, on_ready: Any = None, reuse_port: bool = False
    ) -> None:
        """Start, then serve until SIGTERM/SIGINT (drain) ; SIGHUP reloads the config file."""
        await self.start(reuse_port=reuse_port)
        loop = asyncio.get_running_loop()
        if on_ready is not None:
            on_ready(self)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: loop.create_task(self.stop()))
            if self._config_file is not None:
                loop.add_signal_handler(
                    signal.SIGHUP, lambda: loop.create_task(self._reload_logged())
                )
        try:
            await self.wait_stopped()
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

    async def _reload_logged(self) -> None:
        import sys

        try:
            await self.reload()
        except Exception as exc:  # the old Plan keeps serving; say why the new one did not
            print(f"reload failed, still serving the previous config:\n{exc}", file=sys.stderr)
        else:
            print(f"reloaded {self._config_file}", file=sys.stderr)

    def run(self) -> None:
        """Block: serve until SIGTERM/SIGINT, on a uvloop event loop."""
        import uvloop

        uvloop.run(self.serve())
