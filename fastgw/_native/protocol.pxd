# protocol.pxd: one client connection: asyncio callbacks, the connection state machine, the write
# queue, flow control, timeouts, failing. The stages below run on its Exchange. (code: protocol.pxi)

cdef enum ConnState:
    CS_IDLE = 0                 # between requests (keep-alive)
    CS_HEAD = 1                 # receiving a request head
    CS_EXCHANGE = 2             # request routed; exchange with the upstream running
    CS_TUNNEL = 3               # after 101: bytes both ways
    CS_PROXY = 4                # a proxy_protocol listener: the PROXY header comes first


cdef enum:
    BLOCK_UPSTREAM_FULL = 1     # the upstream's write buffer is above its high-water mark
    BLOCK_PENDING = 2           # unconsumed client bytes wait for the current exchange
    WAITING_READ_BYTES = 65536   # read ahead of a queued or parked request, at most


cdef class ClientProtocol:
    cdef Engine engine
    cdef CorePlan plan             # the plan of the current exchange (read at its head)
    cdef object transport
    cdef RequestParser parser      # made with the exchange, when the first request begins
    cdef Exchange ex               # None until the first request begins; then reused
    cdef bytes buf                 # client bytes not yet consumed by the parser
    cdef Py_ssize_t buf_off
    cdef str peer_ip
    cdef bytes peer_ip_bytes
    cdef bint peer_trusted
    cdef bint proxy_listener       # a PROXY header may (trusted peer: must) come first
    cdef int state
    cdef double deadline
    cdef bint closed
    cdef bint client_eof
    cdef int read_blocks
    cdef bint writing_paused
    cdef double write_paused_at
    cdef list out                  # pending writes to the client, flushed in one writelines
    cdef bint head_pending         # a response head (+ small body) is still in _head_buffer
    cdef int64_t sent              # bytes handed to the transport, connection lifetime
    cdef int64_t sent_mark         # `sent` (plus pending) when the last exchange ended

    # <- this fragment, chain, forward: pull parser events until the input runs out or the exchange
    #    must wait
    cdef void process(self) noexcept
    # <- this fragment: the start of a connection on a proxy_protocol listener
    cdef void on_proxy_bytes(self, bytes data) noexcept
    # <- this fragment: the exchange waits for a concurrency place or a rate limit delay
    cdef inline bint waiting(self) noexcept
    # <- forward, relay, request: the response is complete; wait for the next request or close
    cdef void end_exchange(self) noexcept
    # <- this fragment, relay: move a pending response head out of the shared buffer before anyone
    #    reuses it
    cdef int settle(self) except -1
    # <- this fragment, upstream
    cdef inline void count_sent(self, Py_ssize_t n) noexcept
    # <- this fragment, record
    cdef Py_ssize_t pending_out(self) except -1
    # <- this fragment, request, chain, forward, relay, upstream: hand the pending writes to the
    #    transport in one call
    cdef void flush(self) noexcept
    # <- this fragment, body, chain, engine, forward, relay, request, upstream: a bug in the
    #    gateway: report it, fail this one connection, never the process
    cdef void fail_internal(self, int where, object exc) noexcept
    # <- this fragment, engine, forward, relay, request
    cdef void close_transport(self) noexcept
    # <- this fragment, engine, forward, relay, request
    cdef void abort_transport(self) noexcept
    # <- this fragment, forward, relay
    cdef void block_reading(self, int reason, bint on) noexcept
    # <- engine
    cdef int on_timeout(self) except -1
