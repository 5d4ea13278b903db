# observe.pxd: what the core counts and logs about each exchange, and the clock it reads
# (code: observe.pxi).
#
# A request meets the clock when its head arrives and, when tracing is on, the id generator;
# when it ends, ClientProtocol.finish_record (protocol) counts it in CoreMetrics and writes
# its access log line into AccessLog's buffer with the JSON writers below. Python reads both
# through CoreMetrics.snapshot() and AccessLog's sink.

# One bit per ACCESS_LOG_FIELDS entry (observe.pxi), in its order: AccessLog.fields is a mask
# of them. _METHOD_RATELIMIT and RL_*: the metric rows of rate limit decisions.
# <- ClientProtocol.write_access_line (protocol) writes the fields whose bit is set;
#    ClientProtocol and PolicyRequest (policy) set a request's RL_* outcome
cdef enum:
    AF_TIME = 1 << 0
    AF_REQUEST_ID = 1 << 1
    AF_CLIENT_IP = 1 << 2
    AF_METHOD = 1 << 3
    AF_HOST = 1 << 4
    AF_PATH = 1 << 5
    AF_QUERY = 1 << 6
    AF_ROUTE = 1 << 7
    AF_UPSTREAM = 1 << 8
    AF_TARGET = 1 << 9
    AF_STATUS = 1 << 10
    AF_BYTES_IN = 1 << 11
    AF_BYTES_OUT = 1 << 12
    AF_DURATION = 1 << 13
    AF_UPSTREAM_MS = 1 << 14
    AF_TRACE_ID = 1 << 15
    AF_RATE_LIMIT = 1 << 16
    AF_CODE = 1 << 17
    AF_USER_AGENT = 1 << 18
    AF_REFERER = 1 << 19
    AF_UPSTREAM_PATH = 1 << 20
    AF_CONSUMER = 1 << 21
    AF_BYTES_SENT = 1 << 22
    AF_AUTH = 1 << 23
    AF_DEBUG_GROUP = (AF_CODE | AF_USER_AGENT | AF_REFERER | AF_UPSTREAM_PATH | AF_CONSUMER
                      | AF_BYTES_SENT | AF_AUTH)
    _METHOD_RATELIMIT = 63      # requests-table rows that count rate limit decisions
    RL_ALLOWED = 1              # a request's rate limit outcome (0: no limit on its route)
    RL_LIMITED = 2

# <- Engine.trace_mode (protocol) holds one; ClientProtocol.pick_trace acts on it
cdef enum:
    TRACE_OFF = 0               # traceparent forwarded as received
    TRACE_PROPAGATE = 1         # a valid traceparent continues with the gateway's span id
    TRACE_START = 2             # ... and a request without one starts a trace


# <- ClientProtocol (protocol: request start and end, upstream times), errors, RateLimiter
#    (ratelimit), bench: CLOCK_MONOTONIC nanoseconds (inline in observe.pxi)
cdef int64_t _mono_ns() noexcept
# <- ClientProtocol.pick_trace (protocol), AccessLog.wants: 64 random bits, not secret
#    (inline in observe.pxi)
cdef uint64_t _rand64() noexcept
# <- ClientProtocol.pick_trace (protocol): 16 lowercase hex digits (inline in observe.pxi)
cdef void _put_hex64(char* out, uint64_t value) noexcept


cdef class CoreMetrics:
    # Slots by name: routes and upstreams keep theirs for the worker's life (across reloads).
    cdef dict route_slots        # route name -> slot (slot 0: requests no route took)
    cdef list route_names
    cdef dict upstream_slots
    cdef list upstream_names
    # requests_total: open addressing on key (slot << 16 | method << 10 | status) + 1.
    cdef uint64_t* req_keys
    cdef uint64_t* req_counts
    cdef Py_ssize_t req_cap
    cdef Py_ssize_t req_used
    cdef uint64_t* route_hist       # route slot * _N_BUCKETS + bucket
    cdef uint64_t* route_sum_ns
    cdef Py_ssize_t route_cap
    cdef uint64_t* up_hist
    cdef uint64_t* up_sum_ns
    cdef Py_ssize_t up_cap
    cdef public uint64_t bytes_in
    cdef public uint64_t bytes_out

    # <- ClientProtocol.finish_record (protocol), observe(): one exchange's counts and times
    cdef int record(self, int route_slot, int method, int status, int64_t duration_ns,
                    int upstream_slot, int64_t upstream_ns) except -1
    # <- record, ClientProtocol.finish_record (protocol: rate limit decisions): one row + 1
    cdef int count(self, int route_slot, int method, int status) except -1
    # <- record: one duration into a histogram
    cdef inline void _observe(self, uint64_t* hist, uint64_t* sums, int slot,
                              int64_t ns) noexcept
    # <- ClientProtocol.finish_record (protocol), once per route and plan; __init__, observe()
    cpdef int route_slot(self, str name) except -1
    # <- ClientProtocol.finish_record (protocol), once per pool and plan; observe()
    cpdef int upstream_slot(self, str name) except -1
    # <- count: a larger requests table
    cdef int _grow_requests(self) except -1
    # <- route_slot, upstream_slot: histograms for a new slot
    cdef int _grow_hist(self, uint64_t** hist, uint64_t** sums, Py_ssize_t* cap,
                        Py_ssize_t need) except -1
    # <- snapshot (Python: metrics exposition): the histograms as plain data
    cdef dict _hist(self, list names, uint64_t* hist, uint64_t* sums)


cdef class AccessLog:
    # ClientProtocol.write_access_line (protocol) writes a line into `buf` between put_time()
    # and end_line(), and reads `fields`; `lines` and `sampled_out` are for Python (metrics).
    cdef HeadBuffer buf
    cdef object sink
    cdef uint32_t fields
    cdef bint sample_all            # no sampling: every line is kept
    cdef uint64_t sample_below      # else keep a line when _rand64() < this
    cdef bint keep_errors
    cdef Py_ssize_t flush_bytes
    cdef double flush_interval
    cdef double last_flush
    cdef int64_t time_sec           # the second time_prefix was formatted for
    cdef bytes time_prefix          # b'"2026-11-26T07:27:05.'
    cdef readonly uint64_t lines
    cdef readonly uint64_t sampled_out

    # <- ClientProtocol.finish_record (protocol): is this exchange's line kept (sampling)?
    cdef inline bint wants(self, int status) noexcept
    # <- ClientProtocol.write_access_line (protocol): the line's "time" field
    cdef int put_time(self) except -1
    # <- ClientProtocol.write_access_line (protocol), write_line: close the line; flush by size
    cdef int end_line(self) except -1
    # <- end_line, tick, Engine.close (protocol), fastgw.observe (reconfigure, close): lines
    #    to the sink
    cpdef flush(self)
    # <- Engine._tick (protocol): flush by time
    cdef void tick(self) noexcept


# The JSON writers of the access log line and Server-Timing.
# <- ClientProtocol.write_access_line (protocol): a JSON string of UTF-8 bytes (names, ids)
cdef int _put_json_str(HeadBuffer b, const char* s, Py_ssize_t n) except -1
# <- ClientProtocol.put_request_field, put_debug_fields (protocol): a JSON string of bytes a
#    client chose, kept valid UTF-8
cdef int _put_json_text(HeadBuffer b, const char* s, Py_ssize_t n) except -1
# <- ClientProtocol.write_access_line, put_server_timing (protocol): ns as "12.345" ms
cdef int _put_ms(HeadBuffer b, int64_t ns) except -1
