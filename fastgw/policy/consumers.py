"""Consumers: who calls the APIs, and the tables authentication policies look them up in.

`consumers:` in the config lists them with their credentials; the plan builds one
`ConsumerTable` per configuration (keys, basic-auth usernames, names and ids) and gives it
to every policy at provisioning (`ProvisionContext.consumers`). On success an
authentication policy puts the `Consumer` on the request (`request.consumer`); its
identity fields (X-Consumer-ID, X-Consumer-Username, X-Consumer-Groups by default) are
rendered here once, so the core only copies bytes per request.

Nothing here shows a secret: a Consumer holds no credential, and the table's repr counts
what it holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from fastgw.config.schema import Config, ConsumerEntry, IdentityHeaders, json_path
from fastgw.errors import ConfigError
from fastgw.policy.base import check_header_name, check_header_value

__all__ = ["Consumer", "ConsumerTable", "build_consumers", "identity_field_names"]

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_ARGON2_PREFIXES = ("$argon2id$", "$argon2i$", "$argon2d$")


class Consumer:
    """A consumer as policies see it: name, id, groups, metadata (read-only).

    `str(consumer)` is its id (rate limit keys, the access log)."""

    __slots__ = ("anonymous_head", "group_set", "groups", "id", "identity_head", "metadata", "name")

    name: str
    id: str
    groups: tuple[str, ...]
    group_set: frozenset[str]
    metadata: Mapping[str, Any]
    identity_head: bytes | None
    anonymous_head: bytes | None

    def __init__(
        self,
        name: str,
        id: str | None = None,  # noqa: A002 - the config's own word
        groups: tuple[str, ...] = (),
        metadata: Mapping[str, Any] | None = None,
        identity: IdentityHeaders | None = None,
    ) -> None:
        self.name = name
        self.id = name if id is None else id
        self.groups = tuple(groups)
        self.group_set = frozenset(groups)
        self.metadata = MappingProxyType(dict(metadata or {}))
        head = _identity_lines(self, identity or IdentityHeaders())
        self.identity_head = head or None
        anonymous = (identity or IdentityHeaders()).anonymous
        if anonymous is not None:
            head += check_header_name(anonymous).encode() + b": true\r\n"
        self.anonymous_head = head or None

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"Consumer(name={self.name!r}, id={self.id!r}, groups={list(self.groups)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Consumer) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def _identity_lines(consumer: Consumer, names: IdentityHeaders) -> bytes:
    lines = []
    for field, value in (
        (names.consumer_id, consumer.id),
        (names.consumer_username, consumer.name),
        (names.consumer_groups, ", ".join(consumer.groups) if consumer.groups else None),
    ):
        if field is not None and value is not None:
            lines.append(check_header_name(field).encode() + b": " + check_header_value(value))
    return b"".join(line + b"\r\n" for line in lines)


def identity_field_names(names: IdentityHeaders) -> tuple[bytes, ...]:
    """The lowercase identity field names: routes that authenticate drop client copies."""
    return tuple(
        check_header_name(name).encode()
        for name in (
            names.consumer_id,
            names.consumer_username,
            names.consumer_groups,
            names.scope,
            names.anonymous,
        )
        if name is not None
    )


class ConsumerTable:
    """Every consumer of a configuration, and their credentials by kind."""

    def __init__(self, identity: IdentityHeaders | None = None) -> None:
        self.identity = identity or IdentityHeaders()
        self.by_name: dict[str, Consumer] = {}
        self.by_id: dict[str, Consumer] = {}
        # key_auth: the key's bytes -> Consumer; basic_auth: username -> (hash, Consumer)
        self.keys: dict[bytes, Consumer] = {}
        self.basic: dict[str, tuple[str, Consumer]] = {}

    def __repr__(self) -> str:
        return (
            f"ConsumerTable({len(self.by_name)} consumers, {len(self.keys)} keys, "
            f"{len(self.basic)} basic users)"
        )

    def __iter__(self) -> Iterator[Consumer]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name_or_id: str) -> Consumer | None:
        """The consumer with this name, else with this id, else None."""
        return self.by_name.get(name_or_id) or self.by_id.get(name_or_id)


def build_consumers(
    config: Config, file: str | None = None
) -> tuple[ConsumerTable, list[ConfigError]]:
    """The ConsumerTable of `config`, and every problem found (each with its `$.path`)."""
    errors: list[ConfigError] = []
    identity = config.identity_headers
    for field in IdentityHeaders.__struct_fields__:
        name = getattr(identity, field)
        if name is None:
            continue
        try:
            check_header_name(name)
        except ValueError as exc:
            errors.append(ConfigError(str(exc), json_path(["identity_headers", field]), file=file))
    if errors:
        identity = IdentityHeaders()
    table = ConsumerTable(identity)
    key_owner: dict[bytes, str] = {}
    base = os.path.dirname(os.path.abspath(file)) if file is not None else os.getcwd()
    for index, entry in enumerate(config.consumers):
        at = ["consumers", index]
        consumer = _consumer(entry, identity, at, errors, file)
        if consumer is None:
            continue
        if entry.name in table.by_name:
            errors.append(
                ConfigError(
                    f"consumer {entry.name!r} is defined twice", json_path([*at, "name"]), file=file
                )
            )
            continue
        if consumer.id in table.by_id:
            errors.append(
                ConfigError(
                    f"consumer id {consumer.id!r} is used by consumer "
                    f"{table.by_id[consumer.id].name!r} too",
                    json_path([*at, "id"]),
                    file=file,
                )
            )
            continue
        table.by_name[consumer.name] = consumer
        table.by_id[consumer.id] = consumer
        for position, credential in enumerate(entry.credentials):
            where = [*at, "credentials", position]
            kinds = [
                kind for kind in ("key_auth", "basic_auth") if getattr(credential, kind) is not None
            ]
            if len(kinds) != 1:
                errors.append(
                    ConfigError(
                        "a credential is one of key_auth or basic_auth",
                        json_path(where),
                        expected="{key_auth: {key: ...}} or "
                        "{basic_auth: {username, password_hash}}",
                        got=", ".join(kinds) or "neither",
                    )
                )
                continue
            if credential.key_auth is not None:
                for key, key_at in _keys_of(
                    credential.key_auth, [*where, "key_auth"], base, errors, file
                ):
                    owner = key_owner.get(key)
                    if owner is not None:
                        # The key itself is never shown: naming where it was seen is enough.
                        errors.append(
                            ConfigError(
                                f"this API key is already a key of consumer {owner!r}",
                                json_path(key_at),
                                file=file,
                            )
                        )
                        continue
                    key_owner[key] = consumer.name
                    table.keys[key] = consumer
            else:
                basic = credential.basic_auth
                assert basic is not None
                hash_at = json_path([*where, "basic_auth", "password_hash"])
                if not basic.password_hash.startswith(_BCRYPT_PREFIXES + _ARGON2_PREFIXES):
                    errors.append(
                        ConfigError(
                            "password_hash is not a bcrypt or argon2 hash",
                            hash_at,
                            expected="a bcrypt hash ($2b$12$...) or an argon2 hash ($argon2id$...)",
                            got="another format (hidden)",
                        )
                    )
                    continue
                if basic.username in table.basic:
                    errors.append(
                        ConfigError(
                            f"basic_auth username {basic.username!r} is a credential of consumer "
                            f"{table.basic[basic.username][1].name!r} too",
                            json_path([*where, "basic_auth", "username"]),
                            file=file,
                        )
                    )
                    continue
                table.basic[basic.username] = (basic.password_hash, consumer)
    for error in errors:
        error.file = file
    return table, errors


def _consumer(
    entry: ConsumerEntry,
    identity: IdentityHeaders,
    at: list[Any],
    errors: list[ConfigError],
    file: str | None,
) -> Consumer | None:
    for field in ("name", "id"):
        value = getattr(entry, field)
        if value is None:
            continue
        try:
            check_header_value(value)
        except ValueError:
            errors.append(
                ConfigError(
                    f"consumer {field} has control characters or surrounding spaces",
                    json_path([*at, field]),
                    expected="printable text (it is sent upstream in a header field)",
                    file=file,
                )
            )
            return None
    return Consumer(entry.name, entry.id, entry.groups, entry.metadata, identity)


def _keys_of(
    credential: Any, at: list[Any], base: str, errors: list[ConfigError], file: str | None
) -> Iterator[tuple[bytes, list[Any]]]:
    if credential.key is None and not credential.keys and credential.key_file is None:
        errors.append(
            ConfigError(
                "key_auth needs key, keys or key_file",
                json_path(at),
                expected="key: ${ENV_VAR}",
                file=file,
            )
        )
        return
    if credential.key is not None:
        yield credential.key.encode("utf-8"), [*at, "key"]
    for index, key in enumerate(credential.keys):
        yield key.encode("utf-8"), [*at, "keys", index]
    if credential.key_file is not None:
        path = os.path.join(base, credential.key_file)
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            # Never the file's bytes: a decode error would quote them.
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            errors.append(
                ConfigError(
                    f"cannot read key_file {credential.key_file!r}: {reason}",
                    json_path([*at, "key_file"]),
                    file=file,
                )
            )
            return
        found = False
        for line in lines:
            key = line.strip()
            if key and not key.startswith("#"):
                found = True
                yield key.encode("utf-8"), [*at, "key_file"]
        if not found:
            errors.append(
                ConfigError("key_file holds no key", json_path([*at, "key_file"]), file=file)
            )
