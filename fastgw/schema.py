"""The JSON Schema of a configuration file (`fastgw schema`), for editors and CI: the config
Structs, with every built-in policy's options in place of a chain entry's open mapping.

It lives above both fastgw.config and fastgw.policy, which it combines.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fastgw.config import Config
from fastgw.config.schema import schema_hook
from fastgw.policy.builtins import BUILTIN_POLICIES

__all__ = ["SCHEMA_DESCRIPTION", "config_schema"]

SCHEMA_DESCRIPTION = (
    "fastgw gateway configuration (YAML, TOML or JSON). `listen` sets the addresses, "
    "`upstreams` the backends, `routes` which requests go where; `policies` on a route, in "
    "`policy_groups` or `global_policies` add authentication, limits and header changes, each "
    "entry one built-in name (whose options are described here) or a 'module:Class' "
    "reference to a Python policy. Durations are '250ms', '10s', '5m' or seconds; "
    "${VAR} and ${VAR:-default} come from the environment. Check a file with `fastgw check`."
)


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration file, for editors and CI.

    A policy chain entry's schema lists every built-in policy with its own options, so an
    editor completes `rate_limit:` settings; a "module:Class" entry takes any mapping.
    """
    configs = [policy.Config for policy in BUILTIN_POLICIES]
    (config_ref, *policy_refs), components = msgspec.json.schema_components(
        [Config, *configs], schema_hook=schema_hook
    )
    entry = {
        "description": "one policy: a built-in name, or a 'module:Class' Python policy, with "
        "its options",
        "anyOf": [
            {
                "type": "object",
                "properties": {policy.name: {"anyOf": [ref, {"type": "null"}]}},
                "required": [policy.name],
                "additionalProperties": False,
                "description": _first_line(policy.__doc__),
            }
            for policy, ref in zip(BUILTIN_POLICIES, policy_refs, strict=True)
        ]
        + [
            {
                "type": "object",
                "patternProperties": {r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$": {}},
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "description": "a Python policy: 'package.module:Class' with its Config",
            }
        ],
    }
    chain = {"type": "array", "items": entry, "default": []}
    components["Config"]["properties"]["global_policies"] = chain
    components["Config"]["properties"]["policy_groups"]["additionalProperties"] = chain
    components["Route"]["properties"]["policies"] = chain
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fastgw configuration",
        "description": SCHEMA_DESCRIPTION,
        **config_ref,
        "$defs": components,
    }
    # Round-trip through JSON so defaults held as tuples come back as plain lists.
    return msgspec.json.decode(msgspec.json.encode(schema))


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ")
