# forward.pxi: the upstream exchange: the request head as the upstream gets it, a
# connection to the picked target (pooled or new), the request body, and what goes wrong
# on the way (connect failures, resets, back-pressure).


cdef void forward_request(ClientProtocol conn, Exchange ex) except *:
    """Every request step passed: pick the target, serialise the head, go."""
    pick_target(conn, ex)
    ex.up_head = forward_build_head(conn, ex)
    if (conn.parser.expect_continue and conn.parser.framing != FRAMING_NONE
            and not ex.continue_sent):
        # RFC 9110 10.1.1: we will read the body, so say so before the upstream does.
        conn.out.append(_CONTINUE)
        ex.continue_sent = True
    conn.deadline = _now + conn.plan.client_body_idle
    forward_attach(conn, ex)


cdef void forward_put_template(ClientProtocol conn, Exchange ex, tuple parts,
                               bint for_url) except *:
    cdef HeadBuffer b = _head_buffer
    cdef RequestParser p = conn.parser
    cdef int index
    cdef bytes value
    for part in parts:
        if type(part) is bytes:
            b.put_bytes(<bytes>part)
            continue
        index = <int>part
        if index >= 0:
            value = PyBytes_FromStringAndSize(p.path + ex.match.param_off[index],
                                              ex.match.param_len[index])
        elif index == VAR_CLIENT_IP:
            value = request_client_ip(conn, ex)
        elif index == VAR_REQUEST_ID:
            value = ex.request_id
        elif index == VAR_HOST:
            value = PyBytes_FromStringAndSize(p.head + p.host_off, p.host_len)
        elif index == VAR_METHOD:
            value = PyBytes_FromStringAndSize(p.head + p.method_off, p.method_len)
        elif index == VAR_PATH:
            value = PyBytes_FromStringAndSize(p.path, p.path_len)
        elif index == VAR_CONSUMER:
            value = forward_consumer_value(ex)
        else:
            value = ex.action.name_bytes
        if for_url:
            value = _percent_encode_unsafe(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        b.put_bytes(value)


cdef bytes forward_consumer_value(Exchange ex):
    """$consumer: the consumer's id; a value a Python policy set may hold any character, so
    control characters are percent-encoded (no CR/LF can enter a field)."""
    cdef bytes value
    cdef const unsigned char* s
    cdef Py_ssize_t i, n
    if ex.consumer is None:
        return b""
    value = str(ex.consumer).encode("utf-8", "backslashreplace")
    s = <const unsigned char*>PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    for i in range(n):
        if s[i] < 0x20 or s[i] == 0x7f:
            return _percent_encode_unsafe(<const char*>s, n)
    return value


cdef void forward_put_fields(ClientProtocol conn, Exchange ex, Http1Parser parser,
                             HeaderOps ops, HeaderChanges changes, bint request) except *:
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
                        and not conn.peer_trusted)
                    or (hid == H_TRACEPARENT and ex.trace_len)
                    or (hid == H_TRACESTATE and ex.trace_restarted)):
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
                forward_put_template(conn, ex, <tuple>template, False)
                b.put_bytes(_CRLF)
        else:
            for kind, field_name, template in ops.emits:
                if kind == OP_SET and changes.hides(
                        PyBytes_AS_STRING(<bytes>field_name),
                        PyBytes_GET_SIZE(<bytes>field_name)):
                    continue
                b.put_bytes(<bytes>field_name)
                b.put_bytes(b": ")
                forward_put_template(conn, ex, <tuple>template, False)
                b.put_bytes(_CRLF)
    if has_changes:
        for kind, _, field_name, value in changes.changes:
            if kind == OP_SET or kind == OP_ADD:
                b.put_bytes(<bytes>field_name)
                b.put_bytes(b": ")
                b.put_bytes(<bytes>value)
                b.put_bytes(_CRLF)


cdef void forward_attach(ClientProtocol conn, Exchange ex):
    cdef UpstreamConnection upc = ex.target.acquire()
    cdef double timeout
    if upc is None:
        # Targets are shared by routes: the connect timeout is the route's. The attempt
        # times itself out; the client is not read meanwhile, so its body clock must not
        # run (the deadline only backs the attempt up).
        timeout = ex.action.connect_timeout
        conn.deadline = _now + timeout + CONNECT_DEADLINE_SLACK
        conn.engine.loop.create_task(_connect_upstream(ex.target, conn, conn.engine.loop,
                                                       timeout))
    else:
        forward_bind(conn, ex, upc)


cdef void forward_bind(ClientProtocol conn, Exchange ex, UpstreamConnection upc):
    ex.up = upc
    ex.t_up_start = _mono_ns()
    upc.start(conn, ex.method_id)
    if conn.writing_paused:
        upc.pause_reading(True)
    # PERF: the head goes out with the body bytes of the same read in one writev.
    ex.up_out.clear()
    ex.up_out.append(ex.up_head)
    if ex.body_buffer is not None:
        # The body a policy read whole, framed as the client framed it.
        if ex.request_framing == FRAMING_CHUNKED:
            if ex.body_buffer:
                ex.up_out.append(chunk_header(len(ex.body_buffer)))
                ex.up_out.append(bytes(ex.body_buffer))
                ex.up_out.append(_CRLF)
            ex.up_out.append(_LAST_CHUNK)
        else:
            ex.up_out.append(bytes(ex.body_buffer))
        ex.body_buffer = None
    if ex.request_complete or ex.request_framing == FRAMING_NONE:
        conn.deadline = _now + ex.read_timeout
    else:
        conn.deadline = _now + conn.plan.client_body_idle    # the body may come now


cdef void forward_connected(ClientProtocol conn, Exchange ex, UpstreamConnection upc) noexcept:
    try:
        if conn.closed or conn.state != CS_EXCHANGE or ex.up is not None:
            upc.target.release(upc)
            return
        forward_bind(conn, ex, upc)
        conn.process()
        conn.flush()
    except BaseException as exc:
        conn.fail_internal(W_UPSTREAM, exc)


cdef void forward_connect_failed(ClientProtocol conn, Exchange ex, int code) noexcept:
    if conn.closed or conn.state != CS_EXCHANGE:
        return
    forward_error(conn, ex, code)
    conn.flush()


cdef void forward_lost(ClientProtocol conn, Exchange ex, bint reused) noexcept:
    """The upstream closed before sending a byte of the response."""
    ex.up = None
    if (reused and ex.retries == 0 and ex.request_framing == FRAMING_NONE
            and ex.method_id in (M_GET, M_HEAD, M_OPTIONS, M_PUT, M_DELETE, M_TRACE)):
        # RFC 9110 9.2.2: only idempotent requests may be sent again.
        # A pooled connection the upstream had already closed: the request was not
        # processed, and with no body it can be sent again on a fresh connection.
        ex.retries += 1
        try:
            forward_attach(conn, ex)
            forward_flush(conn, ex)
        except BaseException as exc:
            conn.fail_internal(W_UPSTREAM, exc)
        return
    forward_error(conn, ex, E_UPSTREAM_RESET)
    conn.flush()


cdef void forward_error(ClientProtocol conn, Exchange ex, int code) noexcept:
    cdef UpstreamConnection up = ex.up
    ex.up = None
    if up is not None:
        up.client = None
        up.abort()
    if ex.body_filter is not None:
        body_finish(conn, ex, False)    # the body stages hear it was cut short
    if conn.closed:
        return
    if ex.response_started:
        # Never present a truncated body as complete: the client sees the close.
        conn.flush()
        conn.abort_transport()
        return
    if not ex.request_complete:
        ex.keep_alive = False
    ex.local_response = True
    relay_write_error(conn, ex, code, 0)
    if ex.request_complete:
        conn.end_exchange()
    else:
        conn.flush()
        conn.close_transport()


cdef void forward_full(ClientProtocol conn, Exchange ex, bint full) noexcept:
    """The upstream's write buffer crossed its high (full) or low water mark."""
    conn.block_reading(BLOCK_UPSTREAM_FULL, full)
    if conn.state != CS_EXCHANGE:
        return
    if full:
        # nginx's proxy_send_timeout: how long sending the request may make no progress.
        conn.deadline = _now + ex.send_timeout
    elif ex.request_complete:
        conn.deadline = _now + ex.read_timeout
    else:
        # The upstream takes body bytes again: the client's idle clock starts over.
        conn.deadline = _now + conn.plan.client_body_idle


cdef void forward_touch(ClientProtocol conn, Exchange ex) noexcept:
    if ex.request_complete:
        conn.deadline = _now + ex.read_timeout


cdef void forward_flush(ClientProtocol conn, Exchange ex) noexcept:
    cdef UpstreamConnection up = ex.up
    if not ex.up_out:
        return
    if up is None or not up.alive:
        ex.up_out.clear()
        return
    try:
        if len(ex.up_out) == 1:
            ex.up_sent += PyBytes_GET_SIZE(ex.up_out[0])
            up.transport.write(ex.up_out[0])
        else:
            for item in ex.up_out:
                ex.up_sent += PyBytes_GET_SIZE(item)
            up.transport.writelines(ex.up_out)
        ex.up_out.clear()
    except BaseException as exc:
        ex.up_out.clear()
        conn.fail_internal(W_UPSTREAM, exc)


cdef bytes forward_build_head(ClientProtocol conn, Exchange ex):
    cdef HeadBuffer b = _head_buffer
    cdef HeaderOps ops
    cdef HeaderChanges changes
    cdef RequestParser p = conn.parser
    cdef RouteAction action = ex.action
    cdef RouteMatch* match = &ex.match
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
    if ex.preq is not None and ex.preq.new_path is not None:
        b.put_bytes(ex.preq.new_path)
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
    ex.up_path_len = b.length - p.method_len - 1
    if ex.up_query is not None:
        # An authentication policy took its credential out of the query (hide_credentials).
        if PyBytes_GET_SIZE(ex.up_query):
            b.put_bytes(b"?")
            b.put_bytes(ex.up_query)
    elif p.has_query:
        b.put_bytes(b"?")
        b.put(head + p.query_off, p.query_len)
    b.put_bytes(b" HTTP/1.1\r\nhost: ")
    if action.preserve_host and p.host_len > 0:
        b.put(head + p.host_off, p.host_len)
    else:
        b.put_bytes(ex.target.host_header)
    b.put_bytes(b"\r\n")
    ops = None
    changes = None
    if ex.chain is not None:
        ops = _ops_for(ex.chain.request_ops, match.pattern_id)
        if ex.preq is not None:
            changes = ex.preq.upstream_changes
    if ops is None and changes is None:
        for i in range(p.n_headers):
            if p.hdr_flags[i] & HF_DROP:
                continue
            hid = p.hdr_id[i]
            if hid == H_X_FORWARDED_FOR or hid == H_X_REQUEST_ID:
                continue
            if hid == H_TRACEPARENT and ex.trace_len:
                continue
            if hid == H_TRACESTATE and ex.trace_restarted:
                continue
            if hid == H_X_FORWARDED_PROTO or hid == H_X_FORWARDED_HOST:
                # A client's claims about the original request count only from a
                # trusted proxy.
                if not conn.peer_trusted:
                    continue
            b.put(head + p.hdr_name_off[i], p.hdr_name_len[i])
            b.put_bytes(b": ")
            b.put(head + p.hdr_value_off[i], p.hdr_value_len[i])
            b.put_bytes(b"\r\n")
    else:
        forward_put_fields(conn, ex, p, ops, changes, True)
    if conn.peer_trusted:
        for i in range(p.n_headers):
            if p.hdr_id[i] == H_X_FORWARDED_PROTO:
                proto_seen = True
            elif p.hdr_id[i] == H_X_FORWARDED_HOST:
                fwd_host_seen = True
    b.put_bytes(b"x-forwarded-for: ")
    if conn.peer_trusted:
        for i in range(p.n_headers):
            if p.hdr_id[i] == H_X_FORWARDED_FOR and p.hdr_value_len[i] > 0:
                b.put(head + p.hdr_value_off[i], p.hdr_value_len[i])
                b.put_bytes(b", ")
    b.put_bytes(conn.peer_ip_bytes)
    b.put_bytes(b"\r\n")
    if not proto_seen:
        b.put_bytes(b"x-forwarded-proto: http\r\n")
    if not fwd_host_seen and p.host_len > 0:
        b.put_bytes(b"x-forwarded-host: ")
        b.put(head + p.host_off, p.host_len)
        b.put_bytes(b"\r\n")
    b.put_bytes(b"x-request-id: ")
    b.put_bytes(ex.request_id)
    b.put_bytes(b"\r\n")
    if ex.identity_head is not None:
        # Who authenticated (X-Consumer-*): the client's own copies were removed above.
        b.put_bytes(ex.identity_head)
    if ex.trace_len:
        b.put_bytes(b"traceparent: ")
        b.put(ex.trace, ex.trace_len)
        b.put_bytes(b"\r\n")
    if p.framing == FRAMING_LENGTH:
        b.put_bytes(b"content-length: ")
        b.put_int(p.content_length)
        b.put_bytes(b"\r\n")
    elif p.framing == FRAMING_CHUNKED:
        b.put_bytes(b"transfer-encoding: chunked\r\n")
    if ex.upgrade:
        b.put_bytes(b"connection: upgrade\r\nupgrade: websocket\r\n")
    b.put_bytes(b"\r\n")
    return b.take()
