# record.pxd: stage record: metrics, the access log line, trace context, Server-Timing. (code:
# record.pxi)

# <- this fragment (inline in record.pxi)
cdef bint _is_lower_hex(const char* p, Py_ssize_t n) noexcept


# <- this fragment
cdef bint _valid_traceparent(const char* v, Py_ssize_t n) noexcept


# <- protocol: count the exchange that just ended (once) and write its access log line
cdef void record_finish(ClientProtocol conn, Exchange ex) noexcept


# <- this fragment
cdef int record_access_line(ClientProtocol conn, Exchange ex, AccessLog log, int status,
                            int64_t duration_ns, int64_t up_ns, int64_t out_bytes) except -1


# <- this fragment: the opt-in access log fields (ACCESS_LOG_FIELDS from "code" on)
cdef int record_debug_fields(ClientProtocol conn, Exchange ex, HeadBuffer b, uint32_t f) except -1


# <- this fragment: the first request field of that name as a JSON string, or null
cdef int record_request_field(ClientProtocol conn, Exchange ex, HeadBuffer b,
                              bytes lower_name) except -1


# <- request: w3C Trace Context: continue a valid traceparent with a span id of our own, or start a
#    trace (TRACE_START); tracestate goes with a continued trace only
cdef void record_trace(ClientProtocol conn, Exchange ex) noexcept


# <- relay: server-Timing (W3C): time in the gateway before the upstream got the request, and the
#    upstream's time to the response head, in milliseconds
cdef void record_server_timing(ClientProtocol conn, Exchange ex) except *
