# record.pxi: what an exchange leaves behind: its metrics, its access log line, its trace
# context (W3C traceparent) and Server-Timing.

# error code -> its stable `code` as a JSON string, for the access log's "code" field
cdef dict _LOG_CODES = {code: _orjson.dumps(entry[1]) for code, entry in ERROR_TABLE.items()}


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


cdef void record_finish(ClientProtocol conn, Exchange ex) noexcept:
    """Count the exchange that just ended (once) and write its access log line."""
    cdef Engine engine
    cdef RouteAction action
    cdef UpstreamPool pool
    cdef int64_t end, up_ns = -1, out_bytes
    cdef int status, route_slot = 0, up_slot = -1
    if ex is None or not ex.ex_open:
        return                  # no exchange yet, or this one was counted
    ex.ex_open = False
    pick_release(ex)
    engine = conn.engine
    action = ex.action
    pool = ex.pool_used
    if ex.held is not None:
        chain_release_held(conn, ex)
    try:
        end = ex.t_up_end if ex.t_up_end else _mono_ns()
        if ex.t_up_start:
            up_ns = (ex.t_up_end if ex.t_up_end else end) - ex.t_up_start
        # A client that left before any response: nginx's 499.
        status = ex.status if ex.status else 499
        out_bytes = conn.sent + conn.pending_out()
        conn.sent_mark, out_bytes = out_bytes, out_bytes - conn.sent_mark
        if engine.metrics_on:
            if action is not None:
                if action.metric_slot < 0:
                    action.metric_slot = engine.metrics.route_slot(action.name)
                route_slot = action.metric_slot
            if pool is not None and up_ns >= 0:
                if pool.metric_slot < 0:
                    pool.metric_slot = engine.metrics.upstream_slot(pool.name)
                up_slot = pool.metric_slot
            engine.metrics.record(route_slot, ex.method_id, status, end - ex.t_start,
                                  up_slot, up_ns)
            if ex.rl_result:
                engine.metrics.count(route_slot, _METHOD_RATELIMIT, ex.rl_result)
        if engine.access_log is not None and engine.access_log.wants(status):
            record_access_line(conn, ex, engine.access_log, status, end - ex.t_start, up_ns,
                               out_bytes)
    except BaseException as exc:
        # The answer itself is whole: it still goes out, then the connection closes.
        _internal_error(W_RECORD, exc, ex.request_id)
        ex.keep_alive = False


cdef int record_access_line(ClientProtocol conn, Exchange ex, AccessLog log, int status,
                            int64_t duration_ns, int64_t up_ns, int64_t out_bytes) except -1:
    cdef HeadBuffer b = log.buf
    cdef uint32_t f = log.fields
    cdef RequestParser p = conn.parser
    cdef bint head = ex.head_ok
    cdef Py_ssize_t start = b.length
    b.put("{", 1)
    if f & AF_TIME:
        b.put_bytes(b'"time":')
        log.put_time()
    if f & AF_REQUEST_ID:
        b.put_bytes(b',"request_id":"')
        b.put_bytes(ex.request_id)
        b.put("\"", 1)
    if f & AF_CLIENT_IP:
        b.put_bytes(b',"client_ip":')
        ip = request_client_ip(conn, ex) if head else conn.peer_ip_bytes
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
        b.put_bytes(ex.action.log_field if ex.action is not None
                    else b',"route":null')
    if f & AF_UPSTREAM:
        b.put_bytes(ex.pool_used.log_field if ex.pool_used is not None
                    else b',"upstream":null')
    if f & AF_TARGET:
        # The target tried, also when connecting to it failed.
        b.put_bytes(ex.target.log_field if ex.target is not None
                    else b',"target":null')
    if f & AF_STATUS:
        b.put_bytes(b',"status":')
        b.put_int(status)
    if f & AF_BYTES_IN:
        b.put_bytes(b',"bytes_in":')
        b.put_int(ex.ex_in)
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
        if ex.trace_len:
            b.put("\"", 1)
            b.put(ex.trace + 3, 32)
            b.put("\"", 1)
        else:
            b.put_bytes(b"null")
    if f & AF_RATE_LIMIT:
        b.put_bytes(b',"rate_limit":')
        if ex.rl_result == RL_ALLOWED:
            b.put_bytes(b'"allowed"')
        elif ex.rl_result == RL_LIMITED:
            b.put_bytes(b'"limited"')
        else:
            b.put_bytes(b"null")
    if f & AF_DEBUG_GROUP:
        record_debug_fields(conn, ex, b, f)
    if b.data[start + 1] == c',':
        # The first selected field carries no comma before it.
        memmove(b.data + start + 1, b.data + start + 2, b.length - start - 2)
        b.length -= 1
    log.end_line()
    return 0


cdef int record_debug_fields(ClientProtocol conn, Exchange ex, HeadBuffer b, uint32_t f) except -1:
    """The opt-in access log fields (ACCESS_LOG_FIELDS from "code" on)."""
    cdef RequestParser p = conn.parser
    cdef bint head = ex.head_ok
    cdef Py_ssize_t off
    cdef bytes text
    if f & AF_CODE:
        b.put_bytes(b',"code":')
        b.put_bytes(<bytes>_LOG_CODES[ex.local_code] if ex.local_code else b"null")
    if f & AF_USER_AGENT:
        b.put_bytes(b',"user_agent":')
        record_request_field(conn, ex, b, b"user-agent")
    if f & AF_REFERER:
        b.put_bytes(b',"referer":')
        record_request_field(conn, ex, b, b"referer")
    if f & AF_UPSTREAM_PATH:
        b.put_bytes(b',"upstream_path":')
        if ex.up_head is not None and head:
            off = p.method_len + 1
            _put_json_text(b, PyBytes_AS_STRING(ex.up_head) + off, ex.up_path_len)
        else:
            b.put_bytes(b"null")
    if f & AF_CONSUMER:
        b.put_bytes(b',"consumer":')
        consumer = ex.consumer
        if consumer is None:
            b.put_bytes(b"null")
        else:
            # A policy's object: its str(), never a lost line for a lone surrogate.
            text = str(consumer).encode("utf-8", "backslashreplace")
            _put_json_text(b, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
    if f & AF_BYTES_SENT:
        b.put_bytes(b',"bytes_sent":')
        b.put_int(ex.up_sent)
    if f & AF_AUTH:
        # The policy that authenticated, "anonymous", or the failure code answered.
        b.put_bytes(b',"auth":')
        if ex.auth_result is None:
            b.put_bytes(b"null")
        else:
            text = ex.auth_result.encode("utf-8", "backslashreplace")
            _put_json_text(b, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
    return 0


cdef int record_request_field(ClientProtocol conn, Exchange ex, HeadBuffer b,
                              bytes lower_name) except -1:
    """The first request field of that name as a JSON string, or null."""
    cdef RequestParser p = conn.parser
    cdef Py_ssize_t n = PyBytes_GET_SIZE(lower_name)
    cdef int i
    if ex.head_ok:
        for i in range(p.n_headers):
            if (p.hdr_name_len[i] == n and _h1_name_is(p.head + p.hdr_name_off[i],
                                                       PyBytes_AS_STRING(lower_name), n)):
                _put_json_text(b, p.head + p.hdr_value_off[i], p.hdr_value_len[i])
                return 0
    b.put_bytes(b"null")
    return 0


cdef void record_trace(ClientProtocol conn, Exchange ex) noexcept:
    """W3C Trace Context: continue a valid traceparent with a span id of our own, or
    start a trace (TRACE_START); tracestate goes with a continued trace only."""
    cdef RequestParser p = conn.parser
    cdef const char* v
    cdef int i
    cdef bint found = False
    ex.trace_restarted = False
    for i in range(p.n_headers):
        if p.hdr_id[i] == H_TRACEPARENT:
            found = True
            v = p.head + p.hdr_value_off[i]
            if _valid_traceparent(v, p.hdr_value_len[i]):
                memcpy(ex.trace, b"00-", 3)
                memcpy(ex.trace + 3, v + 3, 32)
                ex.trace[35] = b"-"
                _put_hex64(ex.trace + 36, _rand64() | 1)
                ex.trace[52] = b"-"
                ex.trace[53] = v[53]
                ex.trace[54] = v[54]
                ex.trace_len = 55
                return
            break
    if conn.engine.trace_mode != TRACE_START:
        return
    ex.trace_restarted = found
    memcpy(ex.trace, b"00-", 3)
    _put_hex64(ex.trace + 3, _rand64() | 1)
    _put_hex64(ex.trace + 19, _rand64())
    ex.trace[35] = b"-"
    _put_hex64(ex.trace + 36, _rand64() | 1)
    memcpy(ex.trace + 52, b"-01", 3)
    ex.trace_len = 55


cdef void record_server_timing(ClientProtocol conn, Exchange ex) except *:
    """Server-Timing (W3C): time in the gateway before the upstream got the request,
    and the upstream's time to the response head, in milliseconds."""
    cdef HeadBuffer b = _head_buffer
    cdef int64_t now = _mono_ns()
    cdef int64_t sent_at = ex.t_up_start if ex.t_up_start else now
    b.put_bytes(b"server-timing: gateway;dur=")
    _put_ms(b, sent_at - ex.t_start)
    if ex.t_up_start:
        b.put_bytes(b", upstream;dur=")
        _put_ms(b, now - ex.t_up_start)
    b.put_bytes(_CRLF)
