# request.pxi: the request stage: a whole request head starts an exchange (its id, its
# trace, then the route), body bytes go where the exchange says, the end of the request
# and a malformed one are handled here.


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


cdef void request_head(ClientProtocol conn, Exchange ex) noexcept:
    """A whole request head: begin its exchange, then route, chain, forward."""
    cdef RequestParser p = conn.parser
    try:
        conn.plan = conn.engine.plan
        conn.state = CS_EXCHANGE
        ex.begin(p, not conn.engine.draining and not conn.client_eof)
        ex.request_id = request_pick_id(conn, ex)
        conn.engine.requests_total += 1
        if conn.engine.trace_mode != TRACE_OFF:
            record_trace(conn, ex)
        if not route_request(conn, ex, p):
            return
        if ex.chain is not None and not chain_start(conn, ex, p):
            return
        forward_request(conn, ex)
    except BaseException as exc:
        conn.fail_internal(W_CLIENT, exc)


cdef bytes request_client_ip(ClientProtocol conn, Exchange ex):
    """The client's address: the peer, or with trusted proxies the rightmost untrusted
    X-Forwarded-For hop."""
    cdef RequestParser p = conn.parser
    cdef int i
    if ex.client_ip_value is not None:
        return ex.client_ip_value
    value = conn.peer_ip_bytes
    if conn.peer_trusted:
        hops = []
        for i in range(p.n_headers):
            if p.hdr_id[i] == H_X_FORWARDED_FOR:
                hops.extend(h.strip() for h in PyBytes_FromStringAndSize(
                    p.head + p.hdr_value_off[i], p.hdr_value_len[i]).split(b","))
        for hop in reversed(hops):
            if not hop:
                continue
            value = hop
            if not conn.plan.is_trusted(hop.decode("latin-1")):
                break
    ex.client_ip_value = value
    return value


cdef void request_body(ClientProtocol conn, Exchange ex, const char* ptr, Py_ssize_t n) noexcept:
    cdef bytes chunk
    ex.ex_in += n
    if ex.body_buffer is not None and not ex.local_response:
        conn.deadline = _now + conn.plan.client_body_idle
        if len(ex.body_buffer) + n > ex.chain.body_limit:
            ex.body_buffer = None
            relay_local_error(conn, ex, E_BODY_TOO_LARGE, 0)
            return
        try:
            ex.body_buffer.extend(PyBytes_FromStringAndSize(ptr, n))
        except BaseException as exc:
            conn.fail_internal(W_CLIENT, exc)
        return
    if ex.local_response or ex.up is None:
        return
    try:
        conn.deadline = _now + conn.plan.client_body_idle
        chunk = PyBytes_FromStringAndSize(ptr, n)
        if ex.request_framing == FRAMING_CHUNKED:
            ex.up_out.append(chunk_header(n))
            ex.up_out.append(chunk)
            ex.up_out.append(_CRLF)
        else:
            ex.up_out.append(chunk)
    except BaseException as exc:
        conn.fail_internal(W_CLIENT, exc)


cdef void request_done(ClientProtocol conn, Exchange ex) noexcept:
    cdef int outcome
    ex.request_complete = True
    if ex.local_response:
        ex.body_buffer = None
        conn.end_exchange()
        return
    if ex.body_buffer is not None:
        try:
            if ex.preq is not None:
                ex.preq.body = bytes(ex.body_buffer)
            outcome = chain_run(conn, ex, 0)
            ex.in_chain = False
            if outcome == HOOK_STEP_DONE:
                forward_request(conn, ex)
        except BaseException as exc:
            conn.fail_internal(W_CLIENT, exc)
        return
    try:
        if ex.request_framing == FRAMING_CHUNKED and ex.up is not None:
            ex.up_out.append(_LAST_CHUNK)
    except BaseException as exc:
        conn.fail_internal(W_CLIENT, exc)
        return
    # The read clock starts once the upstream took the whole request.
    conn.deadline = _now + (ex.send_timeout if conn.read_blocks & BLOCK_UPSTREAM_FULL
                            else ex.read_timeout)


cdef void request_error(ClientProtocol conn, Exchange ex, int code) noexcept:
    if conn.state == CS_EXCHANGE and not ex.local_response:
        if ex.up is not None:
            ex.up.client = None
            ex.up.abort()
            ex.up = None
        if ex.response_started:
            conn.abort_transport()
            return
    ex.keep_alive = False
    if ex.request_id is None or conn.state != CS_EXCHANGE:
        ex.request_id = conn.engine.new_request_id()
    if not ex.ex_open:
        # A request that never got a whole head is still a request the client sent.
        ex.begin_headless()
    # The method is known once its token ended, before the head was whole: a HEAD
    # refused by the parser gets no body either (RFC 9110 9.3.2).
    ex.method_id = conn.parser.method_id
    relay_write_error(conn, ex, code, 0)
    conn.flush()
    conn.close_transport()


cdef bytes request_pick_id(ClientProtocol conn, Exchange ex):
    cdef RequestParser p = conn.parser
    cdef int i
    for i in range(p.n_headers):
        if p.hdr_id[i] == H_X_REQUEST_ID:
            if _valid_request_id(p.head + p.hdr_value_off[i], p.hdr_value_len[i]):
                return PyBytes_FromStringAndSize(p.head + p.hdr_value_off[i],
                                                 p.hdr_value_len[i])
            break
    return conn.engine.new_request_id()
