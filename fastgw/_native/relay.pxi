# relay.pxi: the response stage: the upstream's response head and body relayed to the
# client (framing, fields, the 101 tunnel), and the gateway's own answers (JSON errors,
# policy responses).


cdef inline bint _has_field(Http1Parser parser, int header_id) noexcept:
    cdef int i
    for i in range(parser.n_headers):
        if parser.hdr_id[i] == header_id:
            return True
    return False


cdef void relay_start_local(ClientProtocol conn, Exchange ex):
    ex.local_response = True
    ex.response_started = False
    if ex.request_framing != FRAMING_NONE:
        ex.keep_alive = False
    conn.settle()
    _head_buffer.length = 0


cdef void relay_finish_local(ClientProtocol conn, Exchange ex, bytes body, int status) except *:
    cdef HeadBuffer b = _head_buffer
    ex.status = status
    if status != 204 and status != 304:
        # RFC 9110 8.6: no Content-Length on a 204; a 304 has no body of its own.
        b.put_bytes(b"content-length: ")
        b.put_int(PyBytes_GET_SIZE(body))
        b.put_bytes(_CRLF)
    b.put_bytes(b"x-request-id: ")
    b.put_bytes(ex.request_id)
    b.put_bytes(_CRLF)
    if ex.extra_head is not None:
        b.put_bytes(ex.extra_head)
    if ex.local_head is not None:
        b.put_bytes(ex.local_head)
    if not ex.keep_alive:
        b.put_bytes(b"connection: close\r\n")
    b.put_bytes(_CRLF)
    if ex.method_id != M_HEAD and status != 204 and status != 304:
        b.put_bytes(body)
    conn.out.append(b.take())
    if ex.request_framing != FRAMING_NONE:
        conn.flush()
        conn.close_transport()


cdef void relay_head(ClientProtocol conn, Exchange ex, ResponseParser rp) noexcept:
    cdef HeadBuffer b = _head_buffer
    cdef int status = rp.status
    cdef int i
    cdef bint close_after
    try:
        if 100 <= status < 200 and status != 101:
            # Interim responses: our own 100 already went out; others only to 1.1 clients.
            if status != 100 and ex.client_minor == 1:
                b.put_bytes(status_line(status))
                relay_put_fields(conn, ex, rp)
                b.put_bytes(b"\r\n")
                conn.out.append(b.take())
            return
        if status == 101:
            if not ex.upgrade:
                forward_error(conn, ex, E_UPSTREAM_BAD_STATUS_LINE)
                return
            ex.status = 101
            b.put_bytes(b"HTTP/1.1 101 Switching Protocols\r\n")
            relay_put_fields(conn, ex, rp)
            b.put_bytes(b"connection: upgrade\r\nupgrade: websocket\r\n")
            b.put_bytes(b"x-request-id: ")
            b.put_bytes(ex.request_id)
            b.put_bytes(b"\r\n\r\n")
            conn.out.append(b.take())
            ex.response_started = True
            conn.state = CS_TUNNEL
            # A tunnel idle in both directions for the read timeout is closed (nginx:
            # proxy_read_timeout); WebSocket pings keep a live one open.
            conn.deadline = _now + ex.read_timeout
            conn.block_reading(BLOCK_PENDING, False)
            if conn.buf is not None:
                ex.up_sent += PyBytes_GET_SIZE(conn.buf) - conn.buf_off
                ex.up.transport.write(conn.buf[conn.buf_off:])
                conn.buf = None
            return
        if rp.framing == FRAMING_CLOSE and _has_field(rp, H_TRANSFER_ENCODING):
            # A transfer coding other than chunked (RFC 9112 6.3 rule 4): the body would
            # reach the client still coded, with nothing saying so. Refuse it.
            forward_error(conn, ex, E_UPSTREAM_BAD_FRAMING)
            return
        if ex.chain is not None and ex.chain.response_hooks:
            ex.rview = _new_response_view(rp)
            if not chain_response_hooks(conn, ex, 0):
                return
        relay_write_head(conn, ex, rp)
    except BaseException as exc:
        conn.fail_internal(W_UPSTREAM, exc)


cdef void relay_write_head(ClientProtocol conn, Exchange ex, ResponseParser rp) except *:
    cdef HeadBuffer b = _head_buffer
    cdef HeaderOps ops
    cdef HeaderChanges changes
    cdef int status = rp.status
    cdef int i, framing = rp.framing
    cdef bint close_after, reframe = False
    if ex.action.body_stages is not None:
        # Before anything is written: a stage may keep fields from the client, and one
        # that fails leaves a response nobody started (a 500).
        reframe = body_start(conn, ex, rp, ex.action.body_stages)
        if reframe and framing == FRAMING_LENGTH:
            framing = FRAMING_CHUNKED      # a transformed body has no known length
    ex.status = status
    b.put_bytes(b"HTTP/1.1 ")
    b.put_int(status)
    b.put_bytes(b" ")
    b.put(rp.head + rp.reason_off, rp.reason_len)
    b.put_bytes(b"\r\n")
    ops = None
    changes = None
    if ex.chain is not None:
        ops = _ops_for(ex.chain.response_ops, ex.match.pattern_id)
        if ex.rview is not None:
            changes = ex.rview.changes
            ex.rview.parser = None    # the view must not read a parser that moves on
    if ops is None and changes is None:
        relay_put_fields(conn, ex, rp)
    else:
        forward_put_fields(conn, ex, rp, ops, changes, False)
    if ex.body_filter is not None:
        body_put_fields(ex)
    b.put_bytes(b"x-request-id: ")
    b.put_bytes(ex.request_id)
    b.put_bytes(b"\r\n")
    if ex.extra_head is not None:
        b.put_bytes(ex.extra_head)
    if conn.engine.server_timing:
        record_server_timing(conn, ex)
    close_after = not ex.keep_alive
    if framing == FRAMING_LENGTH:
        ex.out_framing = OUT_LENGTH
        b.put_bytes(b"content-length: ")
        b.put_int(rp.content_length)
        b.put_bytes(b"\r\n")
    elif framing == FRAMING_NONE:
        ex.out_framing = OUT_NONE
        if (ex.method_id == M_HEAD or status == 304) and not reframe:
            # The length of the representation, not of this message (RFC 9110 8.6).
            for i in range(rp.n_headers):
                if rp.hdr_id[i] == H_CONTENT_LENGTH:
                    b.put_bytes(b"content-length: ")
                    b.put(rp.head + rp.hdr_value_off[i], rp.hdr_value_len[i])
                    b.put_bytes(b"\r\n")
                    break
    elif ex.client_minor == 1:
        ex.out_framing = OUT_CHUNKED
        b.put_bytes(b"transfer-encoding: chunked\r\n")
    else:
        ex.out_framing = OUT_CLOSE
        close_after = True
    if close_after:
        ex.keep_alive = False
        b.put_bytes(b"connection: close\r\n")
    elif ex.client_minor == 0:
        b.put_bytes(b"connection: keep-alive\r\n")
    b.put_bytes(b"\r\n")
    # PERF: the head stays in the buffer so a small body can join it: one bytes
    # object and one write per response.
    conn.head_pending = True
    ex.response_started = True


cdef void relay_put_fields(ClientProtocol conn, Exchange ex, ResponseParser rp):
    cdef HeadBuffer b = _head_buffer
    cdef int i
    for i in range(rp.n_headers):
        if rp.hdr_flags[i] & HF_DROP or rp.hdr_id[i] == H_X_REQUEST_ID:
            continue
        b.put(rp.head + rp.hdr_name_off[i], rp.hdr_name_len[i])
        b.put_bytes(b": ")
        b.put(rp.head + rp.hdr_value_off[i], rp.hdr_value_len[i])
        b.put_bytes(b"\r\n")


cdef void relay_body(ClientProtocol conn, Exchange ex, const char* ptr, Py_ssize_t n) noexcept:
    if n == 0 or conn.closed:
        return
    if ex.body_filter is not None:
        body_data(conn, ex, ptr, n)
        return
    relay_put_body(conn, ex, ptr, n)


cdef inline void relay_put_body(ClientProtocol conn, Exchange ex, const char* ptr,
                                Py_ssize_t n) noexcept:
    """Body bytes to the client, framed (n > 0, the connection open)."""
    cdef bytes chunk
    cdef HeadBuffer b = _head_buffer
    if conn.head_pending and n <= COALESCE_BODY_BYTES:
        try:
            if ex.out_framing == OUT_CHUNKED:
                b.put_hex(n)
                b.put_bytes(_CRLF)
                b.put(ptr, n)
                b.put_bytes(_CRLF)
            else:
                b.put(ptr, n)
        except BaseException as exc:
            conn.fail_internal(W_UPSTREAM, exc)
        return
    conn.settle()
    chunk = PyBytes_FromStringAndSize(ptr, n)
    if ex.out_framing == OUT_CHUNKED:
        conn.out.append(chunk_header(n))
        conn.out.append(chunk)
        conn.out.append(_CRLF)
    else:
        conn.out.append(chunk)


cdef void relay_done(ClientProtocol conn, Exchange ex) noexcept:
    ex.up = None
    ex.t_up_end = _mono_ns()
    if ex.body_filter is not None:
        # A closed client missed bytes (relay_body drops them): that body is not whole.
        body_finish(conn, ex, not conn.closed)
    if conn.closed:
        return
    if ex.out_framing == OUT_CHUNKED:
        if conn.head_pending:
            _head_buffer.put_bytes(_LAST_CHUNK)
        else:
            conn.out.append(_LAST_CHUNK)
    conn.settle()
    if ex.out_framing == OUT_CLOSE or not ex.request_complete:
        # The upstream answered before the request body ended, or the body is
        # close-delimited: this connection cannot carry another request.
        conn.flush()
        conn.close_transport()
        return
    conn.end_exchange()


cdef void relay_tunnel_closed(ClientProtocol conn, Exchange ex) noexcept:
    ex.up = None
    conn.flush()
    conn.close_transport()


cdef void relay_local_error(ClientProtocol conn, Exchange ex, int code,
                            unsigned int allowed) noexcept:
    """Answer this request from the gateway; its body (if any) is not read."""
    ex.local_response = True
    if ex.request_framing != FRAMING_NONE:
        ex.keep_alive = False
    relay_write_error(conn, ex, code, allowed)
    if ex.request_framing != FRAMING_NONE:
        conn.flush()
        conn.close_transport()


cdef void relay_write_error(ClientProtocol conn, Exchange ex, int code,
                            unsigned int allowed) noexcept:
    cdef HeadBuffer b = _head_buffer
    cdef bytes body
    try:
        conn.settle()
        if code not in ERROR_TABLE:
            code = E_INTERNAL
        status, stable, message = ERROR_TABLE[code]
        ex.status = status
        ex.local_code = code
        request_id = ex.request_id.decode("ascii")
        body = _orjson.dumps({"error": {"status": status, "code": stable,
                                        "message": message, "request_id": request_id}})
        b.put_bytes(status_line(status))
        b.put_bytes(b"content-type: application/json\r\n")
        if ex.method_id != M_HEAD or not allowed & (1 << M_GET):
            # RFC 9110 8.6: to HEAD, the length a GET would get. A GET gets this same
            # error, except a 405 on a route that allows GET: no length then.
            b.put_bytes(b"content-length: ")
            b.put_int(len(body))
            b.put_bytes(_CRLF)
        b.put_bytes(b"x-request-id: ")
        b.put_bytes(ex.request_id)
        b.put_bytes(b"\r\n")
        if ex.extra_head is not None:
            b.put_bytes(ex.extra_head)
        if ex.local_head is not None:
            b.put_bytes(ex.local_head)
        if allowed:
            names = conn.plan.router.method_names(allowed)
            b.put_bytes(("allow: " + ", ".join(names) + "\r\n").encode("ascii"))
        if not ex.keep_alive:
            b.put_bytes(b"connection: close\r\n")
        b.put_bytes(b"\r\n")
        if ex.method_id != M_HEAD:
            b.put_bytes(body)           # RFC 9110 9.3.2: a response to HEAD has none
        conn.out.append(b.take())
    except BaseException as exc:
        b.length = 0
        _internal_error(W_CLIENT, exc, ex.request_id)
        conn.abort_transport()
