"""Checks a decoded Config needs beyond its types: references, uniqueness, address syntax.

Every check reports every problem it finds, each with its precise `$.path`, so `fastgw check`
shows them all at once. Path-pattern syntax and shadowed routes are the router's to judge
(`fastgw.plan.build_plan`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from fastgw.config.schema import ALLOWED_METHODS, Config, Route, json_path
from fastgw.errors import ConfigError

__all__ = ["check_config", "config_warnings", "parse_listen_address", "parse_target_url"]

# A host name (letters, digits, "-", "_" for internal DNS names), an IPv4 address or a bracketed
# IPv6 address; "*." in front makes a wildcard matching any subdomain.
_HOST_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_PATTERN = re.compile(rf"^(\*\.)?{_HOST_LABEL}(\.{_HOST_LABEL})*$|^\[[0-9a-f:.]+\]$")
_LISTEN_HOST = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*$", re.I)
# "{name}" captures one segment, "{*name}" the rest; both are usable as {name} in rewrite.
_CAPTURE = re.compile(r"\{\*?([^{}]*)\}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_config(config: Config) -> list[ConfigError]:
    """Every cross-field problem of `config` (an empty list when it is consistent).

    Policy chain entries are checked for their shape only: which names exist and what their
    configs hold is the policy registry's to judge when the chains are built.
    """
    errors: list[ConfigError] = []
    errors.extend(_check_listen(config))
    errors.extend(_check_admin(config))
    errors.extend(_check_trusted_proxies(config))
    errors.extend(_check_limits(config))
    errors.extend(_check_upstreams(config))
    errors.extend(_check_chain(config.global_policies, ["global_policies"]))
    for group, entries in config.policy_groups.items():
        errors.extend(_check_chain(entries, ["policy_groups", group]))
    seen_names: dict[str, int] = {}
    for index, route in enumerate(config.routes):
        errors.extend(_check_route(config, index, route, seen_names))
    errors.extend(_check_method_count(config))
    return errors


def config_warnings(config: Config) -> list[ConfigError]:
    """What is valid but probably not meant: `fastgw check` prints these and still passes."""
    warnings: list[ConfigError] = []
    for index, route in enumerate(config.routes):
        for position, pattern in enumerate(route.match.paths):
            segments = pattern.split("/")
            for i, segment in enumerate(segments):
                if segment not in ("*", "**"):
                    continue
                # A glob habit from other gateways: here "*" is a literal segment.
                last = i == len(segments) - 1
                suggestion = "/".join([*segments[:i], "{*rest}" if last else "{name}"])
                if not last:
                    suggestion += "/" + "/".join(segments[i + 1 :])
                warnings.append(
                    ConfigError(
                        f"{segment!r} is a literal path segment here, matching only a "
                        f"request for {segment!r}; did you mean {suggestion!r}? "
                        + (
                            "({*rest} captures the rest of the path)"
                            if last
                            else "({name} captures one segment)"
                        ),
                        json_path(["routes", index, "match", "paths", position]),
                    )
                )
                break
    return warnings


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split "HOST:PORT" or "[IPv6]:PORT" into (host, port); port 0 asks for any free port."""
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError("an IPv6 address is written [ADDRESS]:PORT")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon:
            raise ValueError("missing ':PORT'")
        if ":" in host:
            raise ValueError("an IPv6 address is written [ADDRESS]:PORT")
        if not host:
            raise ValueError("missing host (use 0.0.0.0 for every IPv4 interface)")
        if not _LISTEN_HOST.match(host):
            raise ValueError(f"{host!r} is not a host name or IPv4 address")
    return host, _parse_port(port_text, allow_zero=True)


def parse_target_url(url: str) -> tuple[str, int]:
    """Split an upstream target "http://HOST[:PORT]" into (host, port); port 80 by default."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise ValueError("https targets are not supported yet")
    if scheme != "http":
        raise ValueError(f"unsupported scheme {parts.scheme!r}" if scheme else "missing http://")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in a target URL are not supported")
    if not parts.hostname:
        raise ValueError("missing host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("a target is scheme://host[:port] only: no path, query or fragment")
    authority = parts.netloc
    after_host = authority.rpartition("]")[2] if authority.startswith("[") else authority
    if ":" not in after_host:
        return parts.hostname, 80
    return parts.hostname, _parse_port(after_host.rpartition(":")[2], allow_zero=False)


def _parse_port(text: str, *, allow_zero: bool) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise ValueError(f"invalid port {text!r}")
    port = int(text)
    if port > 65535 or (port == 0 and not allow_zero):
        raise ValueError(f"port {port} is out of range")
    return port


def _check_listen(config: Config) -> Iterator[ConfigError]:
    seen: dict[tuple[str, int], int] = {}
    for index, entry in enumerate(config.listen):
        if isinstance(entry, str):
            address, path = entry, json_path(["listen", index])
        else:
            address, path = entry.address, json_path(["listen", index, "address"])
            if entry.proxy_protocol and not config.trusted_proxies:
                yield ConfigError(
                    "proxy_protocol needs trusted_proxies: the PROXY header is accepted only "
                    "from them, so nobody could send one",
                    json_path(["listen", index, "proxy_protocol"]),
                    expected="trusted_proxies listing the load balancers' addresses",
                    got="trusted_proxies: []",
                )
        try:
            host, port = parse_listen_address(address)
        except ValueError as exc:
            yield ConfigError(
                f"invalid listen address: {exc}",
                path,
                expected="HOST:PORT or [IPv6]:PORT",
                got=repr(address),
            )
            continue
        key = (host.lower(), port)
        if port and key in seen:
            yield ConfigError(
                f"duplicate listen address {address!r} (also {json_path(['listen', seen[key]])})",
                path,
            )
        seen.setdefault(key, index)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_admin(config: Config) -> Iterator[ConfigError]:
    admin = config.admin
    if admin is None:
        return
    try:
        host, _ = parse_listen_address(admin.listen)
    except ValueError as exc:
        yield ConfigError(
            f"invalid listen address: {exc}",
            json_path(["admin", "listen"]),
            expected="HOST:PORT or [IPv6]:PORT",
            got=repr(admin.listen),
        )
        return
    # Reloads and the effective config must not be reachable from the network unguarded.
    if admin.token is None and not _is_loopback(host):
        yield ConfigError(
            "the admin API refuses a non-loopback address without a token",
            json_path(["admin", "token"]),
            expected='a token of at least 16 characters, such as "${FASTGW_ADMIN_TOKEN}"',
            got=f"no token, listen {admin.listen!r}",
        )


def _check_trusted_proxies(config: Config) -> Iterator[ConfigError]:
    for index, network in enumerate(config.trusted_proxies):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            yield ConfigError(
                "invalid CIDR",
                json_path(["trusted_proxies", index]),
                expected="an IP address or network such as 10.0.0.0/8 or ::1",
                got=repr(network),
            )


def _check_limits(config: Config) -> Iterator[ConfigError]:
    limits = config.limits
    if limits.max_target_bytes > limits.max_header_bytes:
        yield ConfigError(
            "the request target cannot be longer than the whole header",
            json_path(["limits", "max_target_bytes"]),
            expected=f"at most max_header_bytes ({limits.max_header_bytes})",
            got=str(limits.max_target_bytes),
        )


def _check_upstreams(config: Config) -> Iterator[ConfigError]:
    for name, upstream in config.upstreams.items():
        seen: dict[tuple[str, int], int] = {}
        for index, target in enumerate(upstream.targets):
            path = json_path(["upstreams", name, "targets", index, "url"])
            try:
                host, port = parse_target_url(target.url)
            except ValueError as exc:
                yield ConfigError(
                    f"invalid target URL: {exc}",
                    path,
                    expected="http://HOST[:PORT]",
                    got=repr(target.url),
                )
                continue
            if (host, port) in seen:
                first = json_path(["upstreams", name, "targets", seen[(host, port)], "url"])
                yield ConfigError(f"duplicate target {target.url!r} (also {first})", path)
            seen.setdefault((host, port), index)


def _check_route(
    config: Config,
    index: int,
    route: Route,
    seen_names: dict[str, int],
) -> Iterator[ConfigError]:
    base: list[str | int] = ["routes", index]
    if route.name in seen_names:
        first = json_path(["routes", seen_names[route.name], "name"])
        yield ConfigError(
            f"duplicate route name {route.name!r} (also {first})", json_path([*base, "name"])
        )
    seen_names.setdefault(route.name, index)

    if route.upstream not in config.upstreams:
        yield ConfigError(
            f"unknown upstream {route.upstream!r}",
            json_path([*base, "upstream"]),
            expected="one of: " + ", ".join(config.upstreams) if config.upstreams else None,
        )

    yield from _check_match(route, base)
    yield from _check_path_rewriting(route, base)

    seen_groups: dict[str, int] = {}
    for position, group in enumerate(route.groups):
        if group in seen_groups:
            first = json_path([*base, "groups", seen_groups[group]])
            yield ConfigError(
                f"group {group!r} is listed twice (also {first})",
                json_path([*base, "groups", position]),
            )
        seen_groups.setdefault(group, position)
        if group not in config.policy_groups:
            known = ", ".join(config.policy_groups)
            yield ConfigError(
                f"unknown policy group {group!r}",
                json_path([*base, "groups", position]),
                expected=f"one of: {known}" if known else "a group defined under policy_groups",
            )
    yield from _check_chain(route.policies, [*base, "policies"])


# The router keeps a route's methods as bits of a 32-bit mask: the standard methods have
# theirs, every other method named in a config takes one of the rest.
MAX_EXTRA_METHODS = 22


def _check_method_count(config: Config) -> Iterator[ConfigError]:
    extra: dict[str, str] = {}
    for index, route in enumerate(config.routes):
        for position, method in enumerate(route.match.methods):
            if method not in ALLOWED_METHODS and method != "CONNECT":
                extra.setdefault(method, json_path(["routes", index, "match", "methods", position]))
    if len(extra) > MAX_EXTRA_METHODS:
        at = list(extra.values())[MAX_EXTRA_METHODS]
        yield ConfigError(
            f"too many different methods besides the standard ones ({len(extra)})",
            at,
            expected=f"at most {MAX_EXTRA_METHODS} methods other than "
            + ", ".join(ALLOWED_METHODS),
        )


def _check_chain(entries: Iterable[dict[str, Any]], base: list[str | int]) -> Iterator[ConfigError]:
    for position, entry in enumerate(entries):
        if len(entry) != 1:
            yield ConfigError(
                "a policy entry is a mapping with exactly one key, the policy name",
                json_path([*base, position]),
                expected="{name: {options}}",
                got=f"{len(entry)} keys",
            )


def _check_match(route: Route, base: list[str | int]) -> Iterator[ConfigError]:
    seen_paths: dict[str, int] = {}
    for position, pattern in enumerate(route.match.paths):
        if pattern in seen_paths:
            first = json_path([*base, "match", "paths", seen_paths[pattern]])
            yield ConfigError(
                f"duplicate path {pattern!r} (also {first})",
                json_path([*base, "match", "paths", position]),
            )
        seen_paths.setdefault(pattern, position)
    for position, host in enumerate(route.match.hosts):
        if not _HOST_PATTERN.match(host):
            yield ConfigError(
                "invalid host",
                json_path([*base, "match", "hosts", position]),
                expected="a host name without port, or '*.' and a domain",
                got=repr(host),
            )
    seen_methods: dict[str, int] = {}
    for position, method in enumerate(route.match.methods):
        at = json_path([*base, "match", "methods", position])
        # RFC 9110 9.1: any token is a method; the registered ones are not the only ones.
        if not _TOKEN.match(method):
            yield ConfigError(
                "invalid method",
                at,
                expected="a method name such as GET, POST or PURGE (an HTTP token)",
                got=repr(method),
            )
        elif method in seen_methods:
            first = json_path([*base, "match", "methods", seen_methods[method]])
            yield ConfigError(f"method {method!r} is listed twice (also {first})", at)
        seen_methods.setdefault(method, position)
    seen_headers: set[str] = set()
    for name, value in route.match.headers.items():
        at = json_path([*base, "match", "headers", name])
        if not _TOKEN.match(name):
            yield ConfigError("invalid header name", at, expected="a token", got=repr(name))
        elif name.lower() in seen_headers:
            yield ConfigError(f"header {name!r} is listed twice (names ignore case)", at)
        seen_headers.add(name.lower())
        if not _CONDITION_VALUE.match(value):
            yield ConfigError("invalid header value", at, expected=_CONDITION_HINT, got=repr(value))
    for name, value in route.match.query.items():
        at = json_path([*base, "match", "query", name])
        if not name or not _QUERY_PART.match(name):
            yield ConfigError(
                "invalid query parameter name", at, expected=_QUERY_HINT, got=repr(name)
            )
        if value != "*" and not _QUERY_PART.match(value):
            yield ConfigError("invalid query value", at, expected=_QUERY_HINT, got=repr(value))


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CONDITION_VALUE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")
_CONDITION_HINT = "printable ASCII without surrounding spaces, or '*' for any value"
_QUERY_PART = re.compile(r"^[A-Za-z0-9\-._~!$'()*+,;:@/?%]*$")
_QUERY_HINT = "the raw query text: URI characters without '&', '=' or '#'"


def _check_path_rewriting(route: Route, base: list[str | int]) -> Iterator[ConfigError]:
    if route.strip_prefix is not None and route.rewrite is not None:
        yield ConfigError(
            "strip_prefix and rewrite cannot be combined: use one of them",
            json_path([*base, "rewrite"]),
        )
    if route.strip_prefix is not None and route.strip_prefix != "/":
        prefix = route.strip_prefix
        for pattern in dict.fromkeys(route.match.paths):
            literal = pattern.split("{", 1)[0]
            if len(literal) < len(prefix):
                # The prefix reaches into a capture: only the router can tell at request time.
                continue
            boundary = literal[len(prefix) : len(prefix) + 1]
            if not literal.startswith(prefix) or boundary not in ("", "/"):
                yield ConfigError(
                    f"strip_prefix {prefix!r} is not a prefix of path {pattern!r}",
                    json_path([*base, "strip_prefix"]),
                    expected="a leading part of every path, ending at a '/'",
                )
    if route.rewrite is not None:
        yield from _check_rewrite(route, base)


def _check_rewrite(route: Route, base: list[str | int]) -> Iterator[ConfigError]:
    assert route.rewrite is not None
    path = json_path([*base, "rewrite"])
    template = route.rewrite
    placeholders = _PLACEHOLDER.findall(template)
    if template.count("{") != len(placeholders) or template.count("}") != len(placeholders):
        yield ConfigError(
            "unbalanced '{' or '}' in rewrite",
            path,
            expected="placeholders like {id}",
            got=repr(template),
        )
        return
    captures_per_path = [(pattern, set(_CAPTURE.findall(pattern))) for pattern in route.match.paths]
    for name in placeholders:
        if name.startswith("*"):
            yield ConfigError(
                f"write {{{name[1:]}}} in rewrite, not {{{name}}}", path, got=repr(template)
            )
            continue
        if not _IDENTIFIER.match(name):
            yield ConfigError(
                f"invalid placeholder {{{name}}} in rewrite",
                path,
                expected="{name} with a letter or '_' first, then letters, digits or '_'",
            )
            continue
        for pattern, captures in captures_per_path:
            if name not in captures:
                yield ConfigError(
                    f"rewrite uses {{{name}}} but path {pattern!r} does not capture it",
                    path,
                    expected="only captures shared by every path: "
                    + (", ".join(f"{{{c}}}" for c in _shared(captures_per_path)) or "none"),
                )
                break


def _shared(captures_per_path: list[tuple[str, set[str]]]) -> list[str]:
    common = set.intersection(*(captures for _, captures in captures_per_path))
    first_pattern_order = _CAPTURE.findall(captures_per_path[0][0])
    return [name for name in first_pattern_order if name in common]
