"""Config -> Plan: everything decidable before the first request is decided here.

This is the only module that imports both the config layer and the compiled core. It builds
the router, the route actions (upstream pool, rewrite template, strip prefix, host policy),
the limits and timeouts, and reports problems as ConfigError with the `$.path` they come from.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastgw import _core
from fastgw.config import Config, parse_target_url
from fastgw.errors import ConfigError, raise_config_errors
from fastgw.policy import ProvisionedPolicy, RouteChain, RouteChains, build_route_chains
from fastgw.policy.compiled import CompileContext, CoreParts, HeaderOp
from fastgw.policy.consumers import build_consumers, identity_field_names

logger = logging.getLogger("fastgw")

_TEMPLATE_PARAM = re.compile(r"\{\*?([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class RouteInfo:
    """One compiled path pattern of one route, for `fastgw routes` and the admin API."""

    route_id: int
    pattern_id: int
    name: str
    hosts: tuple[str, ...]
    pattern: str
    methods: tuple[str, ...]
    priority: int
    upstream: str
    rewrite: str | None
    strip_prefix: str | None
    policies: tuple[str, ...] = ()
    disabled: bool = False
    # Effective upstream timeouts (seconds) and body limit: the route's own or the global.
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    max_body_bytes: int = 10485760


@dataclass
class Plan:
    """An immutable compiled configuration; swapping it is one reference assignment."""

    config: Config
    core: Any
    router: Any
    pools: dict[str, Any]
    routes: list[RouteInfo] = field(default_factory=list)
    chains: RouteChains | None = None
    # Valid but probably not meant (a chain order that cannot work): `fastgw check` shows them.
    warnings: list[ConfigError] = field(default_factory=list)

    def close(self) -> None:
        """Release what the policies hold (their close()); errors are logged."""
        if self.chains is not None:
            self.chains.close()

    def describe_routes(self) -> list[dict[str, Any]]:
        return [info.__dict__.copy() for info in self.routes]

    def explain(self, method: str, url: str) -> list[str]:
        """Say which route wins for METHOD URL, and why, using the real parser and router.

        URL is absolute (`http://api.example.com/users/7`) or a path (`/users/7`: a request
        without a host, which only routes for any host serve). Raises ValueError for
        anything else.
        """
        method = method.upper()
        if not method or not all(
            c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in method
        ):
            raise ValueError(f"not a method: {method!r}")
        if url.startswith("/"):
            authority, target = "", url
        else:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"not an absolute http URL or a path: {url!r} "
                    "(write http://HOST/PATH, or /PATH for a request without a host)"
                )
            authority = parts.netloc
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # HTTP/1.0 allows a request without Host, so a path alone goes through the parser too.
        version, host_field = ("1.1", f"Host: {authority}\r\n") if authority else ("1.0", "")
        request = f"{method} {target} HTTP/{version}\r\n{host_field}\r\n"
        parser = _core.RequestParser()
        # the path rules of this config, as its connections' parsers have them
        parser.merge_slashes = self.config.limits.merge_slashes
        parser.semicolons = _core.SEMICOLON_MODES[self.config.limits.path_semicolons]
        try:
            events = parser.feed(request.encode("latin-1"))
        except UnicodeEncodeError:
            raise ValueError(f"not an HTTP request target: {url!r}") from None
        if events and events[-1][0] == "error":
            return [f"rejected before routing: {events[-1][1]}"]
        host = parser.hostname.decode("latin-1")
        path = parser.path.decode("latin-1")
        names = [route.name for route in self.config.routes]
        lines = list(self.router.explain(method, host, path, names))
        result = self.router.lookup(method, host, path)
        if result[0] == "found":
            info = next(r for r in self.routes if r.pattern_id == result[2])
            params = ", ".join(f"{k}={v}" for k, v in result[3].items())
            lines.append(
                f"=> route {info.name!r} ({info.pattern}) -> upstream {info.upstream!r}"
                + (f" with {params}" if params else "")
            )
        elif result[0] == "method_not_allowed":
            lines.append(f"=> 405 method_not_allowed; Allow: {', '.join(result[1])}")
        else:
            lines.append("=> 404 route_not_found")
        conditional = [r.name for r in self.config.routes if r.match.headers or r.match.query]
        if conditional:
            lines.append(
                "note: routes with header or query conditions are tried first at request time "
                f"and are left out here: {', '.join(conditional)}"
            )
        return lines


def _route_info(fields: dict[str, Any]) -> RouteInfo:
    """RouteInfo(**fields) for a dict holding every field in declaration order."""
    # PERF: a frozen dataclass's __init__ sets each field through object.__setattr__; taking
    # the dict as the instance's __dict__ is several times cheaper for 10,000s of rows.
    info = object.__new__(RouteInfo)
    object.__setattr__(info, "__dict__", fields)
    return info


def _compile_rewrite(template: str, params: list[str]) -> tuple[bytes | int, ...]:
    """ "/v2/users/{id}" -> (b"/v2/users/", 0): literals and capture indexes."""
    parts: list[bytes | int] = []
    pos = 0
    for match in _TEMPLATE_PARAM.finditer(template):
        if match.start() > pos:
            parts.append(template[pos : match.start()].encode())
        parts.append(params.index(match.group(1)))
        pos = match.end()
    if pos < len(template):
        parts.append(template[pos:].encode())
    return tuple(parts)


def chain_order(
    chain: RouteChain, warnings: list[ConfigError] | None = None
) -> list[ProvisionedPolicy]:
    """The order a chain's policies run in, and what each must know of the others.

    Policies that answer before authentication (`runs_first`: cors, whose preflight
    carries no credentials) move to the front. Each authentication policy learns whether
    a later one may still accept the client (`auth_fallthrough`). A policy that decides on
    the identity (`needs_identity`: acl) with no authentication policy before it can only
    refuse: a warning for `fastgw check`.
    """
    ordered = [p for p in chain.policies if getattr(p.policy, "runs_first", False)]
    ordered += [p for p in chain.policies if not getattr(p.policy, "runs_first", False)]
    authenticators = [i for i, p in enumerate(ordered) if getattr(p.policy, "authenticates", False)]
    for i in authenticators:
        ordered[i].policy.auth_fallthrough = i != authenticators[-1]
    if warnings is not None:
        for i, provisioned in enumerate(ordered):
            if getattr(provisioned.policy, "needs_identity", False) and not any(
                a < i for a in authenticators
            ):
                warnings.append(
                    ConfigError(
                        f"{provisioned.name} on route {chain.route!r} runs before any "
                        "authentication policy (key_auth, jwt, basic_auth, ...): it refuses "
                        "every request with 401; put an authentication policy before it",
                        provisioned.path,
                    )
                )
            elif i in authenticators and any(
                getattr(p.policy, "needs_identity", False) for p in ordered[:i]
            ):
                warnings.append(
                    ConfigError(
                        f"{provisioned.name} on route {chain.route!r} runs after an acl that "
                        "already decided without it; put authentication policies first",
                        provisioned.path,
                    )
                )
    return ordered


def compile_chain(
    chain: RouteChain,
    pattern_ids: list[int],
    router: Any,
    identity_fields: tuple[bytes, ...] = (),
    warnings: list[ConfigError] | None = None,
) -> Any:
    """A provisioned chain -> the core's CoreChain (None for an empty, healthy chain).

    Each policy compiles itself for the route's patterns (Policy.compile_core); the chain
    joins their parts in the order `chain_order` gives. On a route that authenticates, the
    client's own `identity_fields` (X-Consumer-ID, ...) are removed first. A policy whose
    compile_core fails is a ConfigError at its chain entry.
    """
    if chain.disabled:
        return _core.CoreChain(True)
    if not chain.policies:
        return None
    context = CompileContext.for_patterns(pattern_ids, router)
    ordered = chain_order(chain, warnings)
    steps: list[Any] = []
    request_ops: list[HeaderOp] = []
    response_ops: list[HeaderOp] = []
    response_hooks: list[Any] = []
    if any(getattr(p.policy, "authenticates", False) for p in ordered):
        request_ops.extend(HeaderOp("remove", name) for name in identity_fields)
    for provisioned in ordered:
        try:
            parts = provisioned.policy.compile_core(context)
            if not isinstance(parts, CoreParts):
                raise TypeError(f"compile_core returned {parts!r}, not CoreParts")
        except Exception as exc:
            logger.debug(
                "compiling %s at %s failed", provisioned.name, provisioned.path, exc_info=True
            )
            raise ConfigError(
                f"policy {provisioned.name!r} failed to compile: {type(exc).__name__}: {exc}",
                provisioned.path,
            ) from exc
        steps.extend(parts.steps)
        request_ops.extend(parts.request_ops)
        response_ops.extend(parts.response_ops)
        response_hooks.extend(parts.response_hooks)
    return _core.CoreChain(
        False,
        steps,
        context.header_ops(request_ops),
        context.header_ops(response_ops),
        response_hooks,
        max(p.policy.needs_body for p in chain.policies),
    )


def build_plan(
    config: Config, file: str | None = None, engine: Any = None, *, strict: bool = True
) -> Plan:
    """Compile `config`; raise ConfigErrors listing every problem found.

    With strict=False (serving), a policy that fails to provision is logged and disables
    only the routes whose chain holds it; they answer 503 route_unavailable.
    """
    # PERF: a plan adds ~10 long-lived objects per route; with the cyclic GC running, each
    # collection it triggers walks the whole heap (the config included), which made the
    # build superlinear in the number of routes. The build creates no garbage cycles worth
    # collecting mid-way, so the GC waits until it is done.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _build_plan(config, file, engine, strict)
    finally:
        if paused:
            gc.enable()


def _build_plan(config: Config, file: str | None, engine: Any, strict: bool) -> Plan:
    errors: list[ConfigError] = []
    router = _core.Router()
    pools: dict[str, Any] = {}
    for name, upstream in config.upstreams.items():
        targets, weights = [], []
        for target in upstream.targets:
            host, port = parse_target_url(target.url)
            obj = (
                engine.target(host, port)
                if engine is not None
                else _core.UpstreamTarget(host, port)
            )
            obj.max_idle = upstream.keepalive.max_idle
            obj.idle_timeout = upstream.keepalive.idle_timeout
            targets.append(obj)
            weights.append(target.weight)
        pools[name] = _core.UpstreamPool(name, targets, weights)

    actions: list[Any] = []
    infos: list[RouteInfo] = []
    route_patterns: list[list[int]] = []
    route_rewrites: list[dict[int, Any] | None] = []
    for index, route in enumerate(config.routes):
        match = route.match
        try:
            ids = router.add(
                index,
                match.hosts,
                match.paths,
                match.methods or None,
                route.priority,
                match.headers,
                match.query,
            )
        except _core.RoutePatternError as exc:
            # add() names every bad pattern and leaves no trace of the route.
            for j, message in exc.errors:
                errors.append(
                    ConfigError(message, f"$.routes[{index}].match.paths[{j}]", file=file)
                )
            route_patterns.append([])
            route_rewrites.append(None)
            continue
        route_patterns.append(ids)
        rewrites = None
        if route.rewrite:
            rewrites = {}
            for pattern_id in ids:
                params = router.pattern_params(pattern_id)
                try:
                    rewrites[pattern_id] = _compile_rewrite(route.rewrite, params)
                except ValueError:
                    errors.append(
                        ConfigError(
                            f"rewrite uses a parameter that pattern "
                            f"{router.pattern_text(pattern_id)!r} does not capture",
                            f"$.routes[{index}].rewrite",
                            file=file,
                        )
                    )
        route_rewrites.append(rewrites)

    # Policy chains need every route's captures, known once all patterns are added.
    route_params = [router.common_params(ids) for ids in route_patterns]
    consumers, consumer_errors = build_consumers(config, file)
    errors.extend(consumer_errors)
    identity_fields = identity_field_names(consumers.identity)
    _core.set_identity_scope_header(consumers.identity.scope)
    warnings: list[ConfigError] = []
    chains = build_route_chains(config, route_params, file, consumers=consumers)
    if chains.errors:
        if strict:
            errors.extend(chains.errors)
        else:
            for error in chains.errors:
                logger.error("policy disabled its routes: %s", error)
    timeouts = config.timeouts
    body_ceiling = config.limits.max_body_bytes
    for index, route in enumerate(config.routes):
        ids = route_patterns[index]
        pool = pools.get(route.upstream)
        core_chain = None
        if ids:
            try:
                core_chain = compile_chain(chains[index], ids, router, identity_fields, warnings)
            except ConfigError as exc:
                # Like a policy that fails to start: only this route is disabled.
                exc.file = file
                chains[index].errors.append(exc)
                core_chain = _core.CoreChain(True)
                if strict:
                    errors.append(exc)
                else:
                    logger.error("policy disabled its routes: %s", exc)
        # A key the route leaves out inherits the global value; decided here, once.
        own, own_limits = route.timeouts, route.limits
        connect = timeouts.upstream_connect if own.connect is None else own.connect
        read = timeouts.upstream_read if own.read is None else own.read
        send = timeouts.upstream_send if own.send is None else own.send
        max_body = (
            config.limits.max_body_bytes
            if own_limits.max_body_bytes is None
            else own_limits.max_body_bytes
        )
        # A policy's own body limit (request_validation's max_body_bytes) is the route's
        # when smaller: the core enforces it while streaming, with nothing buffered.
        for provisioned in chains[index].policies:
            policy_limit = getattr(provisioned.policy, "body_limit", None)
            if policy_limit is not None:
                max_body = min(max_body, policy_limit)
            # A method the policy must see (cors: OPTIONS preflights) that the route's
            # match refuses with 405 before any policy runs.
            unmatched = [
                method
                for method in getattr(provisioned.policy, "needs_methods", ())
                if route.match.methods and method not in route.match.methods
            ]
            if unmatched:
                warnings.append(
                    ConfigError(
                        f"{provisioned.name} on route {route.name!r} needs "
                        f"{', '.join(unmatched)} requests, which the route's match.methods "
                        f"answers with 405 before any policy runs; add them to match.methods",
                        provisioned.path,
                    )
                )
        body_ceiling = max(body_ceiling, max_body)
        actions.append(
            _core.RouteAction(
                route.name,
                index,
                pool,
                route.strip_prefix,
                route_rewrites[index],
                route.preserve_host,
                core_chain,
                connect_timeout=connect,
                read_timeout=read,
                send_timeout=send,
                max_body_bytes=max_body,
            )
            if pool is not None and ids
            else None
        )
        if not ids:
            continue  # its patterns are invalid: reported above
        chain = chains[index]
        policies = tuple(chain.describe()) if chain.entries else ()
        disabled = chain.disabled
        hosts = tuple(route.match.hosts)
        methods = tuple(route.match.methods)
        for pattern_id, pattern in zip(ids, route.match.paths, strict=True):
            infos.append(
                _route_info(
                    {
                        "route_id": index,
                        "pattern_id": pattern_id,
                        "name": route.name,
                        "hosts": hosts,
                        "pattern": pattern,
                        "methods": methods,
                        "priority": route.priority,
                        "upstream": route.upstream,
                        "rewrite": route.rewrite,
                        "strip_prefix": route.strip_prefix,
                        "policies": policies,
                        "disabled": disabled,
                        "connect_timeout": float(connect),
                        "read_timeout": float(read),
                        "send_timeout": float(send),
                        "max_body_bytes": max_body,
                    }
                )
            )
    if not errors:
        router.compile()
        for route_id, by_route_id in router.shadowed():
            errors.append(
                ConfigError(
                    f"route {config.routes[route_id].name!r} can never match: every request it "
                    f"matches is taken by route {config.routes[by_route_id].name!r}",
                    f"$.routes[{route_id}]",
                    file=file,
                )
            )
    if errors:
        chains.close()
        raise_config_errors(errors)

    limits = config.limits
    core = _core.CorePlan(
        router,
        actions,
        _core.CoreLimits(
            max_header_bytes=limits.max_header_bytes,
            max_headers=limits.max_headers,
            max_target_bytes=limits.max_target_bytes,
            # Before routing the parser allows the largest body any route does; the route's
            # own limit applies once it is known.
            max_body_bytes=body_ceiling,
            headers_with_underscores=limits.headers_with_underscores,
            merge_slashes=limits.merge_slashes,
            path_semicolons=limits.path_semicolons,
        ),
        _core.CoreTimeouts(
            client_header=timeouts.client_header,
            client_body_idle=timeouts.client_body_idle,
            keepalive_idle=timeouts.keepalive_idle,
            upstream_read=timeouts.upstream_read,
            upstream_send=timeouts.upstream_send,
            client_send=timeouts.client_send,
        ),
        [ipaddress.ip_network(cidr, strict=False) for cidr in config.trusted_proxies],
        pools,
    )
    for warning in warnings:
        warning.file = file
    return Plan(
        config=config,
        core=core,
        router=router,
        pools=pools,
        routes=infos,
        chains=chains,
        warnings=warnings,
    )
