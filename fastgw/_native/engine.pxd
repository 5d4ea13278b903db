# engine.pxd: the engine: the live plan, the client connections, the clock tick that runs the
# timeouts, the shared upstream targets. (code: engine.pxi)

cdef class Engine:
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

    # <- protocol: count a connection closed over its PROXY header; warn at most once a second
    cdef void proxy_failed(self, str peer, bint refused) noexcept
    # <- protocol, request: 32 hex digits: a random per-process prefix and a counter, unique and
    #    cheap
    cdef bytes new_request_id(self)
