"""`fastgw run`: serve a config on uvloop until SIGTERM/SIGINT, reload on SIGHUP."""

from __future__ import annotations

import sys

import uvloop

from fastgw.api import Gateway
from fastgw.config import Config
from fastgw.errors import ConfigError, GatewayError


def _announce(gateway: Gateway) -> None:
    for host, port in gateway.addresses:
        shown = f"[{host}]" if ":" in host else host
        print(f"fastgw listening on http://{shown}:{port}", file=sys.stderr, flush=True)


def run(config: Config, config_file: str | None = None) -> int:
    """Serve until a stop signal; return the process exit code."""
    gateway = Gateway(config, config_file=config_file)
    try:
        uvloop.run(gateway.serve(on_ready=_announce))
    except (ConfigError, GatewayError) as exc:
        print(f"fastgw: {exc}", file=sys.stderr)
        return 1
    print("fastgw stopped", file=sys.stderr, flush=True)
    return 0
