"""Policy chains: every route's list of provisioned policies, built once per plan.

A route's chain is `global_policies`, then its `groups` in the order listed, then its own
`policies`. Each entry is resolved and its config decoded once; the policy itself is
provisioned once per route using it, so a group's templates can use that route's captures.
A failing entry disables only the routes whose chain holds it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fastgw.config.schema import Config, decode_value, json_path
from fastgw.errors import ConfigError
from fastgw.policy.base import Policy, PolicyConfigError, ProvisionContext
from fastgw.policy.consumers import ConsumerTable
from fastgw.policy.registry import PolicyRegistry

__all__ = ["ProvisionedPolicy", "RouteChain", "RouteChains", "build_route_chains"]

logger = logging.getLogger("fastgw.policy")

Segments = list[str | int]


@dataclass
class ProvisionedPolicy:
    """One provisioned policy of one route's chain."""

    name: str  # the chain entry's key: a registered name or a "module:attr" reference
    path: str  # "$.routes[2].policies[0]", "$.global_policies[0]", ...
    policy: Policy


@dataclass(slots=True)
class RouteChain:
    """The policies of one route, in the order they run; `errors` disable the route."""

    policies: list[ProvisionedPolicy]
    errors: list[ConfigError]
    route: str = ""
    entries: list[str] = field(default_factory=list)  # every entry's key, provisioned or not

    @property
    def disabled(self) -> bool:
        return bool(self.errors)

    def describe(self) -> list[str]:
        """The chain's entry names in order, e.g. for `fastgw routes`."""
        return list(self.entries)

    def close(self) -> None:
        """Close every provisioned policy; a failing close() is logged, never raised."""
        for provisioned in self.policies:
            _close(provisioned)


class RouteChains(list[RouteChain]):
    """One RouteChain per route, in config order; `errors` holds every problem once.

    An error in a global or group entry is reported once, naming the routes it disables;
    `errors` also holds problems of groups no route uses.
    """

    def __init__(self, chains: Iterable[RouteChain], errors: list[ConfigError]) -> None:
        super().__init__(chains)
        self.errors = errors

    def close(self) -> None:
        for chain in self:
            chain.close()


@dataclass
class _Entry:
    """A chain entry resolved and decoded, ready to be provisioned per route."""

    key: str
    segments: Segments
    shared: bool  # a global or group entry, provisioned for every route using it
    policy: type[Policy] | None = None
    config: Any = None
    error: ConfigError | None = None

    @property
    def path(self) -> str:
        return json_path(self.segments)


class _Errors:
    """Collects errors once each; shared-entry errors learn which routes they disable."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self.ordered: list[ConfigError] = []
        self._shared: dict[tuple[Any, ...], tuple[ConfigError, list[str]]] = {}

    def add(self, error: ConfigError, route: str | None, *, shared: bool) -> ConfigError:
        error.file = self.file
        if not shared:
            self.ordered.append(error)
            return error
        key = (error.path, error.message, error.expected, error.got)
        if key not in self._shared:
            self._shared[key] = (error, [])
            self.ordered.append(error)
        kept, routes = self._shared[key]
        if route is not None and route not in routes:
            routes.append(route)
        return kept

    def finish(self) -> list[ConfigError]:
        for error, routes in self._shared.values():
            if routes:
                names = ", ".join(repr(name) for name in routes)
                plural = "s" if len(routes) > 1 else ""
                error.message += f" (in the chain{plural} of route{plural} {names})"
        return self.ordered


def build_route_chains(
    config: Config,
    route_params: Sequence[Sequence[str]],
    file: str | None = None,
    registry: PolicyRegistry | None = None,
    consumers: ConsumerTable | None = None,
) -> RouteChains:
    """One RouteChain per route, in config order.

    `route_params[i]` are the capture names available on every path pattern of route i.
    Raises ConfigError only for a broken installation (two policies registering one name).
    """
    if len(route_params) != len(config.routes):
        raise ValueError(f"{len(route_params)} route_params for {len(config.routes)} routes")
    if registry is None:
        registry = PolicyRegistry.default()
    errors = _Errors(file)
    strict_configs: dict[type[msgspec.Struct], type[msgspec.Struct]] = {}

    search = policy_search_path(config, file)

    def prepare(entries: Iterable[dict[str, Any]], base: Segments, shared: bool) -> list[_Entry]:
        prepared = [
            _prepare(entry, [*base, index], shared, registry, strict_configs, search)
            for index, entry in enumerate(entries)
        ]
        for entry in prepared:
            # Shared entries are reported even when no route uses them; a route's own
            # entries are reported when its chain is provisioned.
            if shared and entry.error is not None:
                entry.error = errors.add(entry.error, None, shared=True)
        return prepared

    global_entries = prepare(config.global_policies, ["global_policies"], True)
    group_entries = {
        name: prepare(entries, ["policy_groups", name], True)
        for name, entries in config.policy_groups.items()
    }
    chains: list[RouteChain] = []
    for index, (route, params) in enumerate(zip(config.routes, route_params, strict=True)):
        if not (global_entries or route.groups or route.policies):
            # PERF: most routes have no policies; their chain is empty, nothing to provision.
            chains.append(RouteChain(policies=[], errors=[], route=route.name))
            continue
        entries = list(global_entries)
        for group in route.groups:
            entries.extend(group_entries.get(group, ()))
        entries.extend(prepare(route.policies, ["routes", index, "policies"], False))
        chains.append(_provision(route.name, tuple(params), entries, errors, file, consumers))
    return RouteChains(chains, errors.finish())


def policy_search_path(config: Config, file: str | None) -> list[str]:
    """Where "module:attr" policies are looked for beyond sys.path: the config's
    `python_path` folders (relative ones from the config file's folder), then that folder."""
    base = os.path.dirname(os.path.abspath(file)) if file is not None else os.getcwd()
    folders = [os.path.normpath(os.path.join(base, folder)) for folder in config.python_path]
    if file is not None:
        folders.append(base)
    return folders


def _prepare(
    raw: dict[str, Any],
    segments: Segments,
    shared: bool,
    registry: PolicyRegistry,
    strict_configs: dict[type[msgspec.Struct], type[msgspec.Struct]],
    search: Sequence[str],
) -> _Entry:
    if len(raw) != 1:
        entry = _Entry(key="?", segments=segments, shared=shared)
        entry.error = ConfigError(
            "a policy entry is a mapping with exactly one key, the policy name",
            entry.path,
            expected="{name: {options}}",
            got=f"{len(raw)} keys",
        )
        return entry
    ((key, value),) = raw.items()
    entry = _Entry(key=str(key), segments=segments, shared=shared)
    try:
        entry.policy = registry.resolve(entry.key, search)
    except ConfigError as exc:
        exc.path = entry.path
        entry.error = exc
        return entry
    config_type = _strict(entry.policy.Config, strict_configs)
    try:
        entry.config = decode_value({} if value is None else value, config_type, [*segments, key])
    except ConfigError as exc:
        entry.error = exc
    return entry


def _strict(
    config_type: type[msgspec.Struct], cache: dict[type[msgspec.Struct], type[msgspec.Struct]]
) -> type[msgspec.Struct]:
    """`config_type`, or a subclass of it that rejects unknown keys (a typo must not pass)."""
    if config_type.__struct_config__.forbid_unknown_fields:
        return config_type
    if config_type not in cache:
        cache[config_type] = type(
            config_type.__name__,
            (config_type,),
            {"__module__": config_type.__module__, "__qualname__": config_type.__qualname__},
            forbid_unknown_fields=True,
        )
    return cache[config_type]


def _provision(
    route: str,
    params: tuple[str, ...],
    entries: list[_Entry],
    errors: _Errors,
    file: str | None,
    consumers: ConsumerTable | None = None,
) -> RouteChain:
    chain = RouteChain(policies=[], errors=[], route=route)
    for entry in entries:
        chain.entries.append(entry.key)
        if entry.error is not None:
            chain.errors.append(errors.add(entry.error, route, shared=entry.shared))
            continue
        assert entry.policy is not None
        context = ProvisionContext(
            route_name=None if entry.shared else route,
            route_params=params,
            path=entry.path,
            file=file,
            consumers=consumers,
        )
        try:
            policy = entry.policy(entry.config, context)
        except PolicyConfigError as exc:
            error = ConfigError(
                exc.message,
                json_path([*entry.segments, entry.key, *_at_segments(exc.at)]),
                expected=exc.expected,
                got=exc.got,
            )
            chain.errors.append(errors.add(error, route, shared=entry.shared))
        except Exception as exc:
            error = ConfigError(
                f"policy {entry.key!r} failed to start: {type(exc).__name__}: {exc}", entry.path
            )
            logger.debug("provisioning %s at %s failed", entry.key, entry.path, exc_info=True)
            chain.errors.append(errors.add(error, route, shared=entry.shared))
        else:
            chain.policies.append(ProvisionedPolicy(entry.key, entry.path, policy))
    if chain.errors:
        # Caddy's rule: a module that provisioned is cleaned up even if a later one failed.
        chain.close()
        chain.policies = []
    return chain


def _at_segments(at: str | Sequence[str | int] | None) -> Segments:
    """ "set.x-user-id" / "allow[2]" / ("set", "x.y") -> path segments."""
    if at is None:
        return []
    if not isinstance(at, str):
        return list(at)
    segments: Segments = []
    for part in at.split("."):
        name, _, rest = part.partition("[")
        if name:
            segments.append(name)
        for index in rest.split("[") if rest else ():
            text = index.rstrip("]")
            segments.append(int(text) if text.isdigit() else text)
    return segments


def _close(provisioned: ProvisionedPolicy) -> None:
    try:
        provisioned.policy.close()
    except Exception:
        logger.exception("closing policy %s at %s failed", provisioned.name, provisioned.path)
