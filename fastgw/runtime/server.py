"""`fastgw run`: serve a config on uvloop until SIGTERM/SIGINT, reload on SIGHUP.

With one worker (the default) this process serves. With more, fastgw.runtime.supervisor starts
that many worker processes, each running fastgw.runtime.worker.run_worker on listening sockets
the supervisor opened.
"""

from __future__ import annotations

import sys

import uvloop

from fastgw.admin.server import log_address
from fastgw.config import Config
from fastgw.errors import ConfigError, GatewayError, redact_text
from fastgw.observe.logs import configure_error_log
from fastgw.runtime.gateway import Gateway
from fastgw.runtime.listeners import shown_address
from fastgw.runtime.supervisor import Supervisor, resolve_workers
from fastgw.runtime.watch import watch_in_thread

__all__ = ["run"]


def _announce(gateway: Gateway) -> None:
    for host, port in gateway.addresses:
        print(f"fastgw listening on http://{shown_address(host, port)}", flush=True)
    if gateway.admin is not None:
        log_address(gateway.admin)


def run(config: Config, config_file: str | None = None, *, watch: bool = False) -> int:
    """Serve until a stop signal; return the process exit code."""
    try:
        configure_error_log(config.error_log)
    except OSError as exc:
        print(f"fastgw: cannot open error log {config.error_log.path}: {exc}", file=sys.stderr)
        return 1
    if config_file is not None:
        workers = resolve_workers(config)
        if workers > 1:
            try:
                return Supervisor(config, config_file, workers, watch=watch).run()
            except GatewayError as exc:
                print(redact_text(f"fastgw: {exc}"), file=sys.stderr)
                return 1
        if watch:
            watch_in_thread(config_file)
    gateway = Gateway(config, config_file=config_file, embedded=False)
    try:
        uvloop.run(gateway.serve(on_ready=_announce))
    except (ConfigError, GatewayError) as exc:
        print(redact_text(f"fastgw: {exc}"), file=sys.stderr)
        return 1
    print("fastgw stopped", file=sys.stderr, flush=True)
    return 0
