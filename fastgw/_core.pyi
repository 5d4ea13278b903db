"""Typed view of fastgw._core, the compiled hot path (what Python code can see of it).

The C-level API (RequestParser.execute, Router.match, the protocol callbacks) is only
reachable from Cython; these are the Python entry points used by plan.py, api.py, tools
and tests.
"""

from asyncio import AbstractEventLoop
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Literal

ERROR_TABLE: dict[int, tuple[int, str, str]]
"""Error code -> (HTTP status, stable `code`, message) for every locally generated error."""
METHOD_IDS: dict[str, int]
METHOD_NAMES: dict[int, str]
STATUS_PHRASES: dict[int, str]
"""Status -> RFC 9110 reason phrase, for every status line the gateway writes itself."""

def status_line_for(status: int) -> bytes:
    """`HTTP/1.1 <status> <phrase>\\r\\n` as the core writes it (no phrase: empty)."""

def build_info() -> dict[str, Any]: ...
def parse_proxy_header(data: bytes) -> dict[str, Any] | None:
    """Parse a PROXY protocol (v1 or v2) header at the start of `data`.

    None while `data` is a valid prefix; ValueError when malformed; else a dict with
    `version`, `length` (header bytes) and `source` / `destination` as (ip, port), or None
    when the connection's own address stands (v1 UNKNOWN, v2 LOCAL, UNSPEC, UNIX).
    """

def proxy_header_signature(data: bytes) -> Literal["none", "partial", "found"]:
    """Whether `data` starts like a PROXY header: "partial" is a strict prefix of one."""

Event = (
    tuple[Literal["head"]]
    | tuple[Literal["body"], bytes]
    | tuple[Literal["done"]]
    | tuple[Literal["error"], str]
)

class _Http1Parser:
    error_code: int
    detail_code: int
    """For upstream errors: the syntax-level code behind the reported one (for logs)."""
    in_message: bool
    head_done: bool
    version_minor: int
    n_headers: int
    framing: int
    """0 none, 1 Content-Length, 2 chunked, 3 until close, 4 tunnel (after 101)."""
    content_length: int
    """-1 without a valid Content-Length."""
    keep_alive: bool

class RequestParser(_Http1Parser):
    """Incremental, strict HTTP/1.1 request parser (see docs/strictness.md)."""

    method_id: int
    has_query: bool
    absolute_form: bool
    upgrade_websocket: bool
    expect_continue: bool

    def __init__(
        self,
        max_header_bytes: int = 32768,
        max_headers: int = 100,
        max_target_bytes: int = 8192,
        max_body_bytes: int = 10485760,
    ) -> None: ...
    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; events in order. An ("error", code) event is final."""
    @property
    def error(self) -> str | None: ...
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
    @property
    def version(self) -> bytes: ...
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    def forwarded_headers(self) -> list[tuple[bytes, bytes]]: ...
    def header_ids(self) -> list[int]: ...

class ResponseParser(_Http1Parser):
    """Incremental HTTP/1.1 response parser for upstream responses."""

    status: int

    def __init__(self, max_header_bytes: int = 32768, max_headers: int = 100) -> None: ...
    def set_request_method(self, method_id: int) -> None: ...
    def feed(self, data: bytes) -> list[Event]: ...
    def feed_eof_py(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def reason(self) -> bytes: ...
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    def forwarded_headers(self) -> list[tuple[bytes, bytes]]: ...

class Router:
    """Host + path-pattern trie with methods; compile() once, then match."""

    def __init__(self) -> None: ...
    def add(
        self,
        route_id: int,
        hosts: Sequence[str],
        patterns: Sequence[str],
        methods: Sequence[str] | None = None,
        priority: int = 0,
    ) -> list[int]:
        """Add a route; returns one pattern id per pattern. ValueError for a bad pattern."""
    def compile(self) -> None: ...
    def pattern_params(self, pattern_id: int) -> list[str]: ...
    def pattern_text(self, pattern_id: int) -> str: ...
    def lookup(
        self, method: str, host: str, path: str
    ) -> (
        tuple[Literal["found"], int, int, dict[str, str]]
        | tuple[Literal["not_found"]]
        | tuple[Literal["method_not_allowed"], list[str]]
    ): ...
    def explain(self, method: str, host: str, path: str) -> list[str]: ...
    def describe(self) -> list[dict[str, Any]]: ...
    def shadowed(self) -> list[tuple[int, int]]:
        """(route_id, by_route_id) for every route that can never match."""

class UpstreamTarget:
    """One host:port with its pool of idle keep-alive connections."""

    host: str
    port: int
    host_header: bytes
    max_idle: int
    idle_timeout: float
    open_connections: int
    connects: int
    failures: int
    label: bytes
    idle_count: int
    def __init__(self, host: str, port: int) -> None: ...
    def close_idle(self) -> None: ...

class UpstreamPool:
    name: str
    target_list: list[UpstreamTarget]
    def __init__(self, name: str, targets: list[UpstreamTarget], weights: list[int]) -> None: ...

class RouteAction:
    """A compiled route; its timeouts and body limit are the effective (resolved) ones."""

    name: str
    route_id: int
    pool: UpstreamPool
    connect_timeout: float
    read_timeout: float
    send_timeout: float
    max_body_bytes: int
    def __init__(
        self,
        name: str,
        route_id: int,
        pool: UpstreamPool,
        strip_prefix: str | None,
        rewrites: dict[int, tuple[bytes | int, ...]] | None,
        preserve_host: bool,
        chain: Any,
        *,
        connect_timeout: float,
        read_timeout: float,
        send_timeout: float,
        max_body_bytes: int,
    ) -> None: ...

class CoreLimits:
    """Request limits as the core applies them; every value required (the schema's)."""

    max_header_bytes: int
    max_headers: int
    max_target_bytes: int
    max_body_bytes: int
    headers_with_underscores: Literal["drop", "reject", "allow"]
    def __init__(
        self,
        *,
        max_header_bytes: int,
        max_headers: int,
        max_target_bytes: int,
        max_body_bytes: int,
        headers_with_underscores: str,
    ) -> None: ...

class CoreTimeouts:
    """Client and upstream timeouts in seconds; every value required (the schema's)."""

    client_header: float
    client_body_idle: float
    keepalive_idle: float
    upstream_read: float
    upstream_send: float
    client_send: float
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

class CorePlan:
    router: Router
    actions: list[RouteAction | None]
    limits: CoreLimits
    timeouts: CoreTimeouts
    def __init__(
        self,
        router: Router,
        actions: list[RouteAction | None],
        limits: CoreLimits,
        timeouts: CoreTimeouts,
        trusted_networks: Sequence[IPv4Network | IPv6Network],
        pools: dict[str, UpstreamPool],
    ) -> None: ...

INTERNAL_ERROR_WHERE: tuple[str, ...]
"""`where` label values of fastgw_internal_errors_total."""

def internal_error_counts() -> dict[str, int]:
    """This worker's internal errors (bugs caught inside the core), by where."""

class Engine:
    """Connections, the coarse clock tick, timeouts and drain for one event loop."""

    loop: AbstractEventLoop
    plan: CorePlan
    draining: bool
    requests_total: int
    active_connections: int
    busy_connections: int
    def __init__(self, loop: AbstractEventLoop, tick_interval: float = 0.1) -> None: ...
    def target(self, host: str, port: int) -> UpstreamTarget: ...
    def start(self) -> None: ...
    def protocol_factory(self) -> Any: ...
    def proxy_protocol_factory(self) -> Any:
        """Connections of a proxy_protocol listener: a PROXY header comes first."""
    proxy_refused: int
    proxy_invalid: int
    def begin_drain(self) -> None: ...
    def close(self) -> None: ...
    metrics: CoreMetrics
    metrics_on: bool
    access_log: AccessLog | None
    trace_mode: int
    server_timing: bool
    def connection_states(self) -> dict[str, int]: ...
    def metrics_snapshot(self) -> dict[str, Any]: ...

HISTOGRAM_BOUNDS: tuple[float, ...]
ACCESS_LOG_FIELDS: tuple[str, ...]

class CoreMetrics:
    """Per-worker counters by route, method and status; latency histograms."""

    bytes_in: int
    bytes_out: int
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
    ) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...

class AccessLog:
    """JSON lines formatted by the core, handed to `sink(bytes)` by size and time."""

    lines: int
    sampled_out: int
    def __init__(
        self,
        sink: Any,
        fields: Sequence[str] | None = None,
        sample: float = 1.0,
        keep_errors: bool = True,
        flush_bytes: int = 262144,
        flush_interval: float = 1.0,
    ) -> None: ...
    def flush(self) -> None: ...
    def write_line(self, record: dict[str, Any]) -> None: ...

RATE_TABLE_SLOTS: int
SLOT_BYTES: int

class RateTable:
    """GCRA buckets: 16-byte slots, private or shared (fd) between workers."""

    slots: int
    shared: bool
    evictions: tuple[int, int]
    def __init__(self, slots: int = ..., fd: int = -1) -> None: ...
    @staticmethod
    def bytes_for(slots: int = ...) -> int: ...
    def used(self) -> int: ...

def rate_table() -> RateTable: ...
def attach_rate_table(fd: int, slots: int = ...) -> RateTable: ...

class RateLimiter:
    """One rate_limit entry: limits (ns per token, burst), key sources, identity."""

    table: RateTable
    cost: int
    delay_ns: int
    headers: int
    limiter_id: str
    def __init__(
        self,
        limiter_id: str,
        keys: Sequence[tuple[str, Any]],
        fallback: str,
        limits: Sequence[tuple[int, int]],
        cost: int = 1,
        headers: str = "draft",
        table: RateTable | None = None,
        delay_ns: int = 0,
    ) -> None: ...
    def check(
        self, key: bytes, now_ns: int | None = None, cost: int | None = None
    ) -> tuple[int | bool, ...]: ...
    def check_fast(self, key: bytes) -> bool: ...

class ConcurrencyLimiter:
    max_inflight: int
    queue_max: int
    queue_timeout: float
    def __init__(
        self,
        keys: Sequence[tuple[str, Any]],
        fallback: str,
        max_inflight: int,
        queue_max: int = 0,
        queue_timeout: float = 1.0,
        status: int = 503,
    ) -> None: ...
    def inflight(self, key: bytes) -> int: ...
    def waiting(self, key: bytes) -> int: ...

class Lease:
    """Batched Redis limiting: tokens of one key leased from Redis, spent by the core."""

    tokens: int
    want: int
    expires: float
    denied_until: float
    limit: int
    remaining: int
    reset_at: float
    fetch: Any
    def __init__(self, want: int) -> None: ...

class LeaseStep:
    leases: dict[bytes, Lease]
    cost: int
    headers: int
    def __init__(
        self,
        leases: dict[bytes, Lease],
        keys: Sequence[tuple[str, Any]],
        fallback: str,
        cost: int,
        headers: str,
        slow: Any,
        refill: Any,
    ) -> None: ...

def set_rate_table_slots(slots: int) -> None: ...
