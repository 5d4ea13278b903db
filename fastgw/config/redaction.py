"""Secrets in configuration: which values are secret, and how they are shown.

A secret is the value of a key named like one (`token`, `password`, `secret`, `api_key`,
`client_secret`, wherever it appears, policy configs included) or the password in a URL's
userinfo (`redis://:PASSWORD@host`). Nothing fastgw prints, logs or answers shows one: the
admin API's GET /config, the reprs of config Structs, and config error messages all go
through here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fastgw.errors import REDACTED, redact_text

__all__ = [
    "REDACTED",
    "is_secret_key",
    "redact",
    "redact_text",
    "redacted_config",
    "redacted_repr",
]

SECRET_KEYS = frozenset(
    {"token", "password", "secret", "api_key", "client_secret", "password_hash", "private_key"}
)


def is_secret_key(name: object) -> bool:
    """Whether a value stored under the key `name` is a secret."""
    return isinstance(name, str) and name.lower() in SECRET_KEYS


def redact(value: Any) -> Any:
    """A copy of plain data (dicts, lists, strings) with secrets replaced by REDACTED."""
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(key) and item is not None else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redacted_config(config: Any) -> dict[str, Any]:
    """The config as plain data, secrets hidden: the admin token, any key named like a
    secret (token, password, secret...) and passwords in URLs."""
    data: dict[str, Any] = redact(msgspec.to_builtins(config, enc_hook=_plain_duration))
    # A consumer's API keys are under `key` / `keys`, names too common to call secret
    # everywhere (a rate limit's `key` is not): hidden where they are credentials.
    for consumer in data.get("consumers") or ():
        for credential in consumer.get("credentials") or ():
            keys = credential.get("key_auth")
            if isinstance(keys, dict):
                if keys.get("key") is not None:
                    keys["key"] = REDACTED
                if keys.get("keys"):
                    keys["keys"] = [REDACTED for _ in keys["keys"]]
    return data


def _plain_duration(value: Any) -> Any:
    if isinstance(value, float):  # Duration
        return float(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def redacted_repr(struct: msgspec.Struct) -> str:
    """repr() of a config Struct with its secret fields and URL passwords hidden."""
    parts = []
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if is_secret_key(name) and value is not None:
            shown = repr(REDACTED)
        elif isinstance(value, str):
            shown = repr(redact_text(value))
        elif isinstance(value, dict | list | tuple):
            shown = repr(_redact_nested(value))
        else:
            shown = repr(value)
        parts.append(f"{name}={shown}")
    return f"{type(struct).__name__}({', '.join(parts)})"


def _redact_nested(value: Any) -> Any:
    # Structs inside containers repr themselves (redacted); plain data is redacted here.
    if isinstance(value, msgspec.Struct):
        return value
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(key) and item is not None else _redact_nested(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_nested(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact_nested(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
