"""Gateway configuration: strict Structs, file formats with ${VAR}, and cross-checks.

`load_config(path)` reads a YAML, TOML or JSON file; `parse_config(data)` takes parsed data;
both return a frozen `Config` or raise `ConfigError` / `ConfigErrors` with `$.path`s.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fastgw.config.checks import check_config, parse_listen_address, parse_target_url
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
    schema_hook,
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
    "config_schema",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_listen_address",
    "parse_target_url",
    "substitute_env",
]


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration file, for editors and CI."""
    # Round-trip through JSON so defaults held as tuples come back as plain lists.
    return msgspec.json.decode(
        msgspec.json.encode(msgspec.json.schema(Config, schema_hook=schema_hook))
    )
