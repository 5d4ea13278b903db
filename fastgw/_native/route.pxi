# route.pxi: the route stage: the request's host, path, method and conditions pick a
# route (router.pxi), and the route's own limits apply before anything is forwarded.


cdef bint route_request(ClientProtocol conn, Exchange ex, RequestParser p) except *:
    """Find the route and take its action; False when the request was answered here."""
    cdef RequestFields fields
    cdef RouteAction action
    cdef int result
    # PERF: route conditions read the parser's arrays in place.
    fields.head = p.head
    fields.n_headers = p.n_headers
    fields.name_off = p.hdr_name_off
    fields.name_len = p.hdr_name_len
    fields.value_off = p.hdr_value_off
    fields.value_len = p.hdr_value_len
    fields.query = p.head + p.query_off if p.has_query else NULL
    fields.query_len = p.query_len if p.has_query else 0
    result = conn.plan.router.match_fields(
        p.hostname, p.hostname_len, p.path, p.path_len,
        conn.plan.router.method_bit(p.method_id, p.head + p.method_off, p.method_len),
        &fields, &ex.match)
    if result != MATCH_FOUND:
        if result == MATCH_METHOD_NOT_ALLOWED:
            relay_local_error(conn, ex, E_METHOD_NOT_ALLOWED, ex.match.allowed_methods)
        else:
            relay_local_error(conn, ex, E_ROUTE_NOT_FOUND, 0)
        return False
    action = <RouteAction>conn.plan.actions[ex.match.route_id]
    ex.action = action
    ex.read_timeout = action.read_timeout
    ex.send_timeout = action.send_timeout
    if p.framing != FRAMING_NONE:
        # The route's body limit (RFC 9110 15.5.14): a declared length over it is
        # refused before anything is forwarded; the parser refuses a chunk that
        # would grow the body past it (end_exchange puts the ceiling back).
        if p.framing == FRAMING_LENGTH:
            if p.content_length > action.max_body_bytes:
                relay_local_error(conn, ex, E_BODY_TOO_LARGE, 0)
                return False
        else:
            p.max_body_bytes = action.max_body_bytes
    ex.chain = action.chain
    if ex.chain is not None and ex.chain.disabled:
        relay_local_error(conn, ex, E_ROUTE_UNAVAILABLE, 0)
        return False
    return True
