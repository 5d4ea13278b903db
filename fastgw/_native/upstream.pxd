# upstream.pxd: upstream targets (with their health flag and in-flight count), the pools and the
# selectors that choose a target, and the protocol of one upstream connection. (code: upstream.pxi)

cdef class UpstreamTarget:
    cdef readonly str host
    cdef readonly int port
    cdef readonly bytes host_header      # Host sent upstream unless the route preserves it
    cdef list idle                       # UpstreamConnection, most recently used last
    cdef public int max_idle
    cdef public double idle_timeout
    cdef readonly int open_connections
    cdef readonly int64_t connects       # connections ever opened (tests count reuse)
    cdef readonly int failures           # connection attempts failed in a row (passive health)
    cdef readonly bint healthy           # False: selectors pass it over (set_healthy)
    cdef readonly int in_flight          # exchanges given this target and not yet ended
    cdef readonly bytes label            # "host:port" for logs and metrics
    cdef bytes log_field                 # ',"target":"host:port"' for the access log

    # <- forward (forward_attach): an idle pooled connection that is still open, or None
    cdef UpstreamConnection acquire(self)
    # <- this fragment, forward
    cdef void release(self, UpstreamConnection conn) noexcept
    # <- this fragment
    cdef void forget(self, UpstreamConnection conn) noexcept
    # <- engine: close idle connections older than idle_timeout (oldest are first in the list)
    cdef void sweep(self, double now) noexcept


cdef class TargetSelector:
    cdef bint bound                      # serves a pool (set_selector)

    # <- this fragment, pick
    cdef UpstreamTarget pick(self, UpstreamPool pool, ClientProtocol conn, Exchange ex)


@cython.final
cdef class SmoothWeightedRoundRobin(TargetSelector):
    cdef int[64] current                 # each target's current weight, by pool index

    # <- this fragment: one round: every candidate gains its weight, the largest wins and pays the
    #    total (the first index on a tie)
    cdef int turn(self, UpstreamPool pool, bint up_only) noexcept


@cython.final
cdef class SelectionRequest:
    cdef ClientProtocol conn             # None outside the select() call
    cdef Exchange ex

    # <- this fragment
    cdef RequestParser parser(self)


@cython.final
cdef class UpstreamPool:
    cdef readonly str name
    cdef readonly tuple targets
    cdef readonly TargetSelector selector
    cdef int metric_slot                 # this upstream in the engine's CoreMetrics
    cdef bytes log_field                 # ',"upstream":"NAME"' for the access log
    cdef int[64] weights
    cdef int count


cdef class UpstreamConnection:
    cdef UpstreamTarget target
    cdef object transport
    cdef ResponseParser parser
    cdef ClientProtocol client
    cdef bint alive
    cdef bint reused
    cdef bint got_bytes          # any response byte for the current exchange
    cdef bint tunnel
    cdef bint reading_paused
    cdef bint held                 # an async response hook holds the response head
    cdef bytes held_data           # bytes of that read not yet parsed
    cdef Py_ssize_t held_off
    cdef bint lost_while_held
    cdef double idle_since

    # <- forward (forward_bind): the connection serves this client exchange now
    cdef void start(self, ClientProtocol client, int method_id) noexcept
    # <- this fragment (the pool, an unusable connection), protocol (a tunnel timed out)
    cdef void close(self) noexcept
    # <- this fragment, forward, protocol, request
    cdef void abort(self) noexcept
    # <- chain: the response head went out after an async hook: parse what arrived meanwhile
    cdef void release_hold(self) noexcept
    # <- this fragment
    cdef void feed(self, bytes data, Py_ssize_t off) noexcept
    # <- this fragment
    cdef void finish_exchange(self, ClientProtocol client, bint clean) noexcept
    # <- this fragment
    cdef void on_lost(self) noexcept
    # <- this fragment, forward, protocol
    cdef void pause_reading(self, bint paused) noexcept
