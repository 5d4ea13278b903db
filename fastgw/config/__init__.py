"""Gateway configuration: strict Structs, file formats with ${VAR}, and cross-checks.

`load_config(path)` reads a YAML, TOML or JSON file; `parse_config(data)` takes parsed data;
both return a frozen `Config` or raise `ConfigError` / `ConfigErrors` with `$.path`s.
"""

from __future__ import annotations

from fastgw.config.checks import (
    check_config,
    config_warnings,
    parse_listen_address,
    parse_target_url,
)
from fastgw.config.schema import (
    ALLOWED_METHODS,
    Admin,
    Config,
    Keepalive,
    Limits,
    Listener,
    Match,
    Route,
    Target,
    Timeouts,
    Upstream,
    parse_duration,
)
from fastgw.config.sources import load_config, parse_config, substitute_env

__all__ = [
    "ALLOWED_METHODS",
    "Admin",
    "Config",
    "Keepalive",
    "Limits",
    "Listener",
    "Match",
    "Route",
    "Target",
    "Timeouts",
    "Upstream",
    "check_config",
    "config_warnings",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_listen_address",
    "parse_target_url",
    "substitute_env",
]
