"""Typed view of fastgw._core, the compiled hot path (what Python code can see of it).

The C-level API (RequestParser.execute, Router.match, the protocol callbacks' internals)
is only reachable from Cython; these are the Python entry points that fastgw.plan,
fastgw.runtime, fastgw.observe, the policies, tools and tests use. Sections follow the
order in which _core.pyx includes its fragments. `make lint` checks this file against the
built module with mypy's stubtest (allowlist: fastgw/_core.stubtest-allowlist). The bench
flavour (FASTGW_BENCH=1) adds `_bench_*` entry points that are not described here.
"""

from asyncio import AbstractEventLoop, BaseTransport
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Literal, Protocol, Self, TypeAlias, TypeVar, final, overload

_T = TypeVar("_T")

# --- consts.pxi ------------------------------------------------------------------------

METHOD_IDS: dict[str, int]
"""Method name -> the core's method id, for the methods the parser knows by id."""
METHOD_NAMES: dict[int, str]
UNDERSCORE_MODES: dict[str, int]
"""`limits.headers_with_underscores` value -> the parser's mode."""
SEMICOLON_MODES: dict[str, int]
"""`limits.path_semicolons` value -> the parser's mode for ";" in a path."""
STATUS_PHRASES: dict[int, str]
"""Status -> RFC 9110 reason phrase, for every status line the gateway writes itself."""
ERROR_TABLE: dict[int, tuple[int, str, str]]
AUTH_FAILURES: dict[str, int]
"""The stable codes an authentication policy may fail with -> their ERROR_TABLE code."""
"""Error code -> (HTTP status, stable `code`, message) for every locally generated error."""

# --- proxyproto.pxi --------------------------------------------------------------------

def parse_proxy_header(data: bytes) -> dict[str, Any] | None:
    """Parse a PROXY protocol (v1 or v2) header at the start of `data`.

    None while `data` is a valid prefix; ValueError when malformed; else a dict with
    `version`, `length` (header bytes) and `source` / `destination` as (ip, port), or None
    when the connection's own address stands (v1 UNKNOWN, v2 LOCAL, UNSPEC, UNIX).
    """

def proxy_header_signature(data: bytes) -> Literal["none", "partial", "found"]:
    """Whether `data` starts like a PROXY header: "partial" is a strict prefix of one."""

# --- http1.pxi -------------------------------------------------------------------------

_Event: TypeAlias = (
    tuple[Literal["head"]]
    | tuple[Literal["body"], bytes]
    | tuple[Literal["done"]]
    | tuple[Literal["error"], str]
)

class Http1Parser:
    """Head buffer, field-line scanner and body framing shared by both parsers."""

    underscores: int
    """What a request field name with "_" gets: a value of UNDERSCORE_MODES."""
    @property
    def error_code(self) -> int: ...
    @property
    def detail_code(self) -> int:
        """For upstream errors: the syntax-level code behind the reported one (for logs)."""
    @property
    def in_message(self) -> bool: ...
    @property
    def head_done(self) -> bool: ...
    @property
    def version_minor(self) -> int: ...
    @property
    def n_headers(self) -> int: ...
    @property
    def framing(self) -> int:
        """0 none, 1 Content-Length, 2 chunked, 3 until close, 4 tunnel (after 101)."""
    @property
    def content_length(self) -> int:
        """-1 without a valid Content-Length."""
    @property
    def keep_alive(self) -> bool: ...
    @property
    def error(self) -> str | None:
        """Stable `code` of the error (see ERROR_TABLE), or None."""
    @property
    def version(self) -> bytes:
        """b"1.1" or b"1.0"."""
    def headers(self) -> list[tuple[bytes, bytes]]:
        """All field lines of the last head as received."""
    def forwarded_headers(self) -> list[tuple[bytes, bytes]]:
        """The field lines that are forwarded (no hop-by-hop or rewritten ones), in order."""
    def header_ids(self) -> list[int]:
        """The core's header id of every field line of the last head (0: not one it knows)."""

@final
class RequestParser(Http1Parser):
    """Incremental, strict HTTP/1.1 request parser (see docs/strictness.md)."""

    merge_slashes: bool
    """Whether "//" in the path is one "/" (True unless a plan says otherwise)."""
    semicolons: int
    """What ";" in the path gets: a value of SEMICOLON_MODES (reject unless a plan says)."""
    def __init__(
        self,
        max_header_bytes: int = 32768,
        max_headers: int = 100,
        max_target_bytes: int = 8192,
        max_body_bytes: int = 10485760,
    ) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[_Event]:
        """Parse `data`; events in order. An ("error", code) event is final."""
    @property
    def method_id(self) -> int:
        """A value of METHOD_IDS; 0 for a method it has no id for."""
    @property
    def has_query(self) -> bool: ...
    @property
    def absolute_form(self) -> bool: ...
    @property
    def upgrade_websocket(self) -> bool: ...
    @property
    def expect_continue(self) -> bool: ...
    @property
    def method(self) -> bytes: ...
    @property
    def target(self) -> bytes: ...
    @property
    def path(self) -> bytes:
        """The normalised path: what is routed and forwarded."""
    @property
    def query(self) -> bytes | None: ...
    @property
    def host(self) -> bytes: ...
    @property
    def hostname(self) -> bytes:
        """Lowercased host without port, as the router sees it."""

@final
class ResponseParser(Http1Parser):
    """Incremental HTTP/1.1 response parser for upstream responses."""

    def __init__(self, max_header_bytes: int = 32768, max_headers: int = 100) -> None: ...
    def set_request_method(self, method_id: int) -> None:
        """The method of the request this response answers (HEAD has no body)."""
    def feed(self, data: bytes | bytearray | memoryview) -> list[_Event]: ...
    def feed_eof_py(self) -> Literal["need_more", "done", "error"]:
        """The upstream closed: ends a close-delimited body, or reports the truncation."""
    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> bytes: ...

# --- router.pxi ------------------------------------------------------------------------

class RoutePatternError(ValueError):
    """Router.add() refused path patterns; `errors` is [(index in `patterns`, message)]."""

    errors: list[tuple[int, str]]
    def __init__(self, errors: list[tuple[int, str]]) -> None: ...

def _parse_route_pattern(pattern: str) -> tuple[tuple[tuple[int, bytes], ...], list[str]]:
    """Split a path pattern into ((kind, literal bytes), ...) and its capture names."""

@final
class Router:
    """Host + path-pattern trie with methods; add() routes, compile() once, then match."""

    def __init__(self) -> None: ...
    def add(
        self,
        route_id: int,
        hosts: Sequence[str],
        patterns: Sequence[str],
        methods: Sequence[str] | None = None,
        priority: int = 0,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> list[int]:
        """Add a route; returns one pattern id per pattern, in order.

        `headers` / `query` ({name: value}, "*" for any value) are conditions the request
        must meet too. Bad patterns raise RoutePatternError naming each one; a refused
        route leaves no trace.
        """
    def compile(self) -> None:
        """Build the tables; the route set is frozen afterwards."""
    def method_names(self, mask: int) -> list[str]:
        """Method names of a method mask (an Allow field), the router's own ones included."""
    def pattern_params(self, pattern_id: int) -> list[str]:
        """Capture names of a pattern, in capture order."""
    def common_params(self, pattern_ids: Sequence[int]) -> tuple[str, ...]:
        """Capture names every pattern of `pattern_ids` has, in the first one's order."""
    def pattern_text(self, pattern_id: int) -> str: ...
    def lookup(
        self,
        method: str,
        host: str,
        path: str,
        headers: Sequence[tuple[str, str]] | None = None,
        query: str | None = None,
    ) -> (
        tuple[Literal["found"], int, int, dict[str, str]]
        | tuple[Literal["not_found"]]
        | tuple[Literal["method_not_allowed"], list[str]]
    ):
        """Route a request: ("found", route_id, pattern_id, params) or why not.

        `headers` (at most 16 fields) and `query` (raw, without "?") feed route conditions.
        """
    def describe(self) -> list[dict[str, Any]]:
        """One dict per pattern, in pattern id order (for `fastgw routes`)."""
    def explain(
        self,
        method: str,
        host: str,
        path: str,
        route_names: Sequence[str] | Mapping[int, str] | None = None,
    ) -> list[str]:
        """Human-readable trace of the decision (`fastgw routes --explain`); `route_names`
        by route id name the routes in the lines."""
    def shadowed(self) -> list[tuple[int, int]]:
        """(route_id, by_route_id) for every route that can never match (after compile())."""

# --- serialize.pxi ---------------------------------------------------------------------

def status_line_for(status: int) -> bytes:
    """`HTTP/1.1 <status> <phrase>\\r\\n` as the core writes it (no phrase: empty)."""

# --- observe.pxi -----------------------------------------------------------------------

HISTOGRAM_BOUNDS: tuple[float, ...]
"""Upper bounds (seconds) of the latency histograms' buckets, +Inf not included."""
ACCESS_LOG_FIELDS: tuple[str, ...]
"""Every access log field, in the order a line holds them."""

class CoreMetrics:
    """Per-worker counters by route, method and status; latency histograms."""

    bytes_in: int
    bytes_out: int
    def __init__(self) -> None: ...
    def route_slot(self, name: str) -> int: ...
    def upstream_slot(self, name: str) -> int: ...
    def observe(
        self,
        route: str,
        method: str,
        status: int,
        duration: float,
        upstream: str | None = None,
        upstream_duration: float = -1.0,
    ) -> None:
        """Count one request from Python (tests, and requests answered outside the core)."""
    def snapshot(self) -> dict[str, Any]:
        """Plain data: requests, ratelimit decisions, duration histograms, bytes."""

class AccessLog:
    """JSON lines formatted by the core, handed to `sink(bytes)` by size and time.

    `fields` is a subset of ACCESS_LOG_FIELDS (None: all); `sample` in [0, 1] keeps that
    share of lines, and every line with status >= 400 when `keep_errors`.
    """

    def __init__(
        self,
        sink: Callable[[bytes], object],
        fields: Sequence[str] | None = None,
        sample: float = 1.0,
        keep_errors: bool = True,
        flush_bytes: int = 262144,
        flush_interval: float = 1.0,
    ) -> None: ...
    @property
    def lines(self) -> int: ...
    @property
    def sampled_out(self) -> int: ...
    def flush(self) -> None:
        """Hand the buffered lines to the sink now."""
    def write_line(self, record: dict[str, Any]) -> None:
        """A line built in Python (requests the core never saw); same buffer, same order."""

# --- errors.pxi ------------------------------------------------------------------------

INTERNAL_ERROR_WHERE: tuple[str, ...]
"""`where` label values of fastgw_internal_errors_total."""

def internal_error_counts() -> dict[str, int]:
    """This worker's internal errors (bugs caught inside the core), by where."""

# --- ratelimit.pxi ---------------------------------------------------------------------

RATE_TABLE_SLOTS: int
"""Slots of a rate limit table unless configured."""
SLOT_BYTES: int

class RateTable:
    """GCRA buckets: 16-byte slots, private or shared (fd) between workers."""

    def __new__(cls, slots: int = ..., fd: int = -1) -> Self:
        """`slots` a power of two >= 8; `fd` a file to map shared (-1: a private table)."""
    @property
    def slots(self) -> int: ...
    @property
    def shared(self) -> bool: ...
    @staticmethod
    def bytes_for(slots: int = ...) -> int:
        """The size of a shared table file with `slots` slots."""
    @property
    def evictions(self) -> tuple[int, int]:
        """(slots reused whose bucket was full again, slots reused that still held tokens)."""
    def used(self) -> int:
        """Slots holding a key (a scan: for tests and the admin API)."""

def rate_table() -> RateTable:
    """This process's table: the shared one attached at start, or a private one."""

def set_rate_table_slots(slots: int) -> None:
    """The size of the private table, made on first use (a made table keeps its size)."""

def attach_rate_table(fd: int, slots: int = ...) -> RateTable:
    """Use the table in `fd` (a file the supervisor made and every worker maps)."""

_KeySources: TypeAlias = Sequence[tuple[str, Any]]
"""(kind, argument) per key source: "client_ip", "route", "consumer" (no argument),
"header" (name bytes), "param" ({pattern id: capture index}), "claim" (name)."""

class RateLimiter:
    """One rate_limit entry: limits (ns per token, burst), key sources, identity."""

    def __init__(
        self,
        limiter_id: str,
        keys: _KeySources,
        fallback: str,
        limits: Sequence[tuple[int, int]],
        cost: int = 1,
        headers: Literal["none", "draft", "legacy", "both"] = "draft",
        table: RateTable | None = None,
        delay_ns: int = 0,
    ) -> None: ...
    @property
    def table(self) -> RateTable: ...
    @property
    def cost(self) -> int: ...
    @property
    def delay_ns(self) -> int:
        """A request may wait this long instead of being refused."""
    @property
    def headers(self) -> int: ...
    @property
    def key_kinds(self) -> tuple[tuple[int, Any], ...]: ...
    @property
    def fallback(self) -> int: ...
    @property
    def limiter_id(self) -> str: ...
    def check(
        self, key: bytes, now_ns: int | None = None, cost: int | None = None
    ) -> tuple[bool, int, int, int, int] | tuple[bool, int, int, int, int, int]:
        """One decision for `key`: (allowed, limit, remaining, reset s, retry-after s), and
        the wait in ns when the limiter has a delay. `now_ns` injects the monotonic clock."""
    def check_fast(self, key: bytes) -> bool:
        """A decision with the real clock and nothing built for the caller (benchmarks)."""

class ConcurrencyLimiter:
    """A concurrency_limit entry: requests in flight per key in this worker, and a queue."""

    def __init__(
        self,
        keys: _KeySources,
        fallback: str,
        max_inflight: int,
        queue_max: int = 0,
        queue_timeout: float = 1.0,
        status: int = 503,
    ) -> None: ...
    @property
    def max_inflight(self) -> int: ...
    @property
    def queue_max(self) -> int:
        """Waiting requests per key; 0: refuse at once."""
    @property
    def queue_timeout(self) -> float: ...
    @property
    def code(self) -> int:
        """The ERROR_TABLE code a refusal is answered with (503 or 429)."""
    @property
    def key_kinds(self) -> tuple[tuple[int, Any], ...]: ...
    @property
    def fallback(self) -> int: ...
    def inflight(self, key: bytes) -> int: ...
    def waiting(self, key: bytes) -> int: ...

@final
class Lease:
    """Batched Redis limiting: tokens of one key leased from Redis, spent by the core."""

    tokens: int
    want: int
    """Tokens the next lease asks for."""
    expires: float
    """time.monotonic() when unused tokens lapse."""
    denied_until: float
    limit: int
    remaining: int
    reset_at: float
    fetch: Any
    """The refill in flight (an asyncio.Task), or None."""
    def __init__(self, want: int) -> None: ...

@final
class LeaseStep:
    """A batched Redis rate_limit entry as the core runs it: leases by key, and the
    policy's hooks for what the core cannot decide."""

    def __init__(
        self,
        leases: dict[bytes, Lease],
        keys: _KeySources,
        fallback: str,
        cost: int,
        headers: Literal["none", "draft", "legacy", "both"],
        slow: Callable[[PolicyRequest], Awaitable[Any]],
        refill: Callable[[bytes, Lease], object],
    ) -> None: ...
    @property
    def leases(self) -> dict[bytes, Lease]: ...
    @property
    def key_kinds(self) -> tuple[tuple[int, Any], ...]: ...
    @property
    def fallback(self) -> int: ...
    @property
    def cost(self) -> int: ...
    @property
    def headers(self) -> int: ...
    @property
    def slow(self) -> Callable[[PolicyRequest], Awaitable[Any]]:
        """async def (request): the policy's full check."""
    @property
    def refill(self) -> Callable[[bytes, Lease], object]:
        """def (key, lease): start a refill in the background."""

# --- upstream.pxi ----------------------------------------------------------------------

class UpstreamTarget:
    """One host:port with its pool of idle keep-alive connections."""

    max_idle: int
    idle_timeout: float
    def __init__(self, host: str, port: int) -> None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def host_header(self) -> bytes:
        """Host sent upstream unless the route preserves the client's."""
    @property
    def open_connections(self) -> int: ...
    @property
    def connects(self) -> int:
        """Connections ever opened."""
    @property
    def failures(self) -> int:
        """Connection attempts failed in a row."""
    @property
    def healthy(self) -> bool:
        """False: selectors pass the target over (set_healthy)."""
    @property
    def in_flight(self) -> int:
        """Exchanges given this target and not yet ended."""
    @property
    def label(self) -> bytes:
        """b"host:port" for logs and metrics."""
    @property
    def idle_count(self) -> int: ...
    def set_healthy(self, healthy: bool) -> None:
        """Mark the target up or down for the selector of every pool that names it."""
    def close_idle(self) -> None: ...

class TargetSelector:
    """How a pool chooses the target of an exchange.

    The built-in selectors choose in C. A selector written in Python subclasses this class
    and defines `select`; it serves one pool and should pass over targets that are down.
    """

    def select(self, pool: UpstreamPool, request: SelectionRequest | None) -> UpstreamTarget:
        """The target of `pool` for `request`: one of `pool.targets`."""

@final
class SmoothWeightedRoundRobin(TargetSelector):
    """Smooth weighted round robin over the targets that are up (all of them when every
    target is down); every pool starts with one."""

    def select(self, pool: UpstreamPool, request: SelectionRequest | None = None) -> UpstreamTarget:
        """The next target in the sequence (the request is not read)."""

@final
class SelectionRequest:
    """The request a Python selector chooses for: read-only, during its select() call only
    (RuntimeError afterwards)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str:
        """The normalised path the route matched (before strip_prefix or rewrite)."""
    @property
    def client_ip(self) -> str: ...
    def header(self, name: str) -> str | None:
        """The first request field of that name (any case), or None."""

@final
class UpstreamPool:
    """The targets of one named upstream, and the selector that chooses among them."""

    def __init__(self, name: str, targets: list[UpstreamTarget], weights: list[int]) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def targets(self) -> tuple[UpstreamTarget, ...]: ...
    @property
    def target_list(self) -> list[UpstreamTarget]: ...
    @property
    def selector(self) -> TargetSelector: ...
    def set_selector(self, selector: TargetSelector) -> None:
        """Choose targets with `selector` from the next exchange on (ValueError if it serves
        a pool already). A reload makes new pools, with smooth weighted round robin."""

# --- policy.pxi ------------------------------------------------------------------------

TEMPLATE_VARIABLES: dict[str, int]
"""Template variable name ($client_ip, ...) -> the code a compiled template holds."""
MANAGED_FIELDS: frozenset[str]
"""Lowercase field names the gateway manages: no policy may set, remove or rename them."""

def set_identity_scope_header(name: str | None) -> None:
    """The upstream field `PolicyRequest.authenticate(scope=...)` fills (None: none)."""

def check_field(name: str, value: str | None = None) -> None:
    """Raise ValueError unless `name` is a token a policy may change and `value` is safe."""

class _HeaderOp(Protocol):
    @property
    def op(self) -> Literal["set", "add", "remove", "rename"]: ...
    @property
    def name(self) -> bytes: ...
    @property
    def template(self) -> Sequence[bytes | int] | None: ...
    @property
    def new_name(self) -> bytes | None: ...

class HeaderOps:
    """Header operations for one path pattern (fastgw.policy.compiled.HeaderOp objects,
    their templates resolved for it: bytes, capture indexes, TEMPLATE_VARIABLES codes)."""

    def __new__(cls, ops: Iterable[_HeaderOp]) -> Self: ...

_ChainOps: TypeAlias = HeaderOps | dict[int, HeaderOps] | None
"""One HeaderOps for every path pattern of the route, one per pattern id, or none."""

class CoreChain:
    """A route's compiled policy chain: its policies' parts joined in chain order
    (fastgw.plan.compile_chain builds it from each policy's compile_core)."""

    def __init__(
        self,
        disabled: bool,
        steps: Iterable[CoreStep] = (),
        request_ops: _ChainOps = None,
        response_ops: _ChainOps = None,
        response_hooks: Iterable[ResponseHook] = (),
        body_limit: int = 0,
    ) -> None: ...
    @property
    def disabled(self) -> bool: ...
    @property
    def steps(self) -> tuple[CoreStep, ...]:
        """The request steps, in chain order."""
    @property
    def request_ops(self) -> _ChainOps: ...
    @property
    def response_ops(self) -> _ChainOps: ...
    @property
    def response_hooks(self) -> tuple[ResponseHook, ...]: ...
    @property
    def python_hooks(self) -> bool:
        """A request step runs Python that reads the request (a hook, a lease's slow path)."""
    @property
    def body_limit(self) -> int:
        """Body bytes read before the steps run; 0: the body streams."""

class Headers:
    """Case-insensitive, read-only view of header fields as received.

    `in`, [] and get() look a name up; iteration and items() give (name, value) pairs.
    """

    def __init__(self, fields: Iterable[tuple[str, str]]) -> None: ...
    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _T) -> str | _T: ...
    def getall(self, name: str) -> list[str]: ...
    def __getitem__(self, name: str, /) -> str: ...
    def __contains__(self, name: object, /) -> bool: ...
    def __iter__(self) -> Iterator[tuple[str, str]]: ...
    def __len__(self) -> int: ...
    def items(self) -> list[tuple[str, str]]: ...
    def keys(self) -> list[str]: ...

class PolicyRequest:
    """The request as a Python policy's hooks see it (made by the gateway, never by hand).

    Reading it after the exchange is over raises RuntimeError: keep what you need in
    `scratch`.
    """

    @property
    def consumer(self) -> Any:
        """Who the client is, as an authentication policy set it; None until one does."""
    @consumer.setter
    def consumer(self, value: Any) -> None: ...
    @property
    def claims(self) -> dict[str, Any] | None:
        """What the client proved (a token's claims), set with `consumer`."""
    @claims.setter
    def claims(self, value: dict[str, Any] | None) -> None: ...
    @property
    def authenticated(self) -> bool:
        """Whether an authentication policy earlier in the chain accepted the client."""
    def authenticate(
        self,
        consumer: Any,
        claims: dict[str, Any] | None = None,
        by: str = "python",
        scope: str | None = None,
    ) -> None:
        """Accept the client as `consumer` (its identity fields go upstream)."""
    def add_local_header(self, name: str, value: str) -> None:
        """A field for the gateway's own answer to this request, should it answer itself."""
    def auth_failed(
        self,
        code: str,
        challenge: str | None = None,
        anonymous: Any = None,
        fallthrough: bool = False,
    ) -> Any:
        """Note an authentication failure: None when the chain goes on, else the Response
        to answer with."""
    @property
    def route(self) -> str: ...
    @property
    def body(self) -> bytes | None:
        """The request body, when a policy of the chain has `needs_body`."""
    @property
    def request_id(self) -> str: ...
    @property
    def scratch(self) -> dict[str, Any]:
        """A dict for this request only: hooks pass data to later hooks through it."""
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str:
        """The normalised path."""
    @property
    def query(self) -> str | None: ...
    @property
    def params(self) -> dict[str, str]:
        """The route pattern's captures."""
    @property
    def headers(self) -> Headers: ...
    @property
    def client_ip(self) -> str: ...
    def record_rate_limit(
        self,
        allowed: bool,
        limit: int = -1,
        remaining: int = 0,
        reset: int = 0,
        retry_after: int = 0,
        headers: Literal["none", "draft", "legacy", "both"] = "none",
    ) -> None:
        """Count a rate limit decision a Python policy made (metrics, access log), as the
        core counts its own. With `limit` >= 0 the core also adds the RateLimit fields
        (`headers`: draft, legacy, both or none; Retry-After when refused) to every
        response of the exchange, the policy's own answer included."""
    def set_header(self, name: str, value: str) -> None:
        """Set an upstream request header (replacing the client's fields of that name)."""
    def add_header(self, name: str, value: str) -> None:
        """Add an upstream request header field."""
    def remove_header(self, name: str) -> None:
        """Remove the client's fields of that name from the upstream request."""
    def rewrite_path(self, path: str) -> None:
        """Send this path upstream instead (the query is kept); ValueError if invalid."""
    def set_upstream(self, name: str) -> None:
        """Send this request to another upstream of the configuration."""

class ResponseView:
    """The upstream's response as a response hook sees it (made by the gateway)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Headers:
        """The response's forwarded fields; RuntimeError once the head went out."""
    def set_header(self, name: str, value: str) -> None: ...
    def add_header(self, name: str, value: str) -> None: ...
    def remove_header(self, name: str) -> None: ...

# --- protocol.pxi ----------------------------------------------------------------------

class RouteAction:
    """A compiled route; its timeouts and body limit are the effective (resolved) ones."""

    def __init__(
        self,
        name: str,
        route_id: int,
        pool: UpstreamPool,
        strip_prefix: str | None,
        rewrites: dict[int, tuple[bytes | int, ...]] | None,
        preserve_host: bool,
        chain: CoreChain | None,
        *,
        connect_timeout: float,
        read_timeout: float,
        send_timeout: float,
        max_body_bytes: int,
        body_stages: Iterable[BodyStage] = (),
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def route_id(self) -> int: ...
    @property
    def pool(self) -> UpstreamPool: ...
    @property
    def chain(self) -> CoreChain | None:
        """None when the route has no policies."""
    @property
    def connect_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def send_timeout(self) -> float: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def body_stages(self) -> tuple[BodyStage, ...] | None:
        """The response body stages in order; None when the route has none."""
    def _set_body_stages(self, stages: Iterable[BodyStage]) -> None:
        """Internal, for tests: plug body stages into a route of a running plan."""

class CoreLimits:
    """Request limits as the core applies them; every value required (the schema's)."""

    def __init__(
        self,
        *,
        max_header_bytes: int,
        max_headers: int,
        max_target_bytes: int,
        max_body_bytes: int,
        headers_with_underscores: Literal["drop", "reject", "allow"],
        merge_slashes: bool,
        path_semicolons: Literal["reject", "allow"],
    ) -> None: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_headers(self) -> int: ...
    @property
    def max_target_bytes(self) -> int: ...
    @property
    def max_body_bytes(self) -> int:
        """The largest body any route allows: the parser's limit until the route is known."""
    @property
    def headers_with_underscores(self) -> Literal["drop", "reject", "allow"]: ...
    @property
    def merge_slashes(self) -> bool: ...
    @property
    def path_semicolons(self) -> Literal["reject", "allow"]: ...

class CoreTimeouts:
    """Client and upstream timeouts in seconds; every value required (the schema's)."""

    def __init__(
        self,
        *,
        client_header: float,
        client_body_idle: float,
        keepalive_idle: float,
        upstream_read: float,
        upstream_send: float,
        client_send: float,
    ) -> None: ...
    @property
    def client_header(self) -> float: ...
    @property
    def client_body_idle(self) -> float: ...
    @property
    def keepalive_idle(self) -> float: ...
    @property
    def upstream_read(self) -> float: ...
    @property
    def upstream_send(self) -> float: ...
    @property
    def client_send(self) -> float: ...

class CorePlan:
    """The executable part of a Plan: router, route actions, limits and timeouts."""

    def __init__(
        self,
        router: Router,
        actions: list[RouteAction | None],
        limits: CoreLimits,
        timeouts: CoreTimeouts,
        trusted_networks: Sequence[IPv4Network | IPv6Network],
        pools: dict[str, UpstreamPool],
    ) -> None: ...
    @property
    def router(self) -> Router: ...
    @property
    def actions(self) -> list[RouteAction | None]:
        """The RouteAction of each route id (None: the route cannot serve)."""
    @property
    def limits(self) -> CoreLimits: ...
    @property
    def timeouts(self) -> CoreTimeouts: ...

class Engine:
    """Connections, the coarse clock tick, timeouts and drain for one event loop."""

    loop: AbstractEventLoop
    plan: CorePlan | None
    """The live plan; None until the gateway sets one."""
    metrics_on: bool
    access_log: AccessLog | None
    trace_mode: int
    """0 off, 1 propagate a client's traceparent, 2 start a trace when none came."""
    server_timing: bool
    """Server-Timing on proxied responses."""
    def __init__(self, loop: AbstractEventLoop, tick_interval: float = 0.1) -> None: ...
    def target(self, host: str, port: int) -> UpstreamTarget:
        """The shared UpstreamTarget for host:port (created on first use)."""
    def start(self) -> None:
        """Start the clock tick."""
    def protocol_factory(self) -> ClientProtocol: ...
    def proxy_protocol_factory(self) -> ClientProtocol:
        """Connections of a proxy_protocol listener: a PROXY header comes first."""
    def begin_drain(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their exchange."""
    def close(self) -> None: ...
    @property
    def draining(self) -> bool: ...
    @property
    def requests_total(self) -> int: ...
    @property
    def metrics(self) -> CoreMetrics: ...
    @property
    def proxy_refused(self) -> int:
        """PROXY headers from peers not in trusted_proxies."""
    @property
    def proxy_invalid(self) -> int:
        """Malformed, oversized or late PROXY headers."""
    @property
    def active_connections(self) -> int: ...
    @property
    def busy_connections(self) -> int: ...
    def connection_states(self) -> dict[str, int]:
        """Client connections by state: reading, active, idle and tunnel."""
    def metrics_snapshot(self) -> dict[str, Any]:
        """This worker's counters and gauges as plain data (see fastgw.observe.metrics)."""

class ClientProtocol:
    """The asyncio protocol of one client connection (Engine's factories make them)."""

    def __init__(self, engine: Engine) -> None: ...
    def connection_made(self, transport: BaseTransport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...

# --- body.pxi --------------------------------------------------------------------------

class BodyStage:
    """What a route does with response bodies (observe or transform); the built-in stages
    are compiled, and decide per response at its head whether they take it."""

class BodyFilter:
    """One response body going through one stage."""

class PythonBodyStage(BodyStage):
    """A body stage written in Python (tests, experiments): override open()."""

    def open(self, status: int, headers: Headers, has_body: bool) -> PythonBodyFilter | None:
        """A new filter for this response, or None to leave it alone. `has_body` is False
        for a response to HEAD, a 204 or a 304."""

class PythonBodyFilter(BodyFilter):
    """One response body through a PythonBodyStage: override on_data() and on_end().

    With `transforms`, their results (bytes or None) are what the client gets instead of
    the body, which then has no length (chunked to HTTP/1.1, close-delimited to 1.0); else
    they only observe. `fields` are added to the head; `remove` names upstream fields the
    client does not get. Managed fields (content-length, connection, ...) are refused."""

    def __init__(
        self,
        *,
        transforms: bool = False,
        fields: Iterable[tuple[str, str]] = (),
        remove: Iterable[str] = (),
    ) -> None: ...
    def on_data(self, chunk: bytes) -> bytes | None:
        """Body bytes, in order, as the upstream sent them."""
    def on_end(self, complete: bool) -> bytes | None:
        """Once: complete (the whole body went through on_data), or cut short."""

# --- steps.pxi -------------------------------------------------------------------------

REDIRECT_STATUSES: tuple[int, ...]
"""The statuses a RedirectStep answers with."""

class CoreStep:
    """One compiled request step of a route's chain. Only the core's subclasses can be made
    (a new kind of step is a subclass in fastgw/_native/steps.pxi): the base itself or a
    subclass written in Python raises TypeError."""

    @property
    def reads_request(self) -> bool:
        """It runs Python that reads the PolicyRequest."""

@final
class SyncHookStep(CoreStep):
    """A Python policy's `def on_request`."""

    def __init__(self, hook: Callable[[PolicyRequest], Any]) -> None: ...
    @property
    def hook(self) -> Callable[[PolicyRequest], Any]: ...

@final
class AsyncHookStep(CoreStep):
    """A Python policy's `async def on_request`; an asyncio Task only if it really waits."""

    def __init__(self, hook: Callable[[PolicyRequest], Any]) -> None:
        """`hook`: an `async def (request)`."""
    @property
    def hook(self) -> Callable[[PolicyRequest], Any]: ...

@final
class RespondStep(CoreStep):
    """A fixed answer (direct_response): status line and fields serialised once."""

    def __init__(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
        """`headers`: (lowercase name, value) pairs as fastgw.policy.Response holds them; the
        core adds content-length and x-request-id."""
    @property
    def status(self) -> int: ...
    @property
    def head(self) -> bytes:
        """The status line and the fields, each line ending in CRLF."""
    @property
    def body(self) -> bytes: ...

@final
class RedirectStep(CoreStep):
    """A redirect whose Location is a template; substitutions are percent-encoded."""

    def __init__(
        self,
        status: int,
        locations: Mapping[int, Sequence[bytes | int]],
        keep_query: bool,
    ) -> None:
        """`locations`: {pattern id: template resolved for that pattern}."""
    @property
    def status(self) -> int: ...
    @property
    def keep_query(self) -> bool: ...
    @property
    def locations(self) -> dict[int, tuple[bytes | int, ...]]: ...

@final
class RateLimitStep(CoreStep):
    """A local rate_limit entry: a decision in the GCRA table, a 429 or a `delay`."""

    def __init__(self, limiter: RateLimiter) -> None: ...
    @property
    def limiter(self) -> RateLimiter: ...

@final
class LeaseLimitStep(CoreStep):
    """A batched Redis rate_limit entry: spends leased tokens, else awaits the policy's
    own check (`lease.slow`)."""

    def __init__(self, lease: LeaseStep) -> None: ...
    @property
    def lease(self) -> LeaseStep: ...

@final
class ConcurrencyLimitStep(CoreStep):
    """A concurrency_limit entry: a place held until the exchange ends, a queue, or 503/429."""

    def __init__(self, limiter: ConcurrencyLimiter) -> None: ...
    @property
    def limiter(self) -> ConcurrencyLimiter: ...

@final
class KeyAuthStep(CoreStep):
    """key_auth: an API key from a header or the query, looked up in a plan-time table and
    compared in constant time."""

    def __init__(
        self,
        header: bytes | None,
        query: bytes | None,
        keys: Mapping[bytes, Any],
        hide_query: bool = False,
        anonymous: Any = None,
        fallthrough: bool = False,
        challenge: str = "Key",
    ) -> None: ...
    def lookup(self, key: bytes) -> Any:
        """The consumer `key` belongs to, or None."""
    @property
    def header(self) -> bytes | None: ...
    @property
    def query(self) -> bytes | None: ...
    @property
    def hide_query(self) -> bool: ...
    @property
    def anonymous(self) -> Any: ...
    @property
    def fallthrough(self) -> bool: ...

@final
class CachedAuthStep(CoreStep):
    """Credentials a slow authentication hook accepted, accepted again in the core."""

    def __init__(
        self, header: bytes, by: str, hook: Callable[..., Any], max_entries: int = 10000
    ) -> None: ...
    def remember(
        self,
        value: bytes,
        consumer: Any,
        claims: dict[str, Any] | None = None,
        extra_head: bytes | None = None,
        expires: float | None = None,
    ) -> None: ...
    def forget(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def header(self) -> bytes: ...
    @property
    def by(self) -> str: ...
    @property
    def hook(self) -> Callable[..., Any]: ...
    @property
    def max_entries(self) -> int: ...

@final
class AclStep(CoreStep):
    """acl: the consumer's groups and a claim's scopes (401 without an identity, else 403)."""

    def __init__(
        self,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        scope_claim: str | None = None,
        require: Iterable[str] = (),
    ) -> None: ...
    def allows(self, groups: Iterable[str] = (), claims: Mapping[str, Any] | None = None) -> bool:
        """Whether a consumer of `groups` with `claims` passes."""
    @property
    def allow(self) -> frozenset[str]: ...
    @property
    def deny(self) -> frozenset[str]: ...
    @property
    def scope_claim(self) -> str | None: ...
    @property
    def require(self) -> frozenset[str]: ...

@final
class IpRestrictionStep(CoreStep):
    """An ip_restriction entry: the client address against CIDR tables; deny wins, a
    non-empty allow refuses the rest (403 ip_forbidden)."""

    def __init__(
        self, allow: Iterable[tuple[bytes, int]], deny: Iterable[tuple[bytes, int]]
    ) -> None:
        """(packed network, prefix length) pairs: 4 bytes for IPv4, 16 for IPv6, host bits
        zero."""
    @property
    def allow(self) -> tuple[tuple[bytes, int], ...]: ...
    @property
    def deny(self) -> tuple[tuple[bytes, int], ...]: ...
    def allows(self, address: bytes) -> bool:
        """Whether the rules let `address` (text, as the core derives it) pass."""

@final
class ResponseHook:
    """A Python policy's on_response, and whether it is `async def`."""

    def __init__(
        self, hook: Callable[[PolicyRequest, ResponseView], Any], is_async: bool
    ) -> None: ...
    @property
    def hook(self) -> Callable[[PolicyRequest, ResponseView], Any]: ...
    @property
    def is_async(self) -> bool: ...

# --- _core.pyx -------------------------------------------------------------------------

def build_info() -> dict[str, Any]:
    """How this core was built: Cython version, debug build (for `fastgw version`)."""
