# protocol.pxi: the client side of the proxy, the compiled plan it executes, and the
# engine that owns connections, the coarse clock and the timeouts.
#
# No asyncio Task per request (DESIGN.md principle 2): uvloop calls the protocol methods,
# the request parser is pulled in a loop, and every decision that could be taken at plan
# time (route actions, rewrite templates, limits) already was, in plan.py.

from libc.string cimport memcmp, memmove
import ipaddress as _ipaddress
from collections import deque as _deque
import os as _os

import orjson as _orjson

cdef double _now = 0.0          # monotonic seconds, refreshed once per engine tick

cdef enum ConnState:
    CS_IDLE = 0                 # between requests (keep-alive)
    CS_HEAD = 1                 # receiving a request head
    CS_EXCHANGE = 2             # request routed; exchange with the upstream running
    CS_TUNNEL = 3               # after 101: bytes both ways
    CS_PROXY = 4                # a proxy_protocol listener: the PROXY header comes first

cdef enum:
    BLOCK_UPSTREAM_FULL = 1     # the upstream's write buffer is above its high-water mark
    BLOCK_PENDING = 2           # unconsumed client bytes wait for the current exchange
    OUT_NONE = 0
    OUT_LENGTH = 1
    OUT_CHUNKED = 2
    OUT_CLOSE = 3
    COALESCE_BODY_BYTES = 16384  # response bodies up to this size share the head's write
    WAITING_READ_BYTES = 65536   # read ahead of a queued or parked request, at most
    CONNECT_DEADLINE_SLACK = 1   # s past a connect timeout before the deadline backs it up

cdef bytes _CRLF = b"\r\n"
cdef bytes _LAST_CHUNK = b"0\r\n\r\n"
cdef bytes _CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# error code -> its stable `code` as a JSON string, for the access log's "code" field
cdef dict _LOG_CODES = {code: _orjson.dumps(entry[1]) for code, entry in ERROR_TABLE.items()}


cdef class RouteAction:
    """What to do with a request once its route is known (built once per Plan)."""

    cdef readonly str name
    cdef readonly int route_id
    cdef readonly UpstreamPool pool
    cdef bytes strip_prefix               # None when the route does not strip
    cdef dict rewrites                    # pattern_id -> tuple of bytes / int parts, or None
    cdef bint preserve_host
    cdef readonly CoreChain chain         # None when the route has no policies
    cdef bytes name_bytes
    cdef bytes log_field                  # ',"route":"NAME"' for the access log
    cdef int metric_slot                  # this route in the engine's CoreMetrics
    # Effective limits, the route's own or the global ones (resolved in plan.py).
    cdef readonly double connect_timeout
    cdef readonly double read_timeout
    cdef readonly double send_timeout
    cdef readonly int64_t max_body_bytes

    def __init__(self, str name, int route_id, UpstreamPool pool, strip_prefix,
                 rewrites, bint preserve_host, CoreChain chain, *, double connect_timeout,
                 double read_timeout, double send_timeout, int64_t max_body_bytes):
        self.name = name
        self.metric_slot = -1
        self.name_bytes = name.encode("utf-8")
        self.log_field = b',"route":' + _orjson.dumps(name)
        self.route_id = route_id
        self.pool = pool
        self.strip_prefix = strip_prefix.encode() if strip_prefix else None
        self.rewrites = rewrites
        self.preserve_host = preserve_host
        self.chain = chain
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.send_timeout = send_timeout
        self.max_body_bytes = max_body_bytes


cdef class CoreLimits:
    """The gateway's request limits as the core applies them. Every value is required:
    their defaults are the config schema's (fastgw/config/schema.py), filled in plan.py."""

    cdef readonly Py_ssize_t max_header_bytes
    cdef readonly Py_ssize_t max_headers
    cdef readonly Py_ssize_t max_target_bytes
    cdef readonly int64_t max_body_bytes       # the largest any route allows (plan.py)
    cdef readonly str headers_with_underscores

    def __init__(self, *, Py_ssize_t max_header_bytes, Py_ssize_t max_headers,
                 Py_ssize_t max_target_bytes, int64_t max_body_bytes,
                 str headers_with_underscores):
        if headers_with_underscores not in UNDERSCORE_MODES:
            raise ValueError(f"headers_with_underscores must be one of "
                             f"{sorted(UNDERSCORE_MODES)}, got {headers_with_underscores!r}")
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_target_bytes = max_target_bytes
        self.max_body_bytes = max_body_bytes
        self.headers_with_underscores = headers_with_underscores


cdef class CoreTimeouts:
    """The gateway's client and upstream timeouts in seconds, all required (see
    CoreLimits); a route's own upstream timeouts are on its RouteAction."""

    cdef readonly double client_header
    cdef readonly double client_body_idle
    cdef readonly double keepalive_idle
    cdef readonly double upstream_read
    cdef readonly double upstream_send
    cdef readonly double client_send

    def __init__(self, *, double client_header, double client_body_idle,
                 double keepalive_idle, double upstream_read, double upstream_send,
                 double client_send):
        self.client_header = client_header
        self.client_body_idle = client_body_idle
        self.keepalive_idle = keepalive_idle
        self.upstream_read = upstream_read
        self.upstream_send = upstream_send
        self.client_send = client_send


cdef class CorePlan:
    """The executable part of a Plan: router, route actions, limits and timeouts."""

    cdef readonly Router router
    cdef readonly list actions            # RouteAction per route id
    cdef Py_ssize_t max_header_bytes
    cdef Py_ssize_t max_headers
    cdef Py_ssize_t max_target_bytes
    # The largest body any route accepts: the parser's limit until the route is known.
    cdef int64_t max_body_bytes
    cdef int underscores                  # UNDERSCORES_* for request field names
    cdef double client_header
    cdef double client_body_idle
    cdef double keepalive_idle
    cdef double upstream_read
    cdef double upstream_send
    cdef double client_send
    cdef tuple trusted_networks
    cdef dict pools                       # upstream name -> UpstreamPool (for set_upstream)
    cdef readonly CoreLimits limits
    cdef readonly CoreTimeouts timeouts

    def __init__(self, Router router, list actions, CoreLimits limits not None,
                 CoreTimeouts timeouts not None, trusted_networks, dict pools not None):
        self.router = router
        self.actions = actions
        self.pools = pools
        self.limits = limits
        self.timeouts = timeouts
        # PERF: copied into C fields, read per request without a second indirection.
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_target_bytes = limits.max_target_bytes
        self.max_body_bytes = limits.max_body_bytes
        self.underscores = UNDERSCORE_MODES[limits.headers_with_underscores]
        self.client_header = timeouts.client_header
        self.client_body_idle = timeouts.client_body_idle
        self.keepalive_idle = timeouts.keepalive_idle
        self.upstream_read = timeouts.upstream_read
        self.upstream_send = timeouts.upstream_send
        self.client_send = timeouts.client_send
        self.trusted_networks = tuple(trusted_networks)

    cdef bint is_trusted(self, str ip):
        if not self.trusted_networks or not ip:
            return False
        try:
            addr = _ipaddress.ip_address(ip)
        except ValueError:
            return False
        for network in self.trusted_networks:
            if addr.version == network.version and addr in network:
                return True
        return False


cdef inline bint _valid_request_id(const char* p, Py_ssize_t n) noexcept:
    # 1..200 bytes of [A-Za-z0-9._:-]: safe to log and to echo in a header.
    cdef Py_ssize_t i
    cdef unsigned char c
    if n < 1 or n > 200:
        return False
    for i in range(n):
        c = <unsigned char>p[i]
        if not ((48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
                or c == 45 or c == 46 or c == 95 or c == 58):
            return False
    return True


cdef inline bint _is_lower_hex(const char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef bint nonzero = False
    for i in range(n):
        c = <unsigned char>p[i]
        if not ((48 <= c <= 57) or (97 <= c <= 102)):
            return False
        if c != 48:
            nonzero = True
    return nonzero


cdef bint _valid_traceparent(const char* v, Py_ssize_t n) noexcept:
    # version "-" trace-id "-" parent-id "-" flags; all-zero ids and version ff are invalid,
    # version 00 has exactly these 55 bytes, later versions may append "-" and more.
    if n < 55 or v[2] != b"-" or v[35] != b"-" or v[52] != b"-":
        return False
    if not (_is_lower_hex(v, 2) or (v[0] == b"0" and v[1] == b"0")):
        return False
    if v[0] == b"f" and v[1] == b"f":
        return False
    if v[0] == b"0" and v[1] == b"0" and n != 55:
        return False
    if n > 55 and v[55] != b"-":
        return False
    if not _is_lower_hex(v + 3, 32) or not _is_lower_hex(v + 36, 16):
        return False
    return _is_lower_hex(v + 53, 2) or (v[53] == b"0" and v[54] == b"0")


cdef inline bint _has_field(Http1Parser parser, int header_id) noexcept:
    cdef int i
    for i in range(parser.n_headers):
        if parser.hdr_id[i] == header_id:
            return True
    return False


cdef class Engine:
    """Owns the live Plan, the client connections, the clock tick and upstream targets."""

    cdef public object loop
    cdef public CorePlan plan
    cdef set connections
    cdef dict targets
    cdef readonly bint draining
    cdef object tick_handle
    cdef double tick_interval
    cdef bytes request_id_prefix
    cdef uint64_t request_counter
    cdef readonly int64_t requests_total
    cdef readonly CoreMetrics metrics
    cdef public bint metrics_on
    cdef public AccessLog access_log      # None: no access log
    cdef public int trace_mode            # TRACE_OFF, TRACE_PROPAGATE or TRACE_START
    cdef public bint server_timing        # Server-Timing on proxied responses
    cdef readonly uint64_t proxy_refused  # PROXY headers from untrusted peers
    cdef readonly uint64_t proxy_invalid  # malformed, oversized or late PROXY headers
    cdef double proxy_logged_at           # the last PROXY protocol warning (rate limit)

    def __init__(self, loop, double tick_interval=0.1):
        global _now
        self.loop = loop
        self.connections = set()
        self.targets = {}
        self.tick_interval = tick_interval
        self.request_id_prefix = _os.urandom(8).hex().encode()
        self.request_counter = 0
        self.metrics = CoreMetrics()
        self.metrics_on = True
        _now = loop.time()

    def target(self, str host, int port):
        """The shared UpstreamTarget for host:port (created on first use)."""
        key = (host, port)
        target = self.targets.get(key)
        if target is None:
            target = UpstreamTarget(host, port)
            self.targets[key] = target
        return target

    def start(self):
        self.tick_handle = self.loop.call_later(self.tick_interval, self._tick)

    def protocol_factory(self):
        return ClientProtocol(self)

    def proxy_protocol_factory(self):
        """For listeners with proxy_protocol: the connection starts with a PROXY header."""
        cdef ClientProtocol conn = ClientProtocol(self)
        conn.proxy_listener = True
        return conn

    cdef void proxy_failed(self, str peer, bint refused) noexcept:
        """Count a connection closed over its PROXY header; warn at most once a second."""
        if refused:
            self.proxy_refused += 1
        else:
            self.proxy_invalid += 1
        if _now - self.proxy_logged_at < 1.0 and self.proxy_logged_at != 0.0:
            return
        self.proxy_logged_at = _now
        try:
            _logging.getLogger("fastgw").warning(
                "closed a connection from %s: %s (PROXY protocol: %d refused, %d invalid)",
                peer,
                "PROXY header from a peer not in trusted_proxies" if refused
                else "missing, malformed or late PROXY header",
                self.proxy_refused, self.proxy_invalid)
        except BaseException as exc:
            _internal_error(W_CLIENT, exc, None)

    def _tick(self):
        global _now
        cdef ClientProtocol conn
        cdef UpstreamTarget target
        _now = self.loop.time()
        try:
            for conn in list(self.connections):
                if conn.deadline != 0.0 and conn.deadline <= _now:
                    try:
                        conn.on_timeout()
                    except BaseException as exc:
                        conn.fail_internal(W_TIMER, exc)
            for target in self.targets.values():
                target.sweep(_now)
            if self.access_log is not None:
                self.access_log.tick()
        except BaseException as exc:
            _internal_error(W_TIMER, exc, None)
        _tick_internal_errors()
        self.tick_handle = self.loop.call_later(self.tick_interval, self._tick)

    def begin_drain(self):
        """Stop keep-alive: idle connections close now, busy ones after their exchange."""
        cdef ClientProtocol conn
        self.draining = True
        for conn in list(self.connections):
            if (conn.state == CS_IDLE and conn.buf is None) or conn.state == CS_PROXY:
                conn.close_transport()

    @property
    def active_connections(self):
        return len(self.connections)

    @property
    def busy_connections(self):
        cdef ClientProtocol conn
        cdef int busy = 0
        for conn in self.connections:
            if conn.state != CS_IDLE:
                busy += 1
        return busy

    def connection_states(self):
        """Client connections by state: reading (a head arrives), active (an exchange
        runs), idle (keep-alive, waiting) and tunnel (WebSocket)."""
        cdef ClientProtocol conn
        states = {"reading": 0, "active": 0, "idle": 0, "tunnel": 0}
        for conn in self.connections:
            if conn.state == CS_EXCHANGE:
                states["active"] += 1
            elif conn.state == CS_TUNNEL:
                states["tunnel"] += 1
            elif conn.state == CS_HEAD or conn.state == CS_PROXY or conn.parser.in_message:
                states["reading"] += 1
            else:
                states["idle"] += 1
        return states

    def metrics_snapshot(self):
        """This worker's counters and gauges as plain data (see fastgw.observe.metrics)."""
        cdef UpstreamTarget target
        data = self.metrics.snapshot()
        data["connections"] = self.connection_states()
        targets = []
        if self.plan is not None:
            for name, pool in self.plan.pools.items():
                for target in (<UpstreamPool>pool).targets:
                    targets.append([name, target.label.decode("ascii"), target.failures == 0,
                                    target.idle_count,
                                    target.open_connections - target.idle_count])
        data["targets"] = targets
        if self.access_log is not None:
            data["access_log"] = {"lines": self.access_log.lines,
                                  "sampled_out": self.access_log.sampled_out}
        data["proxy_protocol"] = {"refused": self.proxy_refused, "invalid": self.proxy_invalid}
        data["internal_errors"] = internal_error_counts()
        return data

    def close(self):
        cdef ClientProtocol conn
        if self.access_log is not None:
            try:
                self.access_log.flush()
            except Exception as exc:
                _internal_error(W_CLIENT, exc, None)
        if self.tick_handle is not None:
            self.tick_handle.cancel()
            self.tick_handle = None
        for conn in list(self.connections):
            conn.abort_transport()
        for target in self.targets.values():
            target.close_idle()

    cdef bytes new_request_id(self):
        """32 hex digits: a random per-process prefix and a counter, unique and cheap."""
        cdef char text[32]
        cdef uint64_t value
        cdef int i
        self.request_counter += 1
        value = self.request_counter
        memcpy(text, PyBytes_AS_STRING(self.request_id_prefix), 16)
        for i in range(31, 15, -1):
            text[i] = b"0123456789abcdef"[value & 15]
            value >>= 4
        return PyBytes_FromStringAndSize(text, 32)


cdef class ClientProtocol:
    """asyncio protocol for one client connection."""

    cdef Engine engine
    cdef CorePlan plan
    cdef object transport
    cdef RequestParser parser
    cdef bytes buf                 # client bytes not yet consumed by the parser
    cdef Py_ssize_t buf_off
    cdef str peer_ip
    cdef bytes peer_ip_bytes
    cdef bint peer_trusted
    cdef bint proxy_listener       # a PROXY header may (trusted peer: must) come first
    cdef int state
    cdef double deadline
    cdef bint closed
    cdef bint client_eof
    cdef int read_blocks
    cdef bint writing_paused
    cdef list out                  # pending writes to the client, flushed in one writelines
    cdef list up_out               # pending writes to the upstream, flushed once per read
    cdef bint head_pending         # a response head (+ small body) is still in _head_buffer
    # the current exchange
    cdef RouteAction action
    cdef double read_timeout       # the route's upstream read and send timeouts
    cdef double send_timeout
    cdef UpstreamTarget target
    cdef UpstreamConnection up
    cdef bytes up_head
    cdef bytes request_id
    cdef int method_id
    cdef int request_framing
    cdef int client_minor
    cdef bint keep_alive
    cdef bint upgrade
    cdef bint request_complete
    cdef bint response_started
    cdef int out_framing
    cdef int retries
    cdef bint local_response       # answered locally; the rest of this request is skipped
    cdef RouteMatch match
    cdef CoreChain chain
    cdef PolicyRequest preq        # the request as Python hooks see it (None without hooks)
    cdef ResponseView rview
    cdef Py_ssize_t hook_index     # where a suspended chain resumes
    cdef object hook_task
    cdef uint64_t exchange_serial  # a finished hook of an earlier exchange must not act
    cdef bint continue_sent
    cdef double write_paused_at
    cdef bint response_hold        # an async response hook holds the response head
    cdef bint in_chain             # inside run_request_steps: an exception is the chain's
    cdef bytes client_ip_value
    cdef bytearray body_buffer     # the request body, read whole for a policy (needs_body)
    # what the metrics and the access log record of the current exchange
    cdef bint ex_open              # an exchange is counted once, when it ends
    cdef bint head_ok              # the parser holds this exchange's request head
    cdef int status                # the final status sent (0: none yet)
    cdef UpstreamPool pool_used
    cdef int64_t t_start           # monotonic ns: head parsed
    cdef int64_t t_up_start        # request head handed to the upstream connection
    cdef int64_t t_up_end          # upstream response complete
    cdef int64_t ex_in             # request head + body bytes
    cdef int64_t sent              # bytes handed to the transport, connection lifetime
    cdef int64_t sent_mark         # `sent` (plus pending) when the last exchange ended
    cdef int trace_len             # 55 when `trace` holds the traceparent sent upstream
    cdef bint trace_restarted      # a malformed traceparent was replaced: drop tracestate
    cdef char trace[56]
    cdef bytes extra_head          # fields every response of this exchange carries (limits)
    cdef int rl_result             # RL_ALLOWED / RL_LIMITED, 0 without a rate limit
    cdef object park_handle        # a rate limit `delay`: the timer that resumes the chain
    cdef ConcurrencyLimiter waiting_on   # queued for a place of this concurrency limit
    cdef bytes waiting_key
    cdef list held                 # [(ConcurrencyLimiter, key)] places this exchange holds
    cdef int local_code            # error code of the JSON error this exchange got (0: none)
    cdef int64_t up_sent           # bytes handed to the upstream in this exchange
    cdef Py_ssize_t up_path_len    # the path in up_head, after "METHOD "

    def __init__(self, Engine engine):
        self.engine = engine
        self.plan = engine.plan
        self.parser = RequestParser(self.plan.max_header_bytes, self.plan.max_headers,
                                    self.plan.max_target_bytes, self.plan.max_body_bytes)
        self.parser.underscores = self.plan.underscores
        self.read_timeout = self.plan.upstream_read
        self.send_timeout = self.plan.upstream_send
        self.out = []
        self.up_out = []

    # --- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        try:
            peer = transport.get_extra_info("peername")
            self.peer_ip = peer[0] if isinstance(peer, tuple) else ""
            self.peer_ip_bytes = self.peer_ip.encode("ascii")
            self.peer_trusted = self.plan.is_trusted(self.peer_ip)
            self.state = CS_PROXY if self.proxy_listener else CS_IDLE
            # A new connection must deliver its first head (after its PROXY header, if it
            # sends one) within client_header.
            self.deadline = _now + self.plan.client_header
            self.engine.connections.add(self)
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    def data_received(self, bytes data):
        self.engine.metrics.bytes_in += <uint64_t>PyBytes_GET_SIZE(data)
        if self.state >= CS_TUNNEL:    # PERF: one test covers both rare states
            if self.state == CS_PROXY:
                self.on_proxy_bytes(data)
                return
            self.deadline = _now + self.read_timeout
            if self.up is not None:
                self.up_sent += PyBytes_GET_SIZE(data)
                try:
                    self.up.transport.write(data)
                except BaseException as exc:
                    self.fail_internal(W_CLIENT, exc)
            return
        if self.buf is None:
            self.buf = data
            self.buf_off = 0
        else:
            # PERF: the try is on this rare branch only; the common one cannot raise.
            try:
                self.buf = self.buf[self.buf_off:] + data
            except BaseException as exc:
                self.fail_internal(W_CLIENT, exc)
                return
            self.buf_off = 0
        self.process()
        self.flush()

    def eof_received(self):
        if self.state == CS_EXCHANGE and self.waiting():
            # Gone while queued or parked: give up its place in line (logged as 499).
            self.cancel_hook()
            self.close_transport()
            return False
        if self.state == CS_EXCHANGE and self.request_complete:
            # Half-closed client: still deliver the response, then close.
            self.client_eof = True
            self.keep_alive = False
            return True
        if self.state == CS_TUNNEL and self.up is not None:
            try:
                self.up.transport.write_eof()
            except Exception as exc:
                _internal_error(W_CLIENT, exc, None)
            return True
        return False

    def connection_lost(self, exc):
        cdef UpstreamConnection up = self.up
        self.finish_record()
        self.closed = True
        self.deadline = 0.0
        try:
            self.engine.connections.discard(self)
        except BaseException as error:
            _internal_error(W_CLIENT, error, None)
        self.up = None
        self.buf = None
        self.cancel_hook()
        if self.preq is not None:
            self.preq.conn = None
            self.preq = None
        if up is not None:
            up.client = None
            up.abort()

    def pause_writing(self):
        self.writing_paused = True
        self.write_paused_at = _now
        if self.up is not None:
            self.up.pause_reading(True)

    def resume_writing(self):
        self.writing_paused = False
        if self.up is not None:
            self.up.pause_reading(False)

    # --- reading the client -------------------------------------------------------------

    cdef void process(self) noexcept:
        """Pull parser events until the input runs out or the exchange must wait."""
        cdef Py_ssize_t used = 0, n
        cdef int ev
        cdef RequestParser parser = self.parser
        while self.buf is not None and not self.closed:
            n = PyBytes_GET_SIZE(self.buf) - self.buf_off
            if n == 0 and not parser.head_done:
                # PERF: all consumed; dropping the buffer here keeps reading enabled
                # (pausing and resuming would cost two epoll_ctl calls per request).
                self.buf = None
                break
            if self.state == CS_EXCHANGE:
                if self.request_complete:
                    break               # pipelined bytes wait for this response
                if self.up is None and not self.local_response and self.body_buffer is None:
                    break               # upstream connection not attached yet
            elif self.state == CS_TUNNEL:
                break
            ev = parser.execute(PyBytes_AS_STRING(self.buf) + self.buf_off, n, &used)
            self.buf_off += used
            if ev == EV_NEED_MORE:
                self.buf = None
                if self.state == CS_IDLE and parser.in_message:
                    self.state = CS_HEAD
                    self.deadline = _now + self.plan.client_header
                break
            elif ev == EV_BODY:
                self.on_request_body(parser.body_ptr, parser.body_len)
            elif ev == EV_HEAD:
                self.on_request_head()
            elif ev == EV_DONE:
                self.on_request_done()
            else:
                self.on_parse_error(parser.error_code)
                return
        self.flush_upstream()
        if (self.buf is not None and not self.closed
                and not (self.waiting() and PyBytes_GET_SIZE(self.buf) - self.buf_off
                         <= WAITING_READ_BYTES)):
            self.block_reading(BLOCK_PENDING, True)
        else:
            # A request waiting for a concurrency place or its rate limit token keeps
            # reading (up to a bound), so a client that leaves is noticed and frees it.
            self.block_reading(BLOCK_PENDING, False)

    cdef void on_proxy_bytes(self, bytes data) noexcept:
        """The start of a connection on a proxy_protocol listener.

        A trusted peer (the balancer) must send a valid PROXY header: its source address
        then stands for the peer everywhere (X-Forwarded-For, trust decisions, rate limit
        keys, the access log). An untrusted peer is a direct client: a PROXY header from it
        is refused, anything else is HTTP.
        """
        cdef ProxyHeader header
        cdef Py_ssize_t n, used
        cdef int seen
        try:
            if self.buf is None:
                self.buf = data
            else:
                self.buf = self.buf + data
            self.buf_off = 0
            n = PyBytes_GET_SIZE(self.buf)
            if not self.peer_trusted:
                seen = proxy_signature(<const unsigned char*>PyBytes_AS_STRING(self.buf), n)
                if seen == PROXY_SIG_PARTIAL:
                    return
                if seen == PROXY_SIG_FOUND:
                    self.buf = None
                    self.engine.proxy_failed(self.peer_ip, True)
                    self.close_transport()
                    return
                used = 0
            else:
                used = proxy_parse(<const unsigned char*>PyBytes_AS_STRING(self.buf), n,
                                   &header)
                if used == PROXY_NEED_MORE:
                    return
                if used == PROXY_MALFORMED:
                    self.buf = None
                    self.engine.proxy_failed(self.peer_ip, False)
                    self.close_transport()
                    return
                if header.family:
                    self.peer_ip = proxy_address_text(header.family, header.source)
                    self.peer_ip_bytes = self.peer_ip.encode("ascii")
                    # X-Forwarded-* from the connection are believed only if the client
                    # the balancer names is itself a trusted proxy.
                    self.peer_trusted = self.plan.is_trusted(self.peer_ip)
            self.state = CS_IDLE
            if used == n:
                self.buf = None
                return
            self.buf_off = used
            self.process()
            self.flush()
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    cdef inline bint waiting(self) noexcept:
        return self.waiting_on is not None or self.park_handle is not None

    cdef void on_request_head(self) noexcept:
        cdef RequestParser p = self.parser
        cdef RequestFields fields
        cdef RouteAction action
        cdef int result, outcome
        try:
            self.plan = self.engine.plan
            self.state = CS_EXCHANGE
            self.method_id = p.method_id
            self.request_framing = p.framing
            self.client_minor = p.version_minor
            self.keep_alive = p.keep_alive and not self.engine.draining and not self.client_eof
            self.upgrade = p.upgrade_websocket
            self.request_complete = False
            self.response_started = False
            self.local_response = False
            self.out_framing = OUT_NONE
            self.retries = 0
            self.client_ip_value = None
            self.exchange_serial += 1
            self.continue_sent = False
            self.request_id = self.pick_request_id()
            self.engine.requests_total += 1
            self.ex_open = True
            self.head_ok = True
            self.status = 0
            self.pool_used = None
            self.t_start = _mono_ns()
            self.t_up_start = 0
            self.t_up_end = 0
            self.ex_in = p.head_len
            self.trace_len = 0
            self.extra_head = None
            self.rl_result = 0
            self.local_code = 0
            self.up_sent = 0
            if self.engine.trace_mode != TRACE_OFF:
                self.pick_trace()
            # PERF: route conditions read the parser's arrays in place.
            fields.head = p.head
            fields.n_headers = p.n_headers
            fields.name_off = p.hdr_name_off
            fields.name_len = p.hdr_name_len
            fields.value_off = p.hdr_value_off
            fields.value_len = p.hdr_value_len
            fields.query = p.head + p.query_off if p.has_query else NULL
            fields.query_len = p.query_len if p.has_query else 0
            result = self.plan.router.match_fields(
                p.hostname, p.hostname_len, p.path, p.path_len,
                self.plan.router.method_bit(p.method_id, p.head + p.method_off, p.method_len),
                &fields, &self.match)
            if result != MATCH_FOUND:
                if result == MATCH_METHOD_NOT_ALLOWED:
                    self.respond_local(E_METHOD_NOT_ALLOWED, self.match.allowed_methods)
                else:
                    self.respond_local(E_ROUTE_NOT_FOUND, 0)
                return
            action = <RouteAction>self.plan.actions[self.match.route_id]
            self.action = action
            self.read_timeout = action.read_timeout
            self.send_timeout = action.send_timeout
            if p.framing != FRAMING_NONE:
                # The route's body limit (RFC 9110 15.5.14): a declared length over it is
                # refused before anything is forwarded; the parser refuses a chunk that
                # would grow the body past it (end_exchange puts the ceiling back).
                if p.framing == FRAMING_LENGTH:
                    if p.content_length > action.max_body_bytes:
                        self.respond_local(E_BODY_TOO_LARGE, 0)
                        return
                else:
                    p.max_body_bytes = action.max_body_bytes
            self.chain = action.chain
            if self.chain is not None:
                if self.chain.disabled:
                    self.respond_local(E_ROUTE_UNAVAILABLE, 0)
                    return
                if self.chain.python_hooks:
                    self.preq = _new_policy_request(self)
                    if self.chain.body_limit and p.framing == FRAMING_NONE:
                        self.preq.body = b""
                if self.chain.body_limit and p.framing != FRAMING_NONE:
                    if p.framing == FRAMING_LENGTH and p.content_length > self.chain.body_limit:
                        self.respond_local(E_BODY_TOO_LARGE, 0)
                        return
                    # A policy reads the body: take it whole first, run the chain at its end.
                    self.body_buffer = bytearray()
                    if p.expect_continue:
                        self.out.append(_CONTINUE)
                        self.continue_sent = True
                    self.deadline = _now + self.plan.client_body_idle
                    return
                outcome = self.run_request_steps(0)
                self.in_chain = False
                if outcome != HOOK_STEP_DONE:
                    return
            self.proceed_upstream()
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    cdef void proceed_upstream(self) except *:
        """Every request step passed: pick the target, serialise the head, go."""
        cdef UpstreamPool pool = self.action.pool
        if self.preq is not None and self.preq.new_pool is not None:
            pool = self.preq.new_pool
        self.pool_used = pool
        self.target = pool.pick()
        self.up_head = self.build_upstream_head()
        if (self.parser.expect_continue and self.parser.framing != FRAMING_NONE
                and not self.continue_sent):
            # RFC 9110 10.1.1: we will read the body, so say so before the upstream does.
            self.out.append(_CONTINUE)
            self.continue_sent = True
        self.deadline = _now + self.plan.client_body_idle
        self.attach_upstream()

    # --- policies -----------------------------------------------------------------------

    cdef int run_request_steps(self, Py_ssize_t start) except -1:
        """Run the chain's request steps from `start`. A step that raises is a bug in the
        gateway (a policy's own failure is answered as policy_error inside)."""
        cdef tuple steps = self.chain.steps
        cdef Py_ssize_t i
        cdef int kind, outcome
        cdef bint finished = False
        # PERF: no try block on this path (every request of a route with a chain runs
        # it): an exception reaches the caller's, which reports it as the chain's.
        self.in_chain = True
        for i in range(start, len(steps)):
            kind, payload = steps[i]
            if kind == STEP_LEASE:
                if self.lease_check(<LeaseStep>payload):
                    continue
                # No leased token to spend: the policy's own (async) check decides.
                kind = STEP_PY_ASYNC
                payload = (<LeaseStep>payload).slow
            if kind == STEP_PY_SYNC:
                try:
                    result = payload(self.preq)
                except BaseException as exc:
                    self.policy_failed(exc)
                    return HOOK_STEP_ANSWERED
                if result is not None:
                    self.answer_policy(result)
                    return HOOK_STEP_ANSWERED
            elif kind == STEP_PY_ASYNC:
                # PERF: drive the coroutine ourselves; a hook that never really waits
                # finishes here without an asyncio Task.
                try:
                    coro = payload(self.preq)
                    blocked_on = _coroutine_step(coro, &finished)
                except BaseException as exc:
                    self.policy_failed(exc)
                    return HOOK_STEP_ANSWERED
                if finished:
                    if blocked_on is not None:
                        self.answer_policy(blocked_on)
                        return HOOK_STEP_ANSWERED
                    continue
                self.hook_index = i + 1
                self.hook_task = self.engine.loop.create_task(
                    _resume_hook(self, coro, blocked_on, False, self.exchange_serial))
                # A hook that hangs is cut off like an upstream that does not answer.
                self.deadline = _now + self.read_timeout
                return HOOK_STEP_SUSPENDED
            elif kind == STEP_RATE_LIMIT:
                outcome = self.rate_check(<RateLimiter>payload, i)
                if outcome != HOOK_STEP_DONE:
                    return outcome
            elif kind == STEP_CONCURRENCY:
                outcome = self.concurrency_check(<ConcurrencyLimiter>payload, i)
                if outcome != HOOK_STEP_DONE:
                    return outcome
            elif kind == STEP_RESPOND:
                self.answer_prebuilt(payload)
                return HOOK_STEP_ANSWERED
            else:
                self.answer_redirect((<dict>payload)[self.match.pattern_id])
                return HOOK_STEP_ANSWERED
        return HOOK_STEP_DONE

    cdef void on_hook_done(self, object exc, object result, bint response,
                           uint64_t serial) noexcept:
        """An async hook that had to wait is finished: carry on where the chain stopped."""
        cdef int outcome
        if self.closed or self.state != CS_EXCHANGE or serial != self.exchange_serial:
            return                      # the exchange it belonged to ended without it
        self.hook_task = None
        try:
            if response:
                self.response_hold = False
                if exc is not None:
                    self.log_policy_failure(exc)
                    self.on_upstream_error(E_POLICY_ERROR)
                elif self.run_response_hooks(self.hook_index) and self.up is not None:
                    self.write_response_head(self.up.parser)
                    self.up.release_hold()
                self.flush()
                return
            if exc is not None:
                self.policy_failed(exc)
            elif result is not None:
                self.answer_policy(result)
            else:
                outcome = self.run_request_steps(self.hook_index)
                self.in_chain = False
                if outcome == HOOK_STEP_DONE:
                    self.proceed_upstream()
            self.process()
            self.flush()
        except BaseException as exc:
            self.fail_internal(W_HOOK, exc)

    cdef void cancel_hook(self) noexcept:
        cdef object task = self.hook_task
        cdef object handle = self.park_handle
        self.hook_task = None
        self.park_handle = None
        self.response_hold = False
        self.leave_queue()
        if handle is None and task is None:
            return              # PERF: every exchange ends here; most had nothing to cancel
        try:
            if handle is not None:
                handle.cancel()
            if task is not None:
                task.cancel()
        except BaseException as exc:
            _internal_error(W_HOOK, exc, None)

    cdef void log_policy_failure(self, object exc):
        _policy_log.error("policy failed on route %r, request %s", self.action.name,
                          self.request_id.decode("ascii"), exc_info=exc)

    cdef void policy_failed(self, object exc):
        self.log_policy_failure(exc)
        self.respond_local(E_POLICY_ERROR, 0)

    cdef void answer_policy(self, object response) except *:
        """A hook returned a Response: send it instead of going upstream."""
        cdef HeadBuffer b = _head_buffer
        try:
            status = response.status
            body = response.body
            fields = tuple(response.headers)
            if type(body) is not bytes or type(status) is not int or not 200 <= status <= 599:
                raise TypeError(f"a hook must return fastgw.policy.Response or None, "
                                f"got {response!r}")
            for name, value in fields:
                # Checked again here: a Response's attributes can be changed after it
                # was made, and these bytes go to the wire as they are.
                if type(name) is not bytes or type(value) is not bytes:
                    raise TypeError("Response.headers must be (bytes, bytes) pairs")
                check_field(name.decode("latin-1"), value.decode("latin-1"))
        except BaseException as exc:
            self.policy_failed(exc)
            return
        self.start_local()
        b.put_bytes(status_line(status))
        # Response validated its fields when it was made (names, values, no framing).
        for name, value in fields:
            b.put_bytes(<bytes>name)
            b.put_bytes(b": ")
            b.put_bytes(<bytes>value)
            b.put_bytes(_CRLF)
        self.finish_local(<bytes>body, status)

    cdef void answer_prebuilt(self, tuple payload) except *:
        """direct_response: status line and fields were serialised at plan time."""
        self.start_local()
        _head_buffer.put_bytes(<bytes>payload[0])
        self.finish_local(<bytes>payload[1], payload[2])

    cdef void answer_redirect(self, tuple payload) except *:
        cdef HeadBuffer b = _head_buffer
        cdef RequestParser p = self.parser
        self.start_local()
        b.put_bytes(<bytes>payload[0])
        b.put_bytes(b"location: ")
        self.put_template(<tuple>payload[1], True)
        if payload[2] is not None and p.has_query:
            b.put_bytes(<bytes>payload[2])
            b.put(p.head + p.query_off, p.query_len)
        b.put_bytes(_CRLF)
        self.finish_local(b"", payload[3])

    cdef void start_local(self):
        self.local_response = True
        self.response_started = False
        if self.request_framing != FRAMING_NONE:
            self.keep_alive = False
        self.settle()
        _head_buffer.length = 0

    cdef void finish_local(self, bytes body, int status) except *:
        cdef HeadBuffer b = _head_buffer
        self.status = status
        b.put_bytes(b"content-length: ")
        b.put_int(PyBytes_GET_SIZE(body))
        b.put_bytes(b"\r\nx-request-id: ")
        b.put_bytes(self.request_id)
        b.put_bytes(_CRLF)
        if self.extra_head is not None:
            b.put_bytes(self.extra_head)
        if not self.keep_alive:
            b.put_bytes(b"connection: close\r\n")
        b.put_bytes(_CRLF)
        if self.method_id != M_HEAD:
            b.put_bytes(body)
        self.out.append(b.take())
        if self.request_framing != FRAMING_NONE:
            self.flush()
            self.close_transport()

    cdef bint run_response_hooks(self, Py_ssize_t start) except *:
        """Run response hooks from `start`; False when one suspended or failed."""
        cdef tuple hooks = self.chain.response_hooks
        cdef Py_ssize_t i
        cdef bint finished = False
        if self.preq is None:
            self.preq = _new_policy_request(self)
        for i in range(start, len(hooks)):
            hook, is_async = hooks[i]
            try:
                if not is_async:
                    hook(self.preq, self.rview)
                    continue
                coro = hook(self.preq, self.rview)
                blocked_on = _coroutine_step(coro, &finished)
                if finished:
                    continue
            except BaseException as exc:
                self.log_policy_failure(exc)
                self.on_upstream_error(E_POLICY_ERROR)
                return False
            self.hook_index = i + 1
            self.response_hold = True
            self.hook_task = self.engine.loop.create_task(
                _resume_hook(self, coro, blocked_on, True, self.exchange_serial))
            self.deadline = _now + self.read_timeout
            return False
        return True

    cdef bytes client_ip(self):
        """The client's address: the peer, or with trusted proxies the rightmost untrusted
        X-Forwarded-For hop."""
        cdef RequestParser p = self.parser
        cdef int i
        if self.client_ip_value is not None:
            return self.client_ip_value
        value = self.peer_ip_bytes
        if self.peer_trusted:
            hops = []
            for i in range(p.n_headers):
                if p.hdr_id[i] == H_X_FORWARDED_FOR:
                    hops.extend(h.strip() for h in PyBytes_FromStringAndSize(
                        p.head + p.hdr_value_off[i], p.hdr_value_len[i]).split(b","))
            for hop in reversed(hops):
                if not hop:
                    continue
                value = hop
                if not self.plan.is_trusted(hop.decode("latin-1")):
                    break
        self.client_ip_value = value
        return value

    cdef void put_template(self, tuple parts, bint for_url) except *:
        cdef HeadBuffer b = _head_buffer
        cdef RequestParser p = self.parser
        cdef int index
        cdef bytes value
        for part in parts:
            if type(part) is bytes:
                b.put_bytes(<bytes>part)
                continue
            index = <int>part
            if index >= 0:
                value = PyBytes_FromStringAndSize(p.path + self.match.param_off[index],
                                                  self.match.param_len[index])
            elif index == VAR_CLIENT_IP:
                value = self.client_ip()
            elif index == VAR_REQUEST_ID:
                value = self.request_id
            elif index == VAR_HOST:
                value = PyBytes_FromStringAndSize(p.head + p.host_off, p.host_len)
            elif index == VAR_METHOD:
                value = PyBytes_FromStringAndSize(p.head + p.method_off, p.method_len)
            elif index == VAR_PATH:
                value = PyBytes_FromStringAndSize(p.path, p.path_len)
            else:
                value = self.action.name_bytes
            if for_url:
                value = _percent_encode_unsafe(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
            b.put_bytes(value)

    cdef void put_fields(self, Http1Parser parser, HeaderOps ops, HeaderChanges changes,
                         bint request) except *:
        """Forwarded fields of `parser` with the chain's operations, then hook changes."""
        cdef HeadBuffer b = _head_buffer
        cdef const char* head = parser.head
        cdef const char* name
        cdef Py_ssize_t name_len
        cdef int i, hid
        cdef _FieldOp* op
        cdef bint has_changes = changes is not None and len(changes.changes) > 0
        for i in range(parser.n_headers):
            if parser.hdr_flags[i] & HF_DROP:
                continue
            hid = parser.hdr_id[i]
            if request:
                if (hid == H_X_FORWARDED_FOR or hid == H_X_REQUEST_ID
                        or ((hid == H_X_FORWARDED_PROTO or hid == H_X_FORWARDED_HOST)
                            and not self.peer_trusted)
                        or (hid == H_TRACEPARENT and self.trace_len)
                        or (hid == H_TRACESTATE and self.trace_restarted)):
                    continue
            elif hid == H_X_REQUEST_ID:
                continue
            name = head + parser.hdr_name_off[i]
            name_len = parser.hdr_name_len[i]
            if ops is not None:
                op = ops.find(name, name_len)
                if op != NULL:
                    if op.op == OP_RENAME:
                        b.put(op.new_name, op.new_name_len)
                        b.put_bytes(b": ")
                        b.put(head + parser.hdr_value_off[i], parser.hdr_value_len[i])
                        b.put_bytes(_CRLF)
                    continue
            if has_changes and changes.hides(name, name_len):
                continue
            b.put(name, name_len)
            b.put_bytes(b": ")
            b.put(head + parser.hdr_value_off[i], parser.hdr_value_len[i])
            b.put_bytes(_CRLF)
        if ops is not None:
            if not has_changes:
                # PERF: literal values were rendered at plan time: one copy for all of them.
                b.put_bytes(ops.static_lines)
                for field_name, template in ops.dynamic:
                    b.put_bytes(<bytes>field_name)
                    b.put_bytes(b": ")
                    self.put_template(<tuple>template, False)
                    b.put_bytes(_CRLF)
            else:
                for kind, field_name, template in ops.emits:
                    if kind == OP_SET and changes.hides(
                            PyBytes_AS_STRING(<bytes>field_name),
                            PyBytes_GET_SIZE(<bytes>field_name)):
                        continue
                    b.put_bytes(<bytes>field_name)
                    b.put_bytes(b": ")
                    self.put_template(<tuple>template, False)
                    b.put_bytes(_CRLF)
        if has_changes:
            for kind, _, field_name, value in changes.changes:
                if kind == OP_SET or kind == OP_ADD:
                    b.put_bytes(<bytes>field_name)
                    b.put_bytes(b": ")
                    b.put_bytes(<bytes>value)
                    b.put_bytes(_CRLF)

    cdef void on_request_body(self, const char* ptr, Py_ssize_t n) noexcept:
        cdef bytes chunk
        self.ex_in += n
        if self.body_buffer is not None and not self.local_response:
            self.deadline = _now + self.plan.client_body_idle
            if len(self.body_buffer) + n > self.chain.body_limit:
                self.body_buffer = None
                self.respond_local(E_BODY_TOO_LARGE, 0)
                return
            try:
                self.body_buffer.extend(PyBytes_FromStringAndSize(ptr, n))
            except BaseException as exc:
                self.fail_internal(W_CLIENT, exc)
            return
        if self.local_response or self.up is None:
            return
        try:
            self.deadline = _now + self.plan.client_body_idle
            chunk = PyBytes_FromStringAndSize(ptr, n)
            if self.request_framing == FRAMING_CHUNKED:
                self.up_out.append(chunk_header(n))
                self.up_out.append(chunk)
                self.up_out.append(_CRLF)
            else:
                self.up_out.append(chunk)
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    cdef void on_request_done(self) noexcept:
        cdef int outcome
        self.request_complete = True
        if self.local_response:
            self.body_buffer = None
            self.end_exchange()
            return
        if self.body_buffer is not None:
            try:
                if self.preq is not None:
                    self.preq.body = bytes(self.body_buffer)
                outcome = self.run_request_steps(0)
                self.in_chain = False
                if outcome == HOOK_STEP_DONE:
                    self.proceed_upstream()
            except BaseException as exc:
                self.fail_internal(W_CLIENT, exc)
            return
        try:
            if self.request_framing == FRAMING_CHUNKED and self.up is not None:
                self.up_out.append(_LAST_CHUNK)
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)
            return
        # The read clock starts once the upstream took the whole request.
        self.deadline = _now + (self.send_timeout if self.read_blocks & BLOCK_UPSTREAM_FULL
                                else self.read_timeout)

    cdef void on_parse_error(self, int code) noexcept:
        if self.state == CS_EXCHANGE and not self.local_response:
            if self.up is not None:
                self.up.client = None
                self.up.abort()
                self.up = None
            if self.response_started:
                self.abort_transport()
                return
        self.keep_alive = False
        if self.request_id is None or self.state != CS_EXCHANGE:
            self.request_id = self.engine.new_request_id()
        if not self.ex_open:
            # A request that never got a whole head is still a request the client sent.
            self.open_headless_record()
        # The method is known once its token ended, before the head was whole: a HEAD
        # refused by the parser gets no body either (RFC 9110 9.3.2).
        self.method_id = self.parser.method_id
        self.write_error(code, 0)
        self.flush()
        self.close_transport()

    # --- talking to the upstream --------------------------------------------------------

    cdef void attach_upstream(self):
        cdef UpstreamConnection conn = self.target.acquire()
        cdef double timeout
        if conn is None:
            # Targets are shared by routes: the connect timeout is the route's. The attempt
            # times itself out; the client is not read meanwhile, so its body clock must not
            # run (the deadline only backs the attempt up).
            timeout = self.action.connect_timeout
            self.deadline = _now + timeout + CONNECT_DEADLINE_SLACK
            self.engine.loop.create_task(_connect_upstream(self.target, self, self.engine.loop,
                                                           timeout))
        else:
            self.bind(conn)

    cdef void bind(self, UpstreamConnection conn):
        self.up = conn
        self.t_up_start = _mono_ns()
        conn.start(self, self.method_id)
        if self.writing_paused:
            conn.pause_reading(True)
        # PERF: the head goes out with the body bytes of the same read in one writev.
        self.up_out.clear()
        self.up_out.append(self.up_head)
        if self.body_buffer is not None:
            # The body a policy read whole, framed as the client framed it.
            if self.request_framing == FRAMING_CHUNKED:
                if self.body_buffer:
                    self.up_out.append(chunk_header(len(self.body_buffer)))
                    self.up_out.append(bytes(self.body_buffer))
                    self.up_out.append(_CRLF)
                self.up_out.append(_LAST_CHUNK)
            else:
                self.up_out.append(bytes(self.body_buffer))
            self.body_buffer = None
        if self.request_complete or self.request_framing == FRAMING_NONE:
            self.deadline = _now + self.read_timeout
        else:
            self.deadline = _now + self.plan.client_body_idle    # the body may come now

    cdef void on_connected(self, UpstreamConnection conn) noexcept:
        try:
            if self.closed or self.state != CS_EXCHANGE or self.up is not None:
                conn.target.release(conn)
                return
            self.bind(conn)
            self.process()
            self.flush()
        except BaseException as exc:
            self.fail_internal(W_UPSTREAM, exc)

    cdef void on_connect_failed(self, int code) noexcept:
        if self.closed or self.state != CS_EXCHANGE:
            return
        self.on_upstream_error(code)
        self.flush()

    cdef void on_upstream_lost(self, bint reused) noexcept:
        """The upstream closed before sending a byte of the response."""
        self.up = None
        if (reused and self.retries == 0 and self.request_framing == FRAMING_NONE
                and self.method_id in (M_GET, M_HEAD, M_OPTIONS, M_PUT, M_DELETE, M_TRACE)):
            # RFC 9110 9.2.2: only idempotent requests may be sent again.
            # A pooled connection the upstream had already closed: the request was not
            # processed, and with no body it can be sent again on a fresh connection.
            self.retries += 1
            try:
                self.attach_upstream()
                self.flush_upstream()
            except BaseException as exc:
                self.fail_internal(W_UPSTREAM, exc)
            return
        self.on_upstream_error(E_UPSTREAM_RESET)
        self.flush()

    cdef void on_upstream_error(self, int code) noexcept:
        cdef UpstreamConnection up = self.up
        self.up = None
        if up is not None:
            up.client = None
            up.abort()
        if self.closed:
            return
        if self.response_started:
            # Never present a truncated body as complete: the client sees the close.
            self.flush()
            self.abort_transport()
            return
        if not self.request_complete:
            self.keep_alive = False
        self.local_response = True
        self.write_error(code, 0)
        if self.request_complete:
            self.end_exchange()
        else:
            self.flush()
            self.close_transport()

    cdef void on_upstream_full(self, bint full) noexcept:
        """The upstream's write buffer crossed its high (full) or low water mark."""
        self.block_reading(BLOCK_UPSTREAM_FULL, full)
        if self.state != CS_EXCHANGE:
            return
        if full:
            # nginx's proxy_send_timeout: how long sending the request may make no progress.
            self.deadline = _now + self.send_timeout
        elif self.request_complete:
            self.deadline = _now + self.read_timeout
        else:
            # The upstream takes body bytes again: the client's idle clock starts over.
            self.deadline = _now + self.plan.client_body_idle

    cdef void touch_upstream(self) noexcept:
        if self.request_complete:
            self.deadline = _now + self.read_timeout

    cdef void on_response_head(self, ResponseParser rp) noexcept:
        cdef HeadBuffer b = _head_buffer
        cdef int status = rp.status
        cdef int i
        cdef bint close_after
        try:
            if 100 <= status < 200 and status != 101:
                # Interim responses: our own 100 already went out; others only to 1.1 clients.
                if status != 100 and self.client_minor == 1:
                    b.put_bytes(status_line(status))
                    self.put_response_fields(rp)
                    b.put_bytes(b"\r\n")
                    self.out.append(b.take())
                return
            if status == 101:
                if not self.upgrade:
                    self.on_upstream_error(E_UPSTREAM_BAD_STATUS_LINE)
                    return
                self.status = 101
                b.put_bytes(b"HTTP/1.1 101 Switching Protocols\r\n")
                self.put_response_fields(rp)
                b.put_bytes(b"connection: upgrade\r\nupgrade: websocket\r\n")
                b.put_bytes(b"x-request-id: ")
                b.put_bytes(self.request_id)
                b.put_bytes(b"\r\n\r\n")
                self.out.append(b.take())
                self.response_started = True
                self.state = CS_TUNNEL
                # A tunnel idle in both directions for the read timeout is closed (nginx:
                # proxy_read_timeout); WebSocket pings keep a live one open.
                self.deadline = _now + self.read_timeout
                self.block_reading(BLOCK_PENDING, False)
                if self.buf is not None:
                    self.up_sent += PyBytes_GET_SIZE(self.buf) - self.buf_off
                    self.up.transport.write(self.buf[self.buf_off:])
                    self.buf = None
                return
            if rp.framing == FRAMING_CLOSE and _has_field(rp, H_TRANSFER_ENCODING):
                # A transfer coding other than chunked (RFC 9112 6.3 rule 4): the body would
                # reach the client still coded, with nothing saying so. Refuse it.
                self.on_upstream_error(E_UPSTREAM_BAD_FRAMING)
                return
            if self.chain is not None and self.chain.response_hooks:
                self.rview = _new_response_view(rp)
                if not self.run_response_hooks(0):
                    return
            self.write_response_head(rp)
        except BaseException as exc:
            self.fail_internal(W_UPSTREAM, exc)

    cdef void write_response_head(self, ResponseParser rp) except *:
        cdef HeadBuffer b = _head_buffer
        cdef HeaderOps ops
        cdef HeaderChanges changes
        cdef int status = rp.status
        cdef int i
        cdef bint close_after
        self.status = status
        b.put_bytes(b"HTTP/1.1 ")
        b.put_int(status)
        b.put_bytes(b" ")
        b.put(rp.head + rp.reason_off, rp.reason_len)
        b.put_bytes(b"\r\n")
        ops = None
        changes = None
        if self.chain is not None:
            ops = _ops_for(self.chain.response_ops, self.match.pattern_id)
            if self.rview is not None:
                changes = self.rview.changes
                self.rview.parser = None    # the view must not read a parser that moves on
        if ops is None and changes is None:
            self.put_response_fields(rp)
        else:
            self.put_fields(rp, ops, changes, False)
        b.put_bytes(b"x-request-id: ")
        b.put_bytes(self.request_id)
        b.put_bytes(b"\r\n")
        if self.extra_head is not None:
            b.put_bytes(self.extra_head)
        if self.engine.server_timing:
            self.put_server_timing()
        close_after = not self.keep_alive
        if rp.framing == FRAMING_LENGTH:
            self.out_framing = OUT_LENGTH
            b.put_bytes(b"content-length: ")
            b.put_int(rp.content_length)
            b.put_bytes(b"\r\n")
        elif rp.framing == FRAMING_NONE:
            self.out_framing = OUT_NONE
            if self.method_id == M_HEAD or status == 304:
                # The length of the representation, not of this message (RFC 9110 8.6).
                for i in range(rp.n_headers):
                    if rp.hdr_id[i] == H_CONTENT_LENGTH:
                        b.put_bytes(b"content-length: ")
                        b.put(rp.head + rp.hdr_value_off[i], rp.hdr_value_len[i])
                        b.put_bytes(b"\r\n")
                        break
        elif self.client_minor == 1:
            self.out_framing = OUT_CHUNKED
            b.put_bytes(b"transfer-encoding: chunked\r\n")
        else:
            self.out_framing = OUT_CLOSE
            close_after = True
        if close_after:
            self.keep_alive = False
            b.put_bytes(b"connection: close\r\n")
        elif self.client_minor == 0:
            b.put_bytes(b"connection: keep-alive\r\n")
        b.put_bytes(b"\r\n")
        # PERF: the head stays in the buffer so a small body can join it: one bytes
        # object and one write per response.
        self.head_pending = True
        self.response_started = True

    cdef void put_response_fields(self, ResponseParser rp):
        cdef HeadBuffer b = _head_buffer
        cdef int i
        for i in range(rp.n_headers):
            if rp.hdr_flags[i] & HF_DROP or rp.hdr_id[i] == H_X_REQUEST_ID:
                continue
            b.put(rp.head + rp.hdr_name_off[i], rp.hdr_name_len[i])
            b.put_bytes(b": ")
            b.put(rp.head + rp.hdr_value_off[i], rp.hdr_value_len[i])
            b.put_bytes(b"\r\n")

    cdef void on_response_body(self, const char* ptr, Py_ssize_t n) noexcept:
        cdef bytes chunk
        cdef HeadBuffer b = _head_buffer
        if n == 0 or self.closed:
            return
        if self.head_pending and n <= COALESCE_BODY_BYTES:
            try:
                if self.out_framing == OUT_CHUNKED:
                    b.put_hex(n)
                    b.put_bytes(_CRLF)
                    b.put(ptr, n)
                    b.put_bytes(_CRLF)
                else:
                    b.put(ptr, n)
            except BaseException as exc:
                self.fail_internal(W_UPSTREAM, exc)
            return
        self.settle()
        chunk = PyBytes_FromStringAndSize(ptr, n)
        if self.out_framing == OUT_CHUNKED:
            self.out.append(chunk_header(n))
            self.out.append(chunk)
            self.out.append(_CRLF)
        else:
            self.out.append(chunk)

    cdef void on_response_done(self) noexcept:
        self.up = None
        self.t_up_end = _mono_ns()
        if self.closed:
            return
        if self.out_framing == OUT_CHUNKED:
            if self.head_pending:
                _head_buffer.put_bytes(_LAST_CHUNK)
            else:
                self.out.append(_LAST_CHUNK)
        self.settle()
        if self.out_framing == OUT_CLOSE or not self.request_complete:
            # The upstream answered before the request body ended, or the body is
            # close-delimited: this connection cannot carry another request.
            self.flush()
            self.close_transport()
            return
        self.end_exchange()

    cdef void on_tunnel_closed(self) noexcept:
        self.up = None
        self.flush()
        self.close_transport()

    cdef void end_exchange(self) noexcept:
        """The response is complete; wait for the next request or close."""
        self.finish_record()
        self.state = CS_IDLE
        self.action = None
        self.target = None
        self.up_head = None
        self.up = None
        self.chain = None
        self.cancel_hook()
        if self.rview is not None:
            self.rview.parser = None
            self.rview = None
        self.body_buffer = None
        # The route's body limit held for that request only.
        self.parser.max_body_bytes = self.plan.max_body_bytes
        # A block for upstream back-pressure belongs to the exchange that is over.
        self.block_reading(BLOCK_UPSTREAM_FULL, False)
        if self.preq is not None:
            self.preq.conn = None
            self.preq = None
        if not self.keep_alive or self.engine.draining:
            self.flush()
            self.close_transport()
            return
        self.deadline = _now + self.plan.keepalive_idle
        if self.buf is not None:
            self.process()

    # --- writing to the client ----------------------------------------------------------

    cdef int settle(self) except -1:
        """Move a pending response head out of the shared buffer before anyone reuses it."""
        if self.head_pending:
            self.head_pending = False
            self.out.append(_head_buffer.take())
        return 0

    cdef inline void count_sent(self, Py_ssize_t n) noexcept:
        self.sent += n
        self.engine.metrics.bytes_out += <uint64_t>n

    cdef Py_ssize_t pending_out(self) except -1:
        cdef Py_ssize_t n = _head_buffer.length if self.head_pending else 0
        for item in self.out:
            n += PyBytes_GET_SIZE(item)
        return n

    cdef void flush(self) noexcept:
        if not self.head_pending and not self.out:
            return              # PERF: most calls have nothing to write; no try for them
        try:
            self.settle()
            if self.closed:
                self.out.clear()
                return
            self.count_sent(self.pending_out())
            if len(self.out) == 1:
                self.transport.write(self.out[0])
            else:
                self.transport.writelines(self.out)
            self.out.clear()
        except BaseException as exc:
            self.out.clear()
            _internal_error(W_CLIENT, exc, self.request_id)
            self.abort_transport()

    cdef void flush_upstream(self) noexcept:
        cdef UpstreamConnection up = self.up
        if not self.up_out:
            return
        if up is None or not up.alive:
            self.up_out.clear()
            return
        try:
            if len(self.up_out) == 1:
                self.up_sent += PyBytes_GET_SIZE(self.up_out[0])
                up.transport.write(self.up_out[0])
            else:
                for item in self.up_out:
                    self.up_sent += PyBytes_GET_SIZE(item)
                up.transport.writelines(self.up_out)
            self.up_out.clear()
        except BaseException as exc:
            self.up_out.clear()
            self.fail_internal(W_UPSTREAM, exc)

    cdef void respond_local(self, int code, unsigned int allowed) noexcept:
        """Answer this request from the gateway; its body (if any) is not read."""
        self.local_response = True
        if self.request_framing != FRAMING_NONE:
            self.keep_alive = False
        self.write_error(code, allowed)
        if self.request_framing != FRAMING_NONE:
            self.flush()
            self.close_transport()

    cdef void write_error(self, int code, unsigned int allowed) noexcept:
        cdef HeadBuffer b = _head_buffer
        cdef bytes body
        try:
            self.settle()
            if code not in ERROR_TABLE:
                code = E_INTERNAL
            status, stable, message = ERROR_TABLE[code]
            self.status = status
            self.local_code = code
            request_id = self.request_id.decode("ascii")
            body = _orjson.dumps({"error": {"status": status, "code": stable,
                                            "message": message, "request_id": request_id}})
            b.put_bytes(status_line(status))
            b.put_bytes(b"content-type: application/json\r\n")
            if self.method_id != M_HEAD or not allowed & (1 << M_GET):
                # RFC 9110 8.6: to HEAD, the length a GET would get. A GET gets this same
                # error, except a 405 on a route that allows GET: no length then.
                b.put_bytes(b"content-length: ")
                b.put_int(len(body))
                b.put_bytes(_CRLF)
            b.put_bytes(b"x-request-id: ")
            b.put_bytes(self.request_id)
            b.put_bytes(b"\r\n")
            if self.extra_head is not None:
                b.put_bytes(self.extra_head)
            if allowed:
                names = self.plan.router.method_names(allowed)
                b.put_bytes(("allow: " + ", ".join(names) + "\r\n").encode("ascii"))
            if not self.keep_alive:
                b.put_bytes(b"connection: close\r\n")
            b.put_bytes(b"\r\n")
            if self.method_id != M_HEAD:
                b.put_bytes(body)           # RFC 9110 9.3.2: a response to HEAD has none
            self.out.append(b.take())
        except BaseException as exc:
            b.length = 0
            _internal_error(W_CLIENT, exc, self.request_id)
            self.abort_transport()

    cdef void fail_internal(self, int where, object exc) noexcept:
        """A bug in the gateway: report it, fail this one connection, never the process.

        A request that has no answer yet gets 500 internal_error; once any of its answer is
        out (or queued), the connection is aborted: never a second status line, never a
        truncated body that looks complete."""
        cdef bint answer
        if self.in_chain:
            # Raised by a chain step (run_request_steps has no try of its own).
            where = W_CHAIN
            self.in_chain = False
        _internal_error(where, exc, self.request_id if self.state == CS_EXCHANGE else None)
        if self.up is not None:
            self.up.client = None
            self.up.abort()
            self.up = None
        if self.closed:
            return
        if self.state == CS_EXCHANGE:
            answer = self.status == 0 and not self.response_started
        else:
            # A request begun but not yet whole is still a request the client sent.
            answer = self.state == CS_HEAD or (self.state == CS_IDLE and self.parser.in_message)
            if answer:
                self.request_id = self.engine.new_request_id()
                if not self.ex_open:
                    self.open_headless_record()
        if not answer:
            self.abort_transport()
            return
        self.keep_alive = False
        self.write_error(E_INTERNAL, 0)
        self.flush()
        self.close_transport()

    cdef void close_transport(self) noexcept:
        self.finish_record()
        if not self.closed:
            self.closed = True
            self.deadline = 0.0
            try:
                self.transport.close()
            except BaseException as exc:
                _internal_error(W_CLIENT, exc, None)

    cdef void abort_transport(self) noexcept:
        self.finish_record()
        if not self.closed:
            self.closed = True
            self.deadline = 0.0
            try:
                self.transport.abort()
            except BaseException as exc:
                _internal_error(W_CLIENT, exc, None)

    cdef void block_reading(self, int reason, bint on) noexcept:
        cdef int before = self.read_blocks
        if on:
            self.read_blocks |= reason
        else:
            self.read_blocks &= ~reason
        if self.closed or (before == 0) == (self.read_blocks == 0):
            return
        try:
            if self.read_blocks:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    # --- timeouts -----------------------------------------------------------------------

    cdef int on_timeout(self) except -1:
        if self.closed:
            return 0
        if self.state == CS_IDLE:
            if self.parser.in_message:
                self.on_parse_error(E_CLIENT_HEADER_TIMEOUT)
            else:
                self.close_transport()
        elif self.state == CS_HEAD:
            self.on_parse_error(E_CLIENT_HEADER_TIMEOUT)
        elif self.state == CS_PROXY:
            # No complete PROXY header within client_header (an untrusted peer that sent
            # nothing is only an idle connection).
            if self.peer_trusted or self.buf is not None:
                self.engine.proxy_failed(self.peer_ip, False)
            self.buf = None
            self.close_transport()
        elif self.state == CS_TUNNEL:
            if self.up is not None:
                self.up.client = None
                self.up.close()
                self.up = None
            self.close_transport()
        elif self.state == CS_EXCHANGE:
            if self.waiting_on is not None:
                # No concurrency place came free within queue_timeout.
                code = self.waiting_on.code
                self.leave_queue()
                self.keep_alive = False
                self.respond_local(code, 0)
                if not self.closed:
                    self.flush()
                    self.close_transport()
            elif self.hook_task is not None or self.park_handle is not None:
                # An async policy hook did not finish within upstream_read.
                self.cancel_hook()
                if self.up is not None:
                    self.on_upstream_error(E_POLICY_TIMEOUT)
                else:
                    self.keep_alive = False
                    self.respond_local(E_POLICY_TIMEOUT, 0)
                    if not self.closed:
                        self.flush()
                        self.close_transport()
                self.flush()
            elif self.writing_paused:
                # The client is slow to read; the upstream waits on it, up to client_send.
                if _now - self.write_paused_at >= self.plan.client_send:
                    if self.up is not None:
                        self.up.client = None
                        self.up.abort()
                        self.up = None
                    self.abort_transport()
                else:
                    self.deadline = self.write_paused_at + self.plan.client_send
            elif self.read_blocks & BLOCK_UPSTREAM_FULL:
                # The upstream stopped taking the request (head or body) for send_timeout.
                self.on_upstream_error(E_UPSTREAM_SEND_TIMEOUT)
                self.flush()
            elif not self.request_complete:
                self.on_parse_error(E_CLIENT_BODY_TIMEOUT)
            elif self.up is not None:
                self.on_upstream_error(E_UPSTREAM_TIMEOUT)
                self.flush()
            else:
                self.deadline = _now + self.read_timeout
        return 0

    # --- metrics, access log, tracing --------------------------------------------------

    cdef void open_headless_record(self) noexcept:
        self.ex_open = True
        self.head_ok = False
        self.status = 0
        self.action = None
        self.pool_used = None
        self.target = None
        self.method_id = M_OTHER
        self.t_start = _mono_ns()
        self.t_up_start = 0
        self.t_up_end = 0
        self.ex_in = 0
        self.trace_len = 0
        self.extra_head = None
        self.rl_result = 0
        self.local_code = 0
        self.up_sent = 0

    cdef void finish_record(self) noexcept:
        """Count the exchange that just ended (once) and write its access log line."""
        cdef Engine engine = self.engine
        cdef RouteAction action = self.action
        cdef UpstreamPool pool = self.pool_used
        cdef int64_t end, up_ns = -1, out_bytes
        cdef int status, route_slot = 0, up_slot = -1
        if not self.ex_open:
            return
        self.ex_open = False
        if self.held is not None:
            self.release_held()
        try:
            end = self.t_up_end if self.t_up_end else _mono_ns()
            if self.t_up_start:
                up_ns = (self.t_up_end if self.t_up_end else end) - self.t_up_start
            # A client that left before any response: nginx's 499.
            status = self.status if self.status else 499
            out_bytes = self.sent + self.pending_out()
            self.sent_mark, out_bytes = out_bytes, out_bytes - self.sent_mark
            if engine.metrics_on:
                if action is not None:
                    if action.metric_slot < 0:
                        action.metric_slot = engine.metrics.route_slot(action.name)
                    route_slot = action.metric_slot
                if pool is not None and up_ns >= 0:
                    if pool.metric_slot < 0:
                        pool.metric_slot = engine.metrics.upstream_slot(pool.name)
                    up_slot = pool.metric_slot
                engine.metrics.record(route_slot, self.method_id, status, end - self.t_start,
                                      up_slot, up_ns)
                if self.rl_result:
                    engine.metrics.count(route_slot, _METHOD_RATELIMIT, self.rl_result)
            if engine.access_log is not None and engine.access_log.wants(status):
                self.write_access_line(engine.access_log, status, end - self.t_start, up_ns,
                                       out_bytes)
        except BaseException as exc:
            # The answer itself is whole: it still goes out, then the connection closes.
            _internal_error(W_RECORD, exc, self.request_id)
            self.keep_alive = False

    cdef int write_access_line(self, AccessLog log, int status, int64_t duration_ns,
                               int64_t up_ns, int64_t out_bytes) except -1:
        cdef HeadBuffer b = log.buf
        cdef uint32_t f = log.fields
        cdef RequestParser p = self.parser
        cdef bint head = self.head_ok
        cdef Py_ssize_t start = b.length
        b.put("{", 1)
        if f & AF_TIME:
            b.put_bytes(b'"time":')
            log.put_time()
        if f & AF_REQUEST_ID:
            b.put_bytes(b',"request_id":"')
            b.put_bytes(self.request_id)
            b.put("\"", 1)
        if f & AF_CLIENT_IP:
            b.put_bytes(b',"client_ip":')
            ip = self.client_ip() if head else self.peer_ip_bytes
            _put_json_str(b, PyBytes_AS_STRING(ip), PyBytes_GET_SIZE(ip))
        if f & AF_METHOD:
            b.put_bytes(b',"method":')
            if head:
                _put_json_str(b, p.head + p.method_off, p.method_len)
            else:
                b.put_bytes(b"null")
        if f & AF_HOST:
            b.put_bytes(b',"host":')
            if head:
                _put_json_str(b, p.hostname, p.hostname_len)
            else:
                b.put_bytes(b"null")
        if f & AF_PATH:
            b.put_bytes(b',"path":')
            if head:
                _put_json_str(b, p.path, p.path_len)
            else:
                b.put_bytes(b"null")
        if f & AF_QUERY:
            b.put_bytes(b',"query":')
            if head and p.has_query:
                _put_json_str(b, p.head + p.query_off, p.query_len)
            else:
                b.put_bytes(b"null")
        # PERF: route, upstream and target are rendered as JSON once, when made.
        if f & AF_ROUTE:
            b.put_bytes(self.action.log_field if self.action is not None
                        else b',"route":null')
        if f & AF_UPSTREAM:
            b.put_bytes(self.pool_used.log_field if self.pool_used is not None
                        else b',"upstream":null')
        if f & AF_TARGET:
            # The target tried, also when connecting to it failed.
            b.put_bytes(self.target.log_field if self.target is not None
                        else b',"target":null')
        if f & AF_STATUS:
            b.put_bytes(b',"status":')
            b.put_int(status)
        if f & AF_BYTES_IN:
            b.put_bytes(b',"bytes_in":')
            b.put_int(self.ex_in)
        if f & AF_BYTES_OUT:
            b.put_bytes(b',"bytes_out":')
            b.put_int(out_bytes)
        if f & AF_DURATION:
            b.put_bytes(b',"duration_ms":')
            _put_ms(b, duration_ns)
        if f & AF_UPSTREAM_MS:
            b.put_bytes(b',"upstream_ms":')
            if up_ns >= 0:
                _put_ms(b, up_ns)
            else:
                b.put_bytes(b"null")
        if f & AF_TRACE_ID:
            b.put_bytes(b',"trace_id":')
            if self.trace_len:
                b.put("\"", 1)
                b.put(self.trace + 3, 32)
                b.put("\"", 1)
            else:
                b.put_bytes(b"null")
        if f & AF_RATE_LIMIT:
            b.put_bytes(b',"rate_limit":')
            if self.rl_result == RL_ALLOWED:
                b.put_bytes(b'"allowed"')
            elif self.rl_result == RL_LIMITED:
                b.put_bytes(b'"limited"')
            else:
                b.put_bytes(b"null")
        if f & AF_DEBUG_GROUP:
            self.put_debug_fields(b, f)
        if b.data[start + 1] == c',':
            # The first selected field carries no comma before it.
            memmove(b.data + start + 1, b.data + start + 2, b.length - start - 2)
            b.length -= 1
        log.end_line()
        return 0

    cdef int put_debug_fields(self, HeadBuffer b, uint32_t f) except -1:
        """The opt-in access log fields (ACCESS_LOG_FIELDS from "code" on)."""
        cdef RequestParser p = self.parser
        cdef bint head = self.head_ok
        cdef Py_ssize_t off
        cdef bytes text
        if f & AF_CODE:
            b.put_bytes(b',"code":')
            b.put_bytes(<bytes>_LOG_CODES[self.local_code] if self.local_code else b"null")
        if f & AF_USER_AGENT:
            b.put_bytes(b',"user_agent":')
            self.put_request_field(b, b"user-agent")
        if f & AF_REFERER:
            b.put_bytes(b',"referer":')
            self.put_request_field(b, b"referer")
        if f & AF_UPSTREAM_PATH:
            b.put_bytes(b',"upstream_path":')
            if self.up_head is not None and head:
                off = p.method_len + 1
                _put_json_text(b, PyBytes_AS_STRING(self.up_head) + off, self.up_path_len)
            else:
                b.put_bytes(b"null")
        if f & AF_CONSUMER:
            b.put_bytes(b',"consumer":')
            consumer = self.preq.consumer if self.preq is not None else None
            if consumer is None:
                b.put_bytes(b"null")
            else:
                # A policy's object: its str(), never a lost line for a lone surrogate.
                text = str(consumer).encode("utf-8", "backslashreplace")
                _put_json_text(b, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
        if f & AF_BYTES_SENT:
            b.put_bytes(b',"bytes_sent":')
            b.put_int(self.up_sent)
        return 0

    cdef int put_request_field(self, HeadBuffer b, bytes lower_name) except -1:
        """The first request field of that name as a JSON string, or null."""
        cdef RequestParser p = self.parser
        cdef Py_ssize_t n = PyBytes_GET_SIZE(lower_name)
        cdef int i
        if self.head_ok:
            for i in range(p.n_headers):
                if (p.hdr_name_len[i] == n and _h1_name_is(p.head + p.hdr_name_off[i],
                                                           PyBytes_AS_STRING(lower_name), n)):
                    _put_json_text(b, p.head + p.hdr_value_off[i], p.hdr_value_len[i])
                    return 0
        b.put_bytes(b"null")
        return 0

    cdef int build_key(self, tuple key_kinds, int fallback) except -1:
        """A limiter's key for this request, built in _key_buffer: the key sources joined
        by NUL, each missing one replaced by the fallback."""
        cdef HeadBuffer kb = _key_buffer
        cdef Py_ssize_t i
        kb.length = 0
        for i in range(len(key_kinds)):
            kind, arg = key_kinds[i]
            if i:
                kb.put("\0", 1)
            if not self.put_key(kb, kind, arg):
                self.put_key(kb, fallback, None)
        return 0

    cdef int rate_check(self, RateLimiter limiter, Py_ssize_t step) except -1:
        """A `rate_limit` step: decide, remember the fields every response of this exchange
        carries; answer 429 when a limit says no, or wait when its `delay` allows."""
        cdef RateDecision d
        self.build_key(limiter.key_kinds, limiter.fallback)
        limiter.decide(_key_buffer.data, _key_buffer.length, self.t_start, limiter.cost, &d)
        self.rl_result = RL_ALLOWED if d.allowed else RL_LIMITED
        if limiter.headers != RL_HEADERS_NONE or not d.allowed:
            fields = _rate_limit_fields(limiter.headers, &d)
            self.extra_head = fields if self.extra_head is None else self.extra_head + fields
        if not d.allowed:
            self.respond_local(E_RATE_LIMITED, 0)
            return HOOK_STEP_ANSWERED
        if d.wait_ns > 0:
            self.hook_index = step + 1
            self.park_handle = self.engine.loop.call_later(
                d.wait_ns / 1e9, self._wake, self.exchange_serial)
            self.deadline = _now + d.wait_ns / 1e9 + self.read_timeout
            return HOOK_STEP_SUSPENDED
        return HOOK_STEP_DONE

    cdef bint lease_check(self, LeaseStep step) except *:
        """Batched Redis limiting, the common case: spend a leased token without Python (a
        refill starts when half the lease is gone). False: the policy must decide."""
        cdef Lease lease
        cdef RateDecision d
        cdef double now = self.t_start / 1e9     # CLOCK_MONOTONIC, as time.monotonic()
        self.build_key(step.key_kinds, step.fallback)
        key = _key_buffer.take()
        found = step.leases.get(key)
        if found is None:
            return False
        lease = <Lease>found
        if lease.tokens < step.cost or now >= lease.expires:
            return False
        lease.tokens -= step.cost
        if lease.tokens * 2 < lease.want and lease.fetch is None:
            step.refill(key, lease)
        self.rl_result = RL_ALLOWED
        if step.headers != RL_HEADERS_NONE:
            d.allowed = True
            d.limit = lease.limit
            d.remaining = lease.remaining + lease.tokens
            d.reset_s = _ceil_s(<int64_t>((lease.reset_at - now) * 1e9))
            d.retry_after_s = 0
            d.wait_ns = 0
            fields = _rate_limit_fields(step.headers, &d)
            self.extra_head = fields if self.extra_head is None else self.extra_head + fields
        return True

    cdef int concurrency_check(self, ConcurrencyLimiter limiter, Py_ssize_t step) except -1:
        """A `concurrency_limit` step: take a place, queue for one, or answer 503/429."""
        self.build_key(limiter.key_kinds, limiter.fallback)
        key = _key_buffer.take()
        count = limiter.counts.get(key, 0)
        if count < limiter.max_inflight:
            limiter.counts[key] = count + 1
            if self.held is None:
                self.held = []
            self.held.append((limiter, key))
            return HOOK_STEP_DONE
        queue = limiter.queues.get(key)
        if limiter.queue_max and (queue is None or len(queue) < limiter.queue_max):
            if queue is None:
                queue = limiter.queues[key] = _deque()
            queue.append((self, self.exchange_serial))
            self.waiting_on = limiter
            self.waiting_key = key
            self.hook_index = step + 1
            self.deadline = _now + limiter.queue_timeout
            return HOOK_STEP_SUSPENDED
        self.respond_local(limiter.code, 0)
        return HOOK_STEP_ANSWERED

    cdef void leave_queue(self) noexcept:
        cdef ConcurrencyLimiter limiter = self.waiting_on
        if limiter is None:
            return
        self.waiting_on = None
        try:
            queue = limiter.queues.get(self.waiting_key)
            if queue is not None:
                try:
                    queue.remove((self, self.exchange_serial))
                except ValueError:
                    pass
                if not queue:
                    del limiter.queues[self.waiting_key]
        except BaseException as exc:
            _internal_error(W_CHAIN, exc, self.request_id)
        self.waiting_key = None

    cdef void release_held(self) noexcept:
        """The exchange is over: give each concurrency place to the next waiter, if any."""
        cdef ClientProtocol waiter
        cdef ConcurrencyLimiter limiter
        held, self.held = self.held, None
        try:
            for limiter, key in held:
                queue = limiter.queues.get(key)
                while queue:
                    waiter, serial = queue.popleft()
                    if (waiter.closed or waiter.waiting_on is not limiter
                            or waiter.exchange_serial != serial):
                        continue
                    waiter.waiting_on = None
                    waiter.waiting_key = None
                    if waiter.held is None:
                        waiter.held = []
                    waiter.held.append((limiter, key))   # the place passes on: same count
                    # Until it wakes, its queue deadline must not fire as another timeout.
                    waiter.deadline = _now + waiter.read_timeout
                    self.engine.loop.call_soon(waiter._wake, serial)
                    break
                else:
                    count = limiter.counts[key] - 1
                    if count:
                        limiter.counts[key] = count
                    else:
                        del limiter.counts[key]
                if queue is not None and not queue:
                    limiter.queues.pop(key, None)
        except BaseException as exc:
            _internal_error(W_CHAIN, exc, self.request_id)

    def _wake(self, uint64_t serial):
        """A rate limit delay ran out, or a concurrency place came free: carry on."""
        self.park_handle = None
        self.on_hook_done(None, None, False, serial)

    cdef bint put_key(self, HeadBuffer kb, int kind, object arg) except *:
        """Append one key source's bytes; False when the request does not have it."""
        cdef RequestParser p = self.parser
        cdef Py_ssize_t i, n
        cdef int index
        if kind == RL_KEY_CLIENT_IP:
            kb.put_bytes(self.client_ip())
        elif kind == RL_KEY_ROUTE:
            kb.put_bytes(self.action.name_bytes)
        elif kind == RL_KEY_HEADER:
            n = PyBytes_GET_SIZE(<bytes>arg)
            for i in range(p.n_headers):
                if (p.hdr_name_len[i] == n
                        and _h1_name_is(p.head + p.hdr_name_off[i], PyBytes_AS_STRING(arg), n)):
                    kb.put(p.head + p.hdr_value_off[i], p.hdr_value_len[i])
                    return True
            return False
        elif kind == RL_KEY_PARAM:
            index = (<dict>arg).get(self.match.pattern_id, -1)
            if index < 0:
                return False
            kb.put(p.path + self.match.param_off[index], self.match.param_len[index])
        else:
            # Who the client is, as an authentication policy earlier in the chain said.
            if self.preq is None:
                return False
            if kind == RL_KEY_CONSUMER:
                value = self.preq.consumer
            else:
                claims = self.preq.claims
                value = claims.get(arg) if isinstance(claims, dict) else None
            if value is None:
                return False
            kb.put_bytes(str(value).encode("utf-8"))
        return True

    cdef void pick_trace(self) noexcept:
        """W3C Trace Context: continue a valid traceparent with a span id of our own, or
        start a trace (TRACE_START); tracestate goes with a continued trace only."""
        cdef RequestParser p = self.parser
        cdef const char* v
        cdef int i
        cdef bint found = False
        self.trace_restarted = False
        for i in range(p.n_headers):
            if p.hdr_id[i] == H_TRACEPARENT:
                found = True
                v = p.head + p.hdr_value_off[i]
                if _valid_traceparent(v, p.hdr_value_len[i]):
                    memcpy(self.trace, b"00-", 3)
                    memcpy(self.trace + 3, v + 3, 32)
                    self.trace[35] = b"-"
                    _put_hex64(self.trace + 36, _rand64() | 1)
                    self.trace[52] = b"-"
                    self.trace[53] = v[53]
                    self.trace[54] = v[54]
                    self.trace_len = 55
                    return
                break
        if self.engine.trace_mode != TRACE_START:
            return
        self.trace_restarted = found
        memcpy(self.trace, b"00-", 3)
        _put_hex64(self.trace + 3, _rand64() | 1)
        _put_hex64(self.trace + 19, _rand64())
        self.trace[35] = b"-"
        _put_hex64(self.trace + 36, _rand64() | 1)
        memcpy(self.trace + 52, b"-01", 3)
        self.trace_len = 55

    cdef void put_server_timing(self) except *:
        """Server-Timing (W3C): time in the gateway before the upstream got the request,
        and the upstream's time to the response head, in milliseconds."""
        cdef HeadBuffer b = _head_buffer
        cdef int64_t now = _mono_ns()
        cdef int64_t sent_at = self.t_up_start if self.t_up_start else now
        b.put_bytes(b"server-timing: gateway;dur=")
        _put_ms(b, sent_at - self.t_start)
        if self.t_up_start:
            b.put_bytes(b", upstream;dur=")
            _put_ms(b, now - self.t_up_start)
        b.put_bytes(_CRLF)

    # --- building the upstream request head -------------------------------------------

    cdef bytes pick_request_id(self):
        cdef RequestParser p = self.parser
        cdef int i
        for i in range(p.n_headers):
            if p.hdr_id[i] == H_X_REQUEST_ID:
                if _valid_request_id(p.head + p.hdr_value_off[i], p.hdr_value_len[i]):
                    return PyBytes_FromStringAndSize(p.head + p.hdr_value_off[i],
                                                     p.hdr_value_len[i])
                break
        return self.engine.new_request_id()

    cdef bytes build_upstream_head(self):
        cdef HeadBuffer b = _head_buffer
        cdef HeaderOps ops
        cdef HeaderChanges changes
        cdef RequestParser p = self.parser
        cdef RouteAction action = self.action
        cdef RouteMatch* match = &self.match
        cdef const char* head = p.head
        cdef Py_ssize_t prefix_len, i
        cdef int hid
        cdef bint proto_seen = False, fwd_host_seen = False
        cdef tuple parts
        b.length = 0
        b.put(head + p.method_off, p.method_len)
        b.put_bytes(b" ")
        # Path: the normalised one, rewritten as the route says (DESIGN.md principle 4).
        parts = None
        if action.rewrites is not None:
            parts = action.rewrites.get(match.pattern_id)
        if self.preq is not None and self.preq.new_path is not None:
            b.put_bytes(self.preq.new_path)
        elif parts is not None:
            for part in parts:
                if type(part) is int:
                    i = <int>part
                    b.put(p.path + match.param_off[i], match.param_len[i])
                else:
                    b.put_bytes(<bytes>part)
        elif action.strip_prefix is not None:
            prefix_len = PyBytes_GET_SIZE(action.strip_prefix)
            if (p.path_len >= prefix_len
                    and memcmp(p.path, PyBytes_AS_STRING(action.strip_prefix), prefix_len) == 0
                    and (p.path_len == prefix_len or p.path[prefix_len] == c'/'
                         or prefix_len == 1)):
                if p.path_len == prefix_len:
                    b.put_bytes(b"/")
                elif prefix_len == 1:
                    b.put(p.path, p.path_len)
                else:
                    b.put(p.path + prefix_len, p.path_len - prefix_len)
            else:
                b.put(p.path, p.path_len)
        else:
            b.put(p.path, p.path_len)
        self.up_path_len = b.length - p.method_len - 1
        if p.has_query:
            b.put_bytes(b"?")
            b.put(head + p.query_off, p.query_len)
        b.put_bytes(b" HTTP/1.1\r\nhost: ")
        if action.preserve_host and p.host_len > 0:
            b.put(head + p.host_off, p.host_len)
        else:
            b.put_bytes(self.target.host_header)
        b.put_bytes(b"\r\n")
        ops = None
        changes = None
        if self.chain is not None:
            ops = _ops_for(self.chain.request_ops, match.pattern_id)
            if self.preq is not None:
                changes = self.preq.upstream_changes
        if ops is None and changes is None:
            for i in range(p.n_headers):
                if p.hdr_flags[i] & HF_DROP:
                    continue
                hid = p.hdr_id[i]
                if hid == H_X_FORWARDED_FOR or hid == H_X_REQUEST_ID:
                    continue
                if hid == H_TRACEPARENT and self.trace_len:
                    continue
                if hid == H_TRACESTATE and self.trace_restarted:
                    continue
                if hid == H_X_FORWARDED_PROTO or hid == H_X_FORWARDED_HOST:
                    # A client's claims about the original request count only from a
                    # trusted proxy.
                    if not self.peer_trusted:
                        continue
                b.put(head + p.hdr_name_off[i], p.hdr_name_len[i])
                b.put_bytes(b": ")
                b.put(head + p.hdr_value_off[i], p.hdr_value_len[i])
                b.put_bytes(b"\r\n")
        else:
            self.put_fields(p, ops, changes, True)
        if self.peer_trusted:
            for i in range(p.n_headers):
                if p.hdr_id[i] == H_X_FORWARDED_PROTO:
                    proto_seen = True
                elif p.hdr_id[i] == H_X_FORWARDED_HOST:
                    fwd_host_seen = True
        b.put_bytes(b"x-forwarded-for: ")
        if self.peer_trusted:
            for i in range(p.n_headers):
                if p.hdr_id[i] == H_X_FORWARDED_FOR and p.hdr_value_len[i] > 0:
                    b.put(head + p.hdr_value_off[i], p.hdr_value_len[i])
                    b.put_bytes(b", ")
        b.put_bytes(self.peer_ip_bytes)
        b.put_bytes(b"\r\n")
        if not proto_seen:
            b.put_bytes(b"x-forwarded-proto: http\r\n")
        if not fwd_host_seen and p.host_len > 0:
            b.put_bytes(b"x-forwarded-host: ")
            b.put(head + p.host_off, p.host_len)
            b.put_bytes(b"\r\n")
        b.put_bytes(b"x-request-id: ")
        b.put_bytes(self.request_id)
        b.put_bytes(b"\r\n")
        if self.trace_len:
            b.put_bytes(b"traceparent: ")
            b.put(self.trace, self.trace_len)
            b.put_bytes(b"\r\n")
        if p.framing == FRAMING_LENGTH:
            b.put_bytes(b"content-length: ")
            b.put_int(p.content_length)
            b.put_bytes(b"\r\n")
        elif p.framing == FRAMING_CHUNKED:
            b.put_bytes(b"transfer-encoding: chunked\r\n")
        if self.upgrade:
            b.put_bytes(b"connection: upgrade\r\nupgrade: websocket\r\n")
        b.put_bytes(b"\r\n")
        return b.take()
