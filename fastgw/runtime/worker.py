"""One worker of a supervisor (`fastgw run --workers N`): the ordinary gateway on sockets
the supervisor opened, and the worker's end of its control channel (metrics).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Coroutine
from typing import Any

import orjson
import uvloop

from fastgw import _core
from fastgw.config import Config
from fastgw.errors import ConfigError, GatewayError, redact_text
from fastgw.observe.logs import configure_error_log
from fastgw.runtime.gateway import Gateway
from fastgw.runtime.reload import RELOAD_REJECTED

__all__ = ["CONTROL_FRAME", "run_worker", "serve_control"]

logger = logging.getLogger("fastgw")

# A control answer's header: body length, then the sequence number of the request.
CONTROL_FRAME = struct.Struct(">IQ")


async def serve_control(gateway: Gateway, sock: socket.socket) -> None:
    """Answer the supervisor on the worker's control socket.

    Each request line b"metrics SEQ\n" gets one frame: 4-byte big-endian body length,
    8-byte big-endian SEQ, then this worker's metrics snapshot as JSON. SEQ lets the
    supervisor drop the late answer to a request it stopped waiting for (a worker that was
    stopped or slow) and read the answer to its current one.
    """
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            command, _, sequence = line.strip().partition(b" ")
            if command == b"metrics" and gateway.engine is not None:
                body = orjson.dumps(gateway.metrics_snapshot())
            else:
                body = b"{}"
            seq = int(sequence) if sequence.isdigit() else 0
            writer.write(CONTROL_FRAME.pack(len(body), seq) + body)
            await writer.drain()
    except (ConnectionError, OSError):
        return
    except Exception:  # the supervisor sees the closed socket; say why here
        logger.exception("worker %d: control channel failed", os.getpid())
    finally:
        writer.close()


def run_worker(
    config: Config,
    config_file: str,
    listen_fds: list[int],
    ready_fd: int,
    control_fd: int = -1,
    rate_fd: int = -1,
) -> int:
    """One worker of a supervisor: serve the listening sockets `listen_fds` (one per
    `config.listeners` entry, in order).

    Writes "ready" to `ready_fd` once listening and answers metrics requests on `control_fd`;
    `rate_fd` is the rate limit table all workers share.
    SIGTERM/SIGINT drain, SIGQUIT stops at once, SIGHUP reloads the file, SIGUSR1 reopens the
    access log; the worker also stops if its supervisor goes away.
    """
    try:
        configure_error_log(config.error_log)
    except OSError as exc:
        print(f"fastgw: cannot open error log {config.error_log.path}: {exc}", file=sys.stderr)
        return 1
    if rate_fd >= 0:
        _core.attach_rate_table(rate_fd, config.rate_limit_table.slots)
    sockets = [socket.socket(fileno=fd) for fd in listen_fds]
    gateway = Gateway(config, config_file=config_file, admin=False, embedded=False)
    parent = os.getppid()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []
        # The loop keeps only weak references to tasks, and a reload runs the cyclic GC: a
        # task parked on a socket read (the control channel) would be collected mid-wait.
        tasks: set[asyncio.Task[None]] = set()

        def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
            task = loop.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return task

        def stop(drain: float | None = None) -> None:
            if not stopping:
                stopping.append(spawn(gateway.stop(drain)))

        async def reload_logged() -> None:
            # One line per message: the workers share the supervisor's stderr.
            try:
                await gateway.reload()
            except Exception:  # the old Plan keeps serving; say why
                for line in gateway.last_reload["errors"]:
                    logger.error("worker %d: %s: %s", os.getpid(), RELOAD_REJECTED, line)
            else:
                logger.info("worker %d reloaded %s", os.getpid(), config_file)

        def reload() -> None:
            spawn(reload_logged())

        def on_ready(gw: Gateway) -> None:
            loop.add_signal_handler(signal.SIGTERM, stop)
            loop.add_signal_handler(signal.SIGINT, stop)
            loop.add_signal_handler(signal.SIGQUIT, stop, 0.0)
            loop.add_signal_handler(signal.SIGHUP, reload)
            loop.add_signal_handler(signal.SIGUSR1, gw.reopen_logs)
            if control_fd >= 0:
                control = socket.socket(fileno=control_fd)
                control.setblocking(False)
                spawn(serve_control(gw, control))
            spawn(orphan_check())
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)

        async def orphan_check() -> None:
            while not stopping:
                await asyncio.sleep(0.5)
                if os.getppid() != parent:
                    stop()

        await gateway.serve(handle_signals=False, on_ready=on_ready, sockets=sockets)

    try:
        uvloop.run(main())
    except (ConfigError, GatewayError) as exc:
        print(redact_text(f"fastgw: worker {os.getpid()}: {exc}"), file=sys.stderr)
        return 1
    return 0
