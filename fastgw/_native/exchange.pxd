# exchange.pxd: the state of one request and its answer. ClientProtocol (protocol) makes one when a
# connection's first request begins; every stage reads and writes it; begin/begin_headless/clear
# reset it. (code: exchange.pxi)

@cython.final
cdef class Exchange:
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
    cdef bint response_hold        # an async response hook holds the response head
    cdef bint in_chain             # inside run_request_steps: an exception is the chain's
    cdef bytes client_ip_value
    cdef bytearray body_buffer     # the request body, read whole for a policy (needs_body)
    cdef bint ex_open              # an exchange is counted once, when it ends
    cdef bint head_ok              # the parser holds this exchange's request head
    cdef int status                # the final status sent (0: none yet)
    cdef UpstreamPool pool_used
    cdef int64_t t_start           # monotonic ns: head parsed
    cdef int64_t t_up_start        # request head handed to the upstream connection
    cdef int64_t t_up_end          # upstream response complete
    cdef int64_t ex_in             # request head + body bytes
    cdef int trace_len             # 55 when `trace` holds the traceparent sent upstream
    cdef bint trace_restarted      # a malformed traceparent was replaced: drop tracestate
    cdef char trace[56]
    cdef bytes extra_head          # fields every response of this exchange carries (limits)
    cdef bytes local_head          # fields only the gateway's own answers carry (cors)
    cdef int rl_result             # RL_ALLOWED / RL_LIMITED, 0 without a rate limit
    cdef object park_handle        # a rate limit `delay`: the timer that resumes the chain
    cdef ConcurrencyLimiter waiting_on   # queued for a place of this concurrency limit
    cdef bytes waiting_key
    cdef list held                 # [(ConcurrencyLimiter, key)] places this exchange holds
    cdef int local_code            # error code of the JSON error this exchange got (0: none)
    cdef int64_t up_sent           # bytes handed to the upstream in this exchange
    cdef Py_ssize_t up_path_len    # the path in up_head, after "METHOD "
    cdef list up_out               # pending writes to the upstream, flushed once per read
    # once they heard end(): relay_done, forward_error or connection_lost sees to it.
    cdef BodyFilter body_filter
    cdef bint target_held          # counted in target.in_flight until pick_release (record)
    # Identity (auth steps in steps.pxi; Python auth policies through PolicyRequest)
    cdef object consumer           # who the client is (a Consumer, or what a hook set), or None
    cdef object claims             # what it proved (a token's claims, a dict), or None
    cdef frozenset auth_groups     # the consumer's groups (acl), or None
    cdef bytes identity_head       # "x-consumer-id: ...\r\n" fields for the upstream, or None
    cdef bytes up_query            # the query sent upstream instead of the client's, or None
    cdef int auth_code             # the most telling authentication failure so far (E_*)
    cdef list auth_challenges      # WWW-Authenticate challenges of the policies that failed
    cdef object auth_anonymous     # the anonymous consumer of the first failed policy with one
    cdef str auth_result           # access log: who authenticated, "anonymous", or the failure
    cdef bint auth_touched         # one of the identity fields was set: clear() resets them

    # <- request: a new request whose head is whole: everything of the one before is forgotten
    cdef inline void begin(self, RequestParser p, bint may_keep_alive) noexcept
    # <- protocol, request: a request refused before its head was whole: only what the record needs
    cdef inline void begin_headless(self) noexcept
    # <- this fragment
    cdef inline void begin_record(self, int64_t bytes_in) noexcept
    # <- protocol (end_exchange): the exchange is over: let go of what it referenced (the record was
    #    written)
    cdef inline void clear(self) noexcept


# <- protocol: the one place an Exchange is made
cdef Exchange _new_exchange(CorePlan plan)
