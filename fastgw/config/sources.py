"""Where configurations come from: YAML, TOML and JSON files, and ${VAR} substitution."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from fastgw.config.checks import check_config
from fastgw.config.schema import (
    Config,
    PartialConfig,
    collect_config_errors,
    decode_config,
    json_path,
    reported_at,
)
from fastgw.errors import ConfigError, raise_config_errors

__all__ = ["load_config", "parse_config", "read_source", "substitute_env"]


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, substitute, decode and cross-check a YAML, TOML or JSON configuration file.

    Raises ConfigError (or ConfigErrors, holding every cross-check error) naming the file.
    """
    file = os.fspath(path)
    return parse_config(read_source(file), file=file)


def parse_config(data: Mapping[str, Any] | Config, file: str | None = None) -> Config:
    """Build a checked Config from already-parsed data, or check a Config built in Python.

    `${VAR}` references in string values of `data` are substituted from the environment
    (not in a Config: its values are taken as they are). Every problem is reported at once:
    the ConfigError(s) raised carry `partial`, the PartialConfig of what did decode, so a
    caller can run later checks (policies, the router) on it too.
    """
    env_errors: list[ConfigError] = []
    if isinstance(data, Config):
        # A Config built in Python skipped the Meta constraints: decode it again to check them.
        data = msgspec.to_builtins(data)
    elif isinstance(data, Mapping):
        data = _substitute(data, [], os.environ, env_errors, file)
    else:
        raise ConfigError(
            "a configuration is a mapping", file=file, expected="a mapping", got=type(data).__name__
        )
    try:
        config = decode_config(data, file=file)
    except ConfigError:
        partial, errors = collect_config_errors(data, file)
    else:
        partial, errors = PartialConfig(config, tuple(range(len(config.routes)))), []
    if partial is not None:
        checked = partial.renumber(check_config(partial.config))
        # A part that failed to decode was checked as its default: its error is said once.
        decoded_errors = [error.path for error in errors]
        checked = [error for error in checked if not reported_at(error.path, decoded_errors)]
        errors.extend(_with_file(checked, file))
    if env_errors:
        # A value whose reference is unset decodes as its "${NAME}" text: say only the
        # reference's error there.
        unset = {error.path for error in env_errors}
        errors = env_errors + [error for error in errors if error.path not in unset]
    if errors:
        _raise_with_partial(errors, partial)
    assert partial is not None
    return partial.config


def _with_file(errors: list[ConfigError], file: str | None) -> list[ConfigError]:
    for error in errors:
        error.file = file
    return errors


def _raise_with_partial(errors: list[ConfigError], partial: PartialConfig | None) -> None:
    try:
        raise_config_errors(errors)
    except ConfigError as exc:
        exc.partial = partial
        raise


def read_source(file: str) -> dict[str, Any]:
    """Parse a configuration file by its extension (.yaml, .yml, .toml, .json) into plain data."""
    parse = _PARSERS.get(Path(file).suffix.lower())
    if parse is None:
        raise ConfigError(
            "unsupported file type",
            file=file,
            expected="a .yaml, .yml, .toml or .json file",
            got=repr(Path(file).suffix or file),
        )
    try:
        with open(file, "rb") as stream:
            raw = stream.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", file=file) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", file=file) from None
    data = parse(text, file)
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level must be a mapping",
            file=file,
            expected="a mapping of settings",
            got="an empty file" if data is None else type(data).__name__,
        )
    return data


class _StrictYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if isinstance(key, list | dict):
                continue  # unhashable: construct_mapping reports it with its position
            if key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "alias" in f"{exc.context} {exc.problem}":
            # "*" starts a YAML alias: the usual cause is an unquoted wildcard host.
            problem += " (quote values that start with '*', like \"*.example.com\")"
        raise _syntax_error(
            "YAML",
            problem,
            file,
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise _syntax_error("YAML", str(exc), file, None, None) from None


_TOML_POSITION = re.compile(
    r"^(?P<problem>.*?)\s*\("
    r"(?:at line (?P<line>\d+), column (?P<column>\d+)|(?P<end>at end of document))\)$"
)


def _parse_toml(text: str, file: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (3.11) puts the position only into the message text.
        found = _TOML_POSITION.match(str(exc))
        if found is None:
            raise _syntax_error("TOML", str(exc), file, None, None) from None
        if found.group("end"):
            problem = found.group("problem")
            message = f"TOML syntax error at the end of the file: {problem}"
            raise ConfigError(message, file=file) from None
        line, column = int(found.group("line")), int(found.group("column"))
        raise _syntax_error("TOML", found.group("problem"), file, line, column) from None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse_json(text: str, file: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise _syntax_error("JSON", exc.msg, file, exc.lineno, exc.colno) from None
    except ValueError as exc:
        raise _syntax_error("JSON", str(exc), file, None, None) from None


def _syntax_error(
    language: str, problem: str, file: str, line: int | None, column: int | None
) -> ConfigError:
    where = f" at line {line}, column {column}" if line is not None else ""
    return ConfigError(
        f"{language} syntax error{where}: {problem}", file=file, line=line, column=column
    )


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    ".yaml": _parse_yaml,
    ".yml": _parse_yaml,
    ".toml": _parse_toml,
    ".json": _parse_json,
}

# "$${" is a literal "${"; "${NAME}" and "${NAME:-default}" are references; any other "${"
# is an error rather than text passed through by accident.
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?$", re.S)


def substitute_env(
    data: Any, file: str | None = None, environ: Mapping[str, str] | None = None
) -> Any:
    """Return a copy of `data` with `${VAR}` / `${VAR:-default}` replaced in string values.

    Keys are left alone. `${VAR:-default}` uses the default when VAR is unset or empty, as in
    a POSIX shell. Raises ConfigError(s) naming each `$.path` with an unset or bad reference.
    """
    env = os.environ if environ is None else environ
    errors: list[ConfigError] = []
    result = _substitute(data, [], env, errors, file)
    raise_config_errors(errors)
    return result


def _substitute(
    value: Any,
    path: list[str | int],
    env: Mapping[str, str],
    errors: list[ConfigError],
    file: str | None,
) -> Any:
    if isinstance(value, str):
        return _substitute_text(value, path, env, errors, file) if "${" in value else value
    if isinstance(value, Mapping):
        return {k: _substitute(v, [*path, str(k)], env, errors, file) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_substitute(v, [*path, i], env, errors, file) for i, v in enumerate(value)]
    return value


def _substitute_text(
    text: str,
    path: list[str | int],
    env: Mapping[str, str],
    errors: list[ConfigError],
    file: str | None,
) -> str:
    def replace(found: re.Match[str]) -> str:
        whole = found.group(0)
        if whole == "$${":
            return "${"
        body = found.group("body")
        reference = _REFERENCE_BODY.match(body) if body is not None else None
        if reference is None or "${" in (reference.group("default") or ""):
            errors.append(
                ConfigError(
                    f"invalid environment reference {whole!r}",
                    json_path(path),
                    file=file,
                    expected="${NAME} or ${NAME:-default} (write $${ for a literal ${)",
                )
            )
            return whole
        name, default = reference.group("name"), reference.group("default")
        current = env.get(name)
        if default is not None and not current:
            return default
        if current is None:
            errors.append(
                ConfigError(
                    f"environment variable {name} is not set",
                    json_path(path),
                    file=file,
                    expected=f"{name} in the environment, or a default: ${{{name}:-value}}",
                )
            )
            return whole
        return current

    return _REFERENCE.sub(replace, text)
