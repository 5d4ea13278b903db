"""Which class a chain entry's key names: a registered name or a "module:attr" reference.

Registered names come from the built-ins and from installed distributions declaring an entry
point in the group `fastgw.policies` (`name = "package.module:PolicyClass"`). Entry points
are imported only when a configuration uses them, so a broken plugin breaks only its routes.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from fastgw.errors import ConfigError, raise_config_errors
from fastgw.policy.base import Policy

__all__ = ["ENTRY_POINT_GROUP", "PolicyRegistry", "load_reference"]

ENTRY_POINT_GROUP = "fastgw.policies"


@dataclass
class _Registration:
    origin: str  # where the name comes from, for error messages
    policy: type[Policy] | None = None
    entry_point: importlib.metadata.EntryPoint | None = None


class PolicyRegistry:
    """Policy names and their classes; `resolve()` turns a chain entry's key into a class."""

    def __init__(self, policies: Iterable[type[Policy]] = ()) -> None:
        self._entries: dict[str, _Registration] = {}
        errors: list[ConfigError] = []
        for policy in policies:
            try:
                self.register(policy)
            except ConfigError as exc:
                errors.append(exc)
        raise_config_errors(errors)

    @classmethod
    def default(cls) -> PolicyRegistry:
        """The built-ins plus every installed `fastgw.policies` entry point.

        Raises ConfigError(s) when two of them claim the same name.
        """
        from fastgw.policy.builtins import BUILTIN_POLICIES

        registry = cls(BUILTIN_POLICIES)
        registry.add_entry_points(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        return registry

    def register(self, policy: type[Policy], name: str | None = None) -> None:
        """Register `policy` under `name` (default: its `name` attribute)."""
        _check_policy_class(policy, f"{policy.__module__}:{policy.__qualname__}")
        name = name or policy.name
        if not name:
            raise ConfigError(f"policy class {policy.__qualname__} has no name to register")
        self._add(name, _Registration(f"{policy.__module__}:{policy.__qualname__}", policy))

    def add_entry_points(self, entry_points: Iterable[importlib.metadata.EntryPoint]) -> None:
        """Register entry points by name without importing them; duplicates are errors."""
        errors: list[ConfigError] = []
        seen: set[tuple[str, str]] = set()
        for entry_point in entry_points:
            # The same distribution found twice on sys.path declares the same pair twice.
            if (entry_point.name, entry_point.value) in seen:
                continue
            seen.add((entry_point.name, entry_point.value))
            distribution = getattr(entry_point, "dist", None)
            origin = f"{entry_point.value} (entry point"
            origin += f" of {distribution.name})" if distribution is not None else ")"
            try:
                self._add(entry_point.name, _Registration(origin, entry_point=entry_point))
            except ConfigError as exc:
                errors.append(exc)
        raise_config_errors(errors)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def resolve(self, reference: str, search: Sequence[str] = ()) -> type[Policy]:
        """The class a chain entry's key names; ConfigError (at "$") when there is none.

        A "module:attr" reference that is not importable from sys.path is looked for in the
        folders of `search` too (the config's `python_path` and the config file's folder).
        """
        registration = self._entries.get(reference)
        if registration is not None:
            if registration.policy is None:
                assert registration.entry_point is not None
                loaded = _load(registration.entry_point.load, registration.origin)
                registration.policy = _check_policy_class(loaded, registration.origin)
            return registration.policy
        if ":" in reference:
            return load_reference(reference, search)
        raise ConfigError(
            f"unknown policy {reference!r}",
            expected="one of: " + ", ".join(self.names()) + ", or a 'module:Class' reference",
        )

    def _add(self, name: str, registration: _Registration) -> None:
        if ":" in name or not name:
            raise ConfigError(
                f"invalid policy name {name!r} from {registration.origin}",
                expected="a name without ':' (that form is a module:attr reference)",
            )
        existing = self._entries.get(name)
        if existing is not None and existing.origin != registration.origin:
            raise ConfigError(
                f"policy name {name!r} is registered twice: by {existing.origin} "
                f"and by {registration.origin}",
                expected="unique names: uninstall or rename one of them",
            )
        self._entries[name] = registration


def load_reference(reference: str, search: Sequence[str] = ()) -> type[Policy]:
    """Import "package.module:Class" (attr may be dotted) and check it is a Policy subclass.

    The module is imported from sys.path; failing that, from the folders of `search` (in
    order) and then the current directory, which are added to the end of sys.path (so they
    never shadow an installed module) the first time they are needed. A policy module next
    to the configuration so works under the `fastgw` command without installing it.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"invalid policy reference {reference!r}", expected="'package.module:Class'"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not _is_missing(exc, module_name):
            raise _import_error(reference, exc) from None
        module = _import_from(module_name, reference, [*search, os.getcwd()], exc)
    except Exception as exc:
        raise _import_error(reference, exc) from None
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"cannot load policy {reference!r}: module {module_name!r} has no {part!r}",
                expected="'package.module:Class' naming a Policy subclass",
            ) from None
    return _check_policy_class(target, reference)


def _import_from(
    module_name: str, reference: str, folders: list[str], first: ModuleNotFoundError
) -> Any:
    """Import `module_name` from the first of `folders` that holds it."""
    top = module_name.partition(".")[0]
    for folder in dict.fromkeys(os.path.abspath(folder) for folder in folders):
        if importlib.machinery.PathFinder.find_spec(top, [folder]) is None:
            continue
        if folder not in sys.path:
            sys.path.append(folder)
        importlib.invalidate_caches()
        return _load(lambda: importlib.import_module(module_name), reference)
    looked = ", ".join(dict.fromkeys(os.path.abspath(folder) for folder in folders))
    raise ConfigError(
        f"cannot load policy {reference}: {type(first).__name__}: {first}",
        expected=f"a module on sys.path or in {looked} (add folders with python_path:)",
    )


def _is_missing(exc: ModuleNotFoundError, module_name: str) -> bool:
    return exc.name is not None and (module_name + ".").startswith(exc.name + ".")


def _load(loader: object, origin: str) -> object:
    try:
        return loader()  # type: ignore[operator]
    except Exception as exc:
        raise _import_error(origin, exc) from None


def _import_error(origin: str, exc: BaseException) -> ConfigError:
    return ConfigError(f"cannot load policy {origin}: {type(exc).__name__}: {exc}")


def _check_policy_class(candidate: object, origin: str) -> type[Policy]:
    if not (isinstance(candidate, type) and issubclass(candidate, Policy)):
        raise ConfigError(
            f"{origin} is not a policy",
            expected="a subclass of fastgw.policy.Policy",
            got=repr(candidate)[:80],
        )
    config = getattr(candidate, "Config", None)
    if not (isinstance(config, type) and issubclass(config, msgspec.Struct)):
        raise ConfigError(
            f"{origin} has an invalid Config",
            expected="a msgspec.Struct subclass (e.g. of fastgw.policy.PolicyConfig)",
            got=repr(config)[:80],
        )
    return candidate
