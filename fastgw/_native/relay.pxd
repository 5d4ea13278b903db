# relay.pxd: stage response relay: the upstream's head and body re-framed for the client, the
# tunnel, and the gateway's own answers. (code: relay.pxi)

cdef enum:
    OUT_NONE = 0
    OUT_LENGTH = 1
    OUT_CHUNKED = 2
    OUT_CLOSE = 3
    COALESCE_BODY_BYTES = 16384  # response bodies up to this size share the head's write


# <- this fragment (inline in relay.pxi)
cdef bint _has_field(Http1Parser parser, int header_id) noexcept


# <- chain, steps
cdef void relay_start_local(ClientProtocol conn, Exchange ex)


# <- chain, steps
cdef void relay_finish_local(ClientProtocol conn, Exchange ex, bytes body, int status) except *


# <- upstream
cdef void relay_head(ClientProtocol conn, Exchange ex, ResponseParser rp) noexcept


# <- this fragment, chain
cdef void relay_write_head(ClientProtocol conn, Exchange ex, ResponseParser rp) except *


# <- this fragment
cdef void relay_put_fields(ClientProtocol conn, Exchange ex, ResponseParser rp)


# <- upstream
cdef void relay_body(ClientProtocol conn, Exchange ex, const char* ptr, Py_ssize_t n) noexcept


# <- this fragment, body: body bytes to the client, framed (n > 0, the connection open) (inline in
#    relay.pxi)
cdef void relay_put_body(ClientProtocol conn, Exchange ex, const char* ptr,
                         Py_ssize_t n) noexcept


# <- upstream
cdef void relay_done(ClientProtocol conn, Exchange ex) noexcept


# <- upstream
cdef void relay_tunnel_closed(ClientProtocol conn, Exchange ex) noexcept


# <- chain, protocol, request, route, steps: answer this request from the gateway; its body (if any)
#    is not read
cdef void relay_local_error(ClientProtocol conn, Exchange ex, int code,
                            unsigned int allowed) noexcept


# <- this fragment, forward, protocol, request
cdef void relay_write_error(ClientProtocol conn, Exchange ex, int code,
                            unsigned int allowed) noexcept
