# request.pxd: stage request: a whole head begins the exchange, body bytes, the end of the
# request, parse errors. (code: request.pxi)

# <- this fragment (inline in request.pxi)
cdef bint _valid_request_id(const char* p, Py_ssize_t n) noexcept


# <- protocol: a whole request head: begin its exchange, then route, chain, forward
cdef void request_head(ClientProtocol conn, Exchange ex) noexcept


# <- chain, forward, policy, record, upstream: the client's address: the peer, or with trusted
#    proxies the rightmost untrusted X-Forwarded-For hop
cdef bytes request_client_ip(ClientProtocol conn, Exchange ex)


# <- protocol
cdef void request_body(ClientProtocol conn, Exchange ex, const char* ptr, Py_ssize_t n) noexcept


# <- protocol
cdef void request_done(ClientProtocol conn, Exchange ex) noexcept


# <- protocol
cdef void request_error(ClientProtocol conn, Exchange ex, int code) noexcept


# <- this fragment
cdef bytes request_pick_id(ClientProtocol conn, Exchange ex)
