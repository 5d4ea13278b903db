"""The configuration schema: frozen, strict msgspec Structs whose field names are the contract.

Shapes and simple bounds live here as `Meta` constraints, so the JSON Schema shows them too;
`decode_config` turns msgspec's first complaint into a ConfigError with a concrete `$.path`.
Checks that need more than one field (or a parser) live in `checks.py`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from fastgw.config.redaction import is_secret_key, redacted_repr
from fastgw.errors import ConfigError

__all__ = [
    "ACCESS_LOG_FIELDS",
    "ALLOWED_METHODS",
    "AccessLogSettings",
    "Admin",
    "ErrorLogSettings",
    "MetricsSettings",
    "TracingSettings",
    "Config",
    "Duration",
    "PartialConfig",
    "reported_at",
    "collect_config_errors",
    "Keepalive",
    "Limits",
    "Listener",
    "Match",
    "Route",
    "RouteLimits",
    "RouteTimeouts",
    "Target",
    "Timeouts",
    "Upstream",
    "decode_config",
    "decode_hook",
    "decode_value",
    "json_path",
    "parse_duration",
    "schema_hook",
]

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")

UPSTREAM_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
ABSOLUTE_PATH_PATTERN = r"^/"
# "/" itself, or a prefix without a trailing slash: "/users" strips "/users/1" -> "/1".
STRIP_PREFIX_PATTERN = r"^/$|^/.*[^/]$"

_DURATION = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_HINT = "a duration like '250ms', '10s', '5m', '1h', '1d' or a number of seconds > 0"


if TYPE_CHECKING:
    Duration = float
else:

    class Duration(float):
        """Seconds, written as "250ms", "10s", "5m", "1h" or a number of seconds.

        Decoded values are Durations, defaults plain floats: use either as a float.
        """


def parse_duration(value: object) -> float:
    """Return `value` in seconds; raise ValueError unless it is a positive duration."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
        seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    else:
        raise ValueError(f"expected {DURATION_HINT}, got {type(value).__name__}")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    return seconds


def decode_hook(type_: type, value: Any) -> Any:
    """msgspec `dec_hook`: turns duration values into float seconds."""
    if type_ is Duration:
        return Duration(parse_duration(value))
    raise NotImplementedError(f"no decoder for {type_!r}")


def schema_hook(type_: type) -> dict[str, Any]:
    """msgspec `schema_hook`: the JSON Schema of a Duration."""
    if type_ is Duration:
        return {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": _DURATION.pattern},
            ],
            "description": "seconds: '250ms', '10s', '5m', '1h' or a number of seconds",
        }
    raise NotImplementedError(f"no schema for {type_!r}")


class _Section(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Immutable and strict (unknown keys are errors); each subclass adds kw_only itself."""

    def __repr__(self) -> str:
        # Secrets (the admin token, URL passwords, secret-named policy keys) never show.
        return redacted_repr(self)


class Limits(_Section, kw_only=True):
    """Per-connection limits: sizes (exceeding one gets 431, 414 or 413) and field names."""

    max_header_bytes: Annotated[int, Meta(ge=1024, le=1048576)] = 32768
    max_headers: Annotated[int, Meta(ge=1, le=1024)] = 100
    max_target_bytes: Annotated[int, Meta(ge=256)] = 8192
    max_body_bytes: Annotated[int, Meta(ge=0)] = 10485760
    # Request field names with "_": dropped (nginx's default), refused with 400, or allowed.
    headers_with_underscores: Literal["drop", "reject", "allow"] = "drop"
    # "//" in a request path is one "/" (nginx's merge_slashes), so "//admin" is "/admin".
    merge_slashes: bool = True
    # ";" in a request path: refused with 400 (Spring's StrictHttpFirewall), or an ordinary
    # byte whose meaning is the backend's (Tomcat and Spring strip ";params" from a segment).
    path_semicolons: Literal["reject", "allow"] = "reject"


class Timeouts(_Section, kw_only=True):
    """Per-connection time limits, in float seconds."""

    client_header: Duration = 10.0
    client_body_idle: Duration = 30.0
    keepalive_idle: Duration = 75.0
    upstream_connect: Duration = 5.0
    upstream_read: Duration = 60.0
    # Sending the request to the upstream may stall this long (nginx: proxy_send_timeout).
    upstream_send: Duration = 60.0
    client_send: Duration = 60.0
    drain: Duration = 30.0


class Target(_Section, kw_only=True):
    """One backend address of an upstream: "http://host[:port]" (port 80 by default)."""

    url: str
    weight: Annotated[int, Meta(ge=1, le=1000)] = 1


class Keepalive(_Section, kw_only=True):
    """Idle connections kept per target; max_idle 0 disables reuse."""

    max_idle: Annotated[int, Meta(ge=0, le=10000)] = 64
    idle_timeout: Duration = 60.0


class Upstream(_Section, kw_only=True):
    """A named group of targets that routes forward to."""

    targets: Annotated[tuple[Target, ...], Meta(min_length=1)]
    keepalive: Keepalive = Keepalive()


class Match(_Section, kw_only=True):
    """What a request must look like for its route to apply.

    Hosts are lowercased and methods uppercased when decoded; empty means "any". `headers`
    and `query` are conditions: each named field must be present with exactly that value
    ("*": any value); header names are case-insensitive, query parts are compared raw.
    """

    paths: Annotated[
        tuple[Annotated[str, Meta(pattern=ABSOLUTE_PATH_PATTERN)], ...], Meta(min_length=1)
    ]
    hosts: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    headers: dict[str, str] = {}
    query: dict[str, str] = {}

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "hosts", tuple(host.lower() for host in self.hosts))
        msgspec.structs.force_setattr(
            self, "methods", tuple(method.upper() for method in self.methods)
        )


class RouteTimeouts(_Section, kw_only=True):
    """A route's own upstream time limits; a key left out keeps the global one
    (timeouts.upstream_connect, upstream_read, upstream_send)."""

    connect: Duration | None = None
    read: Duration | None = None
    send: Duration | None = None


class RouteLimits(_Section, kw_only=True):
    """A route's own request limits; a key left out keeps the global one."""

    max_body_bytes: Annotated[int, Meta(ge=0)] | None = None


class Route(_Section, kw_only=True):
    """A rule sending matching requests to an upstream, optionally rewriting the path."""

    name: Annotated[str, Meta(min_length=1)]
    match: Match
    upstream: str
    strip_prefix: Annotated[str, Meta(pattern=STRIP_PREFIX_PATTERN)] | None = None
    rewrite: Annotated[str, Meta(pattern=ABSOLUTE_PATH_PATTERN)] | None = None
    preserve_host: bool = False
    priority: Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)] = 0
    groups: tuple[str, ...] = ()
    policies: tuple[dict[str, Any], ...] = ()
    timeouts: RouteTimeouts = RouteTimeouts()
    limits: RouteLimits = RouteLimits()


class Listener(_Section, kw_only=True):
    """One `listen` entry written as a mapping; a plain "HOST:PORT" string is the same as
    `{address: "HOST:PORT"}`.

    `proxy_protocol`: connections from `trusted_proxies` start with a PROXY protocol header
    (v1 or v2) whose source address is then the client's; other peers are direct clients.
    """

    address: str
    proxy_protocol: bool = False


class KeyAuthCredential(_Section, kw_only=True):
    """API keys of a consumer: `key`, `keys` (several, for rotation) and/or `key_file` (one
    key per line; blank lines and lines starting with # are skipped)."""

    key: Annotated[str, Meta(min_length=1)] | None = None
    keys: tuple[Annotated[str, Meta(min_length=1)], ...] = ()
    key_file: Annotated[str, Meta(min_length=1)] | None = None

    def __repr__(self) -> str:
        return f"KeyAuthCredential({len(self.keys) + (self.key is not None)} keys, hidden)"


class BasicAuthCredential(_Section, kw_only=True):
    """A username and the bcrypt ($2b$...) or argon2 ($argon2id$...) hash of its password;
    never the password itself."""

    username: Annotated[str, Meta(min_length=1)]
    password_hash: Annotated[str, Meta(min_length=1)]


class Credential(_Section, kw_only=True):
    """One credential of a consumer: exactly one of its keys."""

    key_auth: KeyAuthCredential | None = None
    basic_auth: BasicAuthCredential | None = None


class ConsumerEntry(_Section, kw_only=True):
    """Someone who calls the APIs: authentication policies map a credential to one.

    `id` defaults to the name; `groups` are what `acl` decides on; `metadata` is for
    policies written in Python (request.consumer.metadata)."""

    name: Annotated[str, Meta(min_length=1, max_length=256)]
    id: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    groups: tuple[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:@-]+$")], ...] = ()
    metadata: dict[str, Any] = {}
    credentials: tuple[Credential, ...] = ()


class IdentityHeaders(_Section, kw_only=True):
    """The request fields that tell the upstream who authenticated (null: not sent). The
    client's own fields of these names are always removed on routes that authenticate."""

    consumer_id: str | None = "X-Consumer-ID"
    consumer_username: str | None = "X-Consumer-Username"
    consumer_groups: str | None = "X-Consumer-Groups"
    scope: str | None = "X-Authenticated-Scope"
    anonymous: str | None = "X-Anonymous-Consumer"


class Admin(_Section, kw_only=True):
    """The admin API listener; the token (usually "${FASTGW_ADMIN_TOKEN}") guards it."""

    listen: str = "127.0.0.1:9901"
    token: Annotated[str, Meta(min_length=16)] | None = None


# The access log's fields, in line order (the core's ACCESS_LOG_FIELDS; a test keeps them equal).
AccessLogField = Literal[
    "time",
    "request_id",
    "client_ip",
    "method",
    "host",
    "path",
    "query",
    "route",
    "upstream",
    "target",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "trace_id",
    "rate_limit",
    # opt-in, for debugging: not in the default list
    "code",
    "user_agent",
    "referer",
    "upstream_path",
    "consumer",
    "bytes_sent",
    "auth",
]
ACCESS_LOG_FIELDS: tuple[str, ...] = typing.get_args(AccessLogField)
# Left out unless listed: the query string (it may carry secrets) and the debugging fields.
OPT_IN_ACCESS_LOG_FIELDS = (
    "query",
    "code",
    "user_agent",
    "referer",
    "upstream_path",
    "consumer",
    "bytes_sent",
    "auth",
)
DEFAULT_ACCESS_LOG_FIELDS: tuple[str, ...] = tuple(
    field for field in ACCESS_LOG_FIELDS if field not in OPT_IN_ACCESS_LOG_FIELDS
)


class AccessLogSettings(_Section, kw_only=True):
    """One JSON line per request: to "stdout", "stderr" or a file (reopened on SIGUSR1).

    `sample` keeps that share of lines (and every status >= 400 while `keep_errors`);
    lines are handed to a writer thread every `buffer` bytes or `flush_interval`.
    """

    path: Annotated[str, Meta(min_length=1)] = "stdout"
    fields: Annotated[tuple[AccessLogField, ...], Meta(min_length=1)] = DEFAULT_ACCESS_LOG_FIELDS
    sample: Annotated[float, Meta(ge=0.0, le=1.0)] = 1.0
    keep_errors: bool = True
    buffer: Annotated[int, Meta(ge=0, le=16777216)] = 262144
    flush_interval: Duration = 1.0


class ErrorLogSettings(_Section, kw_only=True):
    """The gateway's own messages (reloads, policy failures): text or JSON lines."""

    path: Annotated[str, Meta(min_length=1)] = "stderr"
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSettings(_Section, kw_only=True):
    """Core counters for /metrics on the admin API (cheap: on by default)."""

    enabled: bool = True


class TracingSettings(_Section, kw_only=True):
    """W3C Trace Context. "off": traceparent is forwarded untouched; "propagate": a valid one
    continues with the gateway's span id; "start": also start a trace when there is none.
    `server_timing` adds a Server-Timing field (gateway and upstream time) to responses."""

    traceparent: Literal["off", "propagate", "start"] = "off"
    server_timing: bool = False


class RateLimitTable(_Section, kw_only=True):
    """The table of rate limit buckets: one 16-byte slot per key and limit, a power of two.
    Size it to about twice the keys you expect; beyond that the idlest keys are reused."""

    slots: Annotated[int, Meta(ge=1024, le=1 << 28)] = 1 << 18

    def __post_init__(self) -> None:
        if self.slots & (self.slots - 1):
            raise ValueError(f"slots must be a power of two, got {self.slots}")


class Config(_Section, kw_only=True):
    """A whole gateway configuration: what `load_config` returns and `build_plan` consumes."""

    listen: str | Listener | Annotated[tuple[str | Listener, ...], Meta(min_length=1)] = (
        "127.0.0.1:8080",
    )
    # Worker processes sharing the listeners (SO_REUSEPORT); "auto": one per CPU.
    workers: Annotated[int, Meta(ge=1, le=256)] | Literal["auto"] = 1
    trusted_proxies: tuple[str, ...] = ()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    upstreams: dict[Annotated[str, Meta(pattern=UPSTREAM_NAME_PATTERN)], Upstream]
    routes: Annotated[tuple[Route, ...], Meta(min_length=1)]
    # Chain entries run before every route's own: global first, then the route's groups.
    global_policies: tuple[dict[str, Any], ...] = ()
    policy_groups: dict[
        Annotated[str, Meta(pattern=UPSTREAM_NAME_PATTERN)], tuple[dict[str, Any], ...]
    ] = {}
    # Folders (relative ones from the config file's) where "module:attr" policies are
    # looked for when sys.path does not have them; the config file's folder comes last.
    python_path: tuple[Annotated[str, Meta(min_length=1)], ...] = ()
    # Who may call: authentication policies (key_auth, basic_auth, jwt...) map to these.
    consumers: tuple[ConsumerEntry, ...] = ()
    identity_headers: IdentityHeaders = IdentityHeaders()
    # No admin block, no admin listener.
    admin: Admin | None = None
    # No access_log block, no access log.
    access_log: AccessLogSettings | None = None
    error_log: ErrorLogSettings = ErrorLogSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    rate_limit_table: RateLimitTable = RateLimitTable()

    def __post_init__(self) -> None:
        # One listen entry may be written alone; the decoded form is a tuple.
        if isinstance(self.listen, str | Listener):
            msgspec.structs.force_setattr(self, "listen", (self.listen,))

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """Every `listen` entry as a Listener, in order (strings are plain listeners)."""
        return tuple(
            Listener(address=entry) if isinstance(entry, str) else entry for entry in self.listen
        )


def json_path(segments: Iterable[str | int]) -> str:
    """Render `["routes", 2, "upstream"]` as `$.routes[2].upstream` (odd keys as `['a b']`)."""
    parts = ["$"]
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _PLAIN_KEY.match(segment):
            parts.append(f".{segment}")
        else:
            parts.append(f"[{segment!r}]")
    return "".join(parts)


def decode_config(data: Any, file: str | None = None) -> Config:
    """Convert plain data (parsed YAML/TOML/JSON) to a Config; raise ConfigError on mismatch.

    msgspec stops at the first problem; its message is turned into a ConfigError with the
    concrete `$.path` (dict keys included), what was expected and what the file holds.
    """
    try:
        return msgspec.convert(data, Config, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        error = _translate(str(exc), data, Config, [])
        error.file = file
        raise error from None


def decode_value(
    data: Any, type_: Any, at: Iterable[str | int] = (), file: str | None = None
) -> Any:
    """Convert `data` found at `at` (path segments) to `type_` the way decode_config does.

    For sections decoded on their own, such as a policy's config: a mismatch becomes a
    ConfigError whose `$.path` starts with `at`.
    """
    try:
        return msgspec.convert(data, type_, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        error = _translate(str(exc), data, type_, list(at))
        error.file = file
        raise error from None


@dataclasses.dataclass(frozen=True)
class PartialConfig:
    """What decoded of a file with errors, so the later checks can still run on it.

    Routes that failed to decode are left out; `route_positions[i]` is the index in the file
    of `config.routes[i]`. An upstream or policy group that failed keeps its name (with a
    stand-in value), so references to it are not reported as unknown on top.
    """

    config: Config
    route_positions: tuple[int, ...]

    def renumber(self, errors: Iterable[ConfigError]) -> list[ConfigError]:
        """Give errors found on `config` the route positions of the file."""
        positions = self.route_positions

        def fix(text: str) -> str:
            return _ROUTE_INDEX.sub(lambda m: f"$.routes[{positions[int(m.group(1))]}]", text)

        result = []
        for error in errors:
            error.path = fix(error.path)
            error.message = fix(error.message)
            result.append(error)
        return result


_ROUTE_INDEX = re.compile(r"\$\.routes\[(\d+)\]")


def reported_at(path: str, reported: Iterable[str]) -> bool:
    """Whether an error at `path` is one already reported: at the same place, or inside a
    section whose error was reported (a later check then sees that part's stand-in
    default, not what the file says). The whole file ("$") covers only itself."""
    for seen in reported:
        if path == seen:
            return True
        if seen != "$" and path.startswith(seen) and path[len(seen)] in ".[":
            return True
    return False


_INVALID: Any = object()


def collect_config_errors(
    data: Any, file: str | None = None
) -> tuple[PartialConfig | None, list[ConfigError]]:
    """Every decode problem of `data`, not only the first, and a Config of what decoded.

    msgspec stops at the first problem; this walks the file's structure and decodes each
    part on its own, so one run of `fastgw check` reports every error. Only called once
    decode_config failed: a valid file is decoded in one msgspec pass.
    """
    errors: list[ConfigError] = []
    if not isinstance(data, dict):
        errors.append(_translate(_first_error(data, Config), data, Config, []))
        return None, _with_file(errors, file)
    hints = typing.get_type_hints(Config, include_extras=True)
    fields = {f.encode_name: f for f in msgspec.structs.fields(Config)}
    errors.extend(_unknown_fields(data, Config, []))
    values: dict[str, Any] = {}
    positions: list[int] = []
    for name, info in fields.items():
        if name not in data:
            if info.required:
                errors.append(ConfigError(f"missing required field '{name}'", "$"))
                values[info.name] = () if name == "routes" else {}
            continue
        raw = data[name]
        if name == "routes" and isinstance(raw, list):
            routes = []
            for index, item in enumerate(raw):
                route = _collect(item, Route, ["routes", index], errors)
                if route is not _INVALID:
                    routes.append(route)
                    positions.append(index)
            if not raw:
                errors.append(
                    ConfigError("must not be empty", "$.routes", expected="at least one entry")
                )
            values[info.name] = tuple(routes)
        elif name in ("upstreams", "policy_groups") and isinstance(raw, dict):
            key_type, value_type = _dict_args(hints[info.name])
            stand_in = _stand_in_upstream() if name == "upstreams" else ()
            entries = {}
            for key, item in raw.items():
                if (bad_key := _key_error(key, key_type, [name])) is not None:
                    errors.append(bad_key)
                    continue
                value = _collect(item, value_type, [name, key], errors)
                entries[key] = stand_in if value is _INVALID else value
            values[info.name] = entries
        else:
            value = _collect(raw, hints[info.name], [name], errors)
            if value is not _INVALID:
                values[info.name] = value
            elif info.required:
                values[info.name] = () if name == "routes" else {}
    try:
        # The constructor skips the Meta constraints (already checked part by part above).
        config = Config(**values)
    except (TypeError, ValueError) as exc:
        errors.append(ConfigError(str(exc)))
        return None, _with_file(errors, file)
    if not errors:
        errors.append(_translate(_first_error(data, Config), data, Config, []))
    return PartialConfig(config, tuple(positions)), _with_file(errors, file)


def _stand_in_upstream() -> Upstream:
    # For an upstream that failed to decode: never served (the file has errors), it only
    # keeps the routes that name it from being reported as naming an unknown upstream.
    return Upstream(targets=(Target(url="http://127.0.0.1:9"),))


def _with_file(errors: list[ConfigError], file: str | None) -> list[ConfigError]:
    for error in errors:
        error.file = file
    return errors


def _key_error(key: Any, key_type: Any, segments: list[str | int]) -> ConfigError | None:
    """The error of a mapping key that `key_type` refuses (an upstream name, say), or None."""
    try:
        msgspec.convert(key, key_type)
    except msgspec.ValidationError as exc:
        return _describe(
            _bare_message(exc), key, key_type, json_path([*segments, str(key)]), is_key=True
        )
    return None


def _bare_message(exc: msgspec.ValidationError) -> str:
    found = _ERROR_TEXT.match(str(exc))
    assert found is not None  # the pattern matches any text
    return found.group("message")


def _first_error(data: Any, type_: Any) -> str:
    try:
        msgspec.convert(data, type_, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        return str(exc)
    return "invalid value"


def _unknown_fields(
    data: dict[Any, Any], struct: Any, segments: list[str | int]
) -> list[ConfigError]:
    known = {f.encode_name for f in msgspec.structs.fields(struct)}
    return [
        _describe(
            f"Object contains unknown field `{key}`",
            data,
            struct,
            json_path(segments),
            is_key=False,
        )
        for key in data
        if key not in known
    ]


def _collect(data: Any, type_: Any, segments: list[str | int], errors: list[ConfigError]) -> Any:
    """Decode `data` as `type_`; on failure append every problem found below it to `errors`
    and return what could be kept (a section whose bad optional fields fell back to their
    defaults) or _INVALID."""
    try:
        return msgspec.convert(data, type_, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        first = str(exc)
    narrowed = _narrow(type_, data)
    bare = _unwrap(narrowed)
    origin = typing.get_origin(bare)
    before = len(errors)
    repaired: Any = _INVALID
    if isinstance(bare, type) and issubclass(bare, Struct) and isinstance(data, dict):
        hints = typing.get_type_hints(bare, include_extras=True)
        errors.extend(_unknown_fields(data, bare, segments))
        # The decoded fields, by attribute name: a field that is itself a section with bad
        # parts keeps its repaired value (a route whose `timeouts` has a bad duration still
        # has its name, paths and policies for the later checks).
        known: dict[str, Any] | None = {}
        for info in msgspec.structs.fields(bare):
            name = info.encode_name
            if name in data:
                value = _collect(data[name], hints[info.name], [*segments, name], errors)
                if value is not _INVALID and known is not None:
                    known[info.name] = value
                elif info.required:
                    known = None
            elif info.required:
                errors.append(ConfigError(f"missing required field '{name}'", json_path(segments)))
                known = None
        if known is not None and len(errors) > before:
            # What is left once the bad fields fall back to their defaults, so the checks
            # that read this section still run on the rest of it. Each value was decoded
            # with its own constraints above; the constructor runs __post_init__.
            try:
                repaired = bare(**known)
            except (TypeError, ValueError, msgspec.ValidationError):
                repaired = _INVALID
    elif origin in (tuple, list) and isinstance(data, list):
        item_type = typing.get_args(bare)[0] if typing.get_args(bare) else Any
        for index, item in enumerate(data):
            _collect(item, item_type, [*segments, index], errors)
    elif origin is dict and isinstance(data, dict):
        key_type, value_type = _dict_args(bare)
        for key, value in data.items():
            if (bad_key := _key_error(key, key_type, segments)) is not None:
                errors.append(bad_key)
                continue
            _collect(value, value_type, [*segments, key], errors)
    if len(errors) == before:
        # Nothing below it is wrong: the problem is this value's own (a bound, a pattern,
        # a rule checked once the whole section is read).
        errors.append(_translate(first, data, type_, segments))
    return repaired


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_TEXT = re.compile(
    r"^(?P<message>.*?)(?: - at (?P<key>`key` in )?`(?P<path>\$[^`]*)`)?$", re.S
)
_PATH_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\[\.\.\.\])")
_TYPE_MISMATCH = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_CONSTRAINT = re.compile(r"^Expected `(?P<type>[^`]+)` (?P<rule>.+)$")
_PATTERN_RULE = re.compile(r"^matching regex '(?P<pattern>.*)'$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
# msgspec speaks JSON ("array", "object"); config authors mostly write YAML.
_YAML_WORD = {"array": "list", "object": "mapping"}
_YAML_WORDS = re.compile(r"\b(array|object)\b")
_PATTERN_MEANING = {
    ABSOLUTE_PATH_PATTERN: "a path starting with '/'",
    STRIP_PREFIX_PATTERN: "a path starting with '/', without a trailing '/' (unless it is '/')",
    UPSTREAM_NAME_PATTERN: "a name made of letters, digits, '_', '.' and '-'",
}


def _translate(text: str, data: Any, type_: Any, prefix: list[str | int]) -> ConfigError:
    found = _ERROR_TEXT.match(text)
    assert found is not None  # the pattern matches any text
    raw_message = found.group("message")
    segments: list[str | int] = list(prefix)
    node, node_type = data, _narrow(type_, data)
    for name, index, any_key in _PATH_SEGMENT.findall(found.group("path") or ""):
        if any_key and isinstance(node, dict):
            # msgspec writes `[...]` for "some value of this dict": find it by decoding each
            # value in order (msgspec does the same, so the first failure is the reported one).
            value_type = _dict_args(node_type)[1]
            for key, value in node.items():
                try:
                    msgspec.convert(value, value_type, dec_hook=decode_hook)
                except msgspec.ValidationError as inner:
                    return _translate(str(inner), value, value_type, [*segments, key])
            break
        segment: str | int = name if name else int(index)
        try:
            node = node[segment]
        except (KeyError, IndexError, TypeError):
            break
        node_type = _child_type(node_type, segment, node)
        segments.append(segment)
    if found.group("key") and isinstance(node, dict):
        key_type = _dict_args(node_type)[0]
        for key in node:
            try:
                msgspec.convert(key, key_type)
            except msgspec.ValidationError:
                segments.append(key if isinstance(key, str) else str(key))
                return _describe(raw_message, key, key_type, json_path(segments), is_key=True)
    error = _describe(raw_message, node, node_type, json_path(segments), is_key=False)
    if segments and is_secret_key(segments[-1]) and error.got is not None:
        error.got = "a secret (not shown)"
    return error


def _describe(raw: str, value: Any, type_: Any, path: str, *, is_key: bool) -> ConfigError:
    what = "name" if is_key else "value"
    if _is_duration(type_) and not is_key:
        return ConfigError("invalid duration", path, expected=DURATION_HINT, got=_show(value))
    if found := _UNKNOWN_FIELD.match(raw):
        field = found.group("name")
        struct = _unwrap(type_)
        if not (isinstance(struct, type) and issubclass(struct, Struct)):
            return ConfigError(f"unknown field '{field}'", path)
        known = [f.encode_name for f in msgspec.structs.fields(struct)]
        message = f"unknown field '{field}'"
        close = difflib.get_close_matches(field, known, n=1)
        if close:
            message += f", did you mean '{close[0]}'?"
        return ConfigError(message, path, expected="one of: " + ", ".join(known))
    if found := _MISSING_FIELD.match(raw):
        return ConfigError(f"missing required field '{found.group('name')}'", path)
    if found := _TYPE_MISMATCH.match(raw):
        return ConfigError(
            "wrong type" if what == "value" else "invalid key",
            path,
            expected=_YAML_WORDS.sub(lambda m: _YAML_WORD[m.group(0)], found.group("expected")),
            got=_show(value),
        )
    if found := _CONSTRAINT.match(raw):
        rule = found.group("rule")
        if rule == "of length >= 1":
            kind = found.group("type")
            expected = "a non-empty string" if kind == "str" else "at least one entry"
            return ConfigError("must not be empty", path, expected=expected)
        if pattern := _PATTERN_RULE.match(rule):
            expected = _PATTERN_MEANING.get(pattern.group("pattern"), rule)
            return ConfigError(f"invalid {what}", path, expected=expected, got=_show(value))
        return ConfigError(
            f"{what} out of range",
            path,
            expected=f"{found.group('type')} {rule}",
            got=_show(value),
        )
    return ConfigError(raw[:1].lower() + raw[1:], path)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unwrap(type_: Any) -> Any:
    while typing.get_origin(type_) is Annotated:
        type_ = typing.get_args(type_)[0]
    return type_


def _is_duration(type_: Any) -> bool:
    """A Duration, or an optional one (a route's timeouts: None inherits the global)."""
    bare = _unwrap(type_)
    return bare is Duration or (
        isinstance(bare, types.UnionType) and Duration in typing.get_args(bare)
    )


def _dict_args(type_: Any) -> tuple[Any, Any]:
    args = typing.get_args(_unwrap(type_))
    return (args[0], args[1]) if len(args) == 2 else (Any, Any)


def _narrow(type_: Any, value: Any) -> Any:
    """For a union type ("str | list", "X | None"), the member that `value` was meant for."""
    bare = _unwrap(type_)
    if not (isinstance(bare, types.UnionType) or typing.get_origin(bare) is typing.Union):
        return type_
    for member in typing.get_args(bare):
        kind = typing.get_origin(_unwrap(member)) or _unwrap(member)
        if not isinstance(kind, type):
            continue
        if isinstance(value, list) and kind in (tuple, list):
            return member
        if isinstance(value, dict) and (kind is dict or issubclass(kind, Struct)):
            return member
        if isinstance(value, str) and kind is str:
            return member
    return type_


def _child_type(type_: Any, segment: object, value: Any) -> Any:
    """The declared type of `segment` (holding `value`) inside a value of `type_`."""
    type_ = _unwrap(type_)
    child: Any = Any
    if isinstance(type_, type) and issubclass(type_, Struct) and isinstance(segment, str):
        child = typing.get_type_hints(type_, include_extras=True).get(segment, Any)
    elif typing.get_origin(type_) is dict:
        child = _dict_args(type_)[1]
    elif typing.get_origin(type_) in (tuple, list) and isinstance(segment, int):
        child = typing.get_args(type_)[0]
    return _narrow(child, value)
