# engine.pxi: the engine that owns the live plan, the client connections, the coarse
# clock and the timeouts, and the shared upstream targets.

import os as _os

cdef double _now = 0.0          # monotonic seconds, refreshed once per engine tick


cdef class Engine:
    """Owns the live Plan, the client connections, the clock tick and upstream targets."""

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
            elif (conn.state == CS_HEAD or conn.state == CS_PROXY
                  or (conn.parser is not None and conn.parser.in_message)):
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
