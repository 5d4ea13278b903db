# exchange.pxi: the state of one request and its response, from the request head to the
# access log line.
#
# A connection makes its Exchange when its first request begins (an idle connection that
# never sent a byte has none) and resets it for each request that follows: the reset is
# `begin` (a request with a whole head) or `begin_headless` (a request refused before its
# head was whole), and `clear` drops what the finished exchange referenced. The stages
# (request, route, chain, pick, forward, relay, record) are functions that take the
# connection and the exchange; nothing else keeps per-request state.
#
# Several exchanges in flight on one connection (pipelined requests answered together)
# will each be an Exchange of their own: nothing here refers to "the" connection's state.


@cython.auto_pickle(False)
@cython.final
cdef class Exchange:
    """One request on a client connection, and what is known of its answer."""

    # The first of this response's body filters (body.pxi), None without any. None again

    cdef inline void begin(self, RequestParser p, bint may_keep_alive) noexcept:
        """A new request whose head is whole: everything of the one before is forgotten."""
        self.method_id = p.method_id
        self.request_framing = p.framing
        self.client_minor = p.version_minor
        self.keep_alive = p.keep_alive and may_keep_alive
        self.upgrade = p.upgrade_websocket
        self.request_complete = False
        self.response_started = False
        self.local_response = False
        self.out_framing = OUT_NONE
        self.retries = 0
        self.client_ip_value = None
        self.exchange_serial += 1
        self.continue_sent = False
        self.head_ok = True
        self.begin_record(p.head_len)

    cdef inline void begin_headless(self) noexcept:
        """A request refused before its head was whole: only what the record needs."""
        self.head_ok = False
        self.action = None
        self.target = None
        self.method_id = M_OTHER
        self.begin_record(0)

    cdef inline void begin_record(self, int64_t bytes_in) noexcept:
        self.ex_open = True
        self.status = 0
        self.pool_used = None
        self.t_start = _mono_ns()
        self.t_up_start = 0
        self.t_up_end = 0
        self.ex_in = bytes_in
        self.trace_len = 0
        self.extra_head = None
        self.local_head = None
        self.rl_result = 0
        self.local_code = 0
        self.up_sent = 0

    cdef inline void clear(self) noexcept:
        """The exchange is over: let go of what it referenced (the record was written)."""
        self.action = None
        self.target = None
        self.up_head = None
        self.up = None
        self.chain = None
        if self.rview is not None:
            self.rview.parser = None
            self.rview = None
        self.body_buffer = None
        if self.preq is not None:
            self.preq.conn = None
            self.preq = None
        if self.auth_touched:
            # PERF: only routes with an authentication policy pay for this.
            self.auth_touched = False
            self.consumer = None
            self.claims = None
            self.auth_groups = None
            self.identity_head = None
            self.up_query = None
            self.auth_code = 0
            self.auth_challenges = None
            self.auth_anonymous = None
            self.auth_result = None


cdef Exchange _new_exchange(CorePlan plan):
    """The one place an Exchange is made."""
    cdef Exchange ex = Exchange.__new__(Exchange)
    ex.read_timeout = plan.upstream_read
    ex.send_timeout = plan.upstream_send
    ex.up_out = []
    return ex
