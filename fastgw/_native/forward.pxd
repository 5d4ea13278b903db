# forward.pxd: stage upstream exchange: the upstream request head, the connection, the body,
# connect failures, resets, back-pressure. (code: forward.pxi)

cdef enum:
    CONNECT_DEADLINE_SLACK = 1   # s past a connect timeout before the deadline backs it up


# <- chain, request: every request step passed: pick the target, serialise the head, go
cdef void forward_request(ClientProtocol conn, Exchange ex) except *


# <- this fragment, steps
cdef void forward_put_template(ClientProtocol conn, Exchange ex, tuple parts,
                               bint for_url) except *


# <- this fragment, relay: forwarded fields of `parser` with the chain's operations, then hook
#    changes
cdef void forward_put_fields(ClientProtocol conn, Exchange ex, Http1Parser parser,
                             HeaderOps ops, HeaderChanges changes, bint request) except *


# <- this fragment
cdef void forward_attach(ClientProtocol conn, Exchange ex)


# <- this fragment
cdef void forward_bind(ClientProtocol conn, Exchange ex, UpstreamConnection upc)


# <- upstream
cdef void forward_connected(ClientProtocol conn, Exchange ex, UpstreamConnection upc) noexcept


# <- upstream
cdef void forward_connect_failed(ClientProtocol conn, Exchange ex, int code) noexcept


# <- upstream: the upstream closed before sending a byte of the response
cdef void forward_lost(ClientProtocol conn, Exchange ex, bint reused) noexcept


# <- this fragment, chain, protocol, relay, upstream
cdef void forward_error(ClientProtocol conn, Exchange ex, int code) noexcept


# <- upstream: the upstream's write buffer crossed its high (full) or low water mark
cdef void forward_full(ClientProtocol conn, Exchange ex, bint full) noexcept


# <- upstream
cdef void forward_touch(ClientProtocol conn, Exchange ex) noexcept


# <- this fragment, protocol
cdef void forward_flush(ClientProtocol conn, Exchange ex) noexcept


# <- this fragment
cdef bytes forward_build_head(ClientProtocol conn, Exchange ex)


# <- this fragment (forward_put_template): the $consumer template value
cdef bytes forward_consumer_value(Exchange ex)
