# errors.pxd: where an unexpected exception inside the core goes (code: errors.pxi).
#
# Every callback boundary of the two protocols and every step the core runs catches what
# escapes it and calls _internal_error with the W_* place it happened: the traceback goes to
# the "fastgw" logger (rate-limited) and fastgw_internal_errors_total{where} counts it.
# Answering the client is ClientProtocol.fail_internal's job (protocol).

# <- the callers of _internal_error name their place; INTERNAL_ERROR_WHERE (errors.pxi) holds
#    the label of each
cdef enum:
    W_CLIENT = 0        # a client connection callback: reading a request, writing to it
    W_CHAIN = 1         # a policy step run by the core
    W_HOOK = 2          # resuming a chain after an async hook, a delay or a queue
    W_UPSTREAM = 3      # an upstream connection callback: connecting, relaying a response
    W_TIMER = 4         # the engine tick: timeouts, idle sweeps, access log flushes
    W_RECORD = 5        # counting an exchange and writing its access log line
    _N_WHERE = 6
    INTERNAL_LOG_PER_SECOND = 10    # tracebacks a second; the rest are only counted


# <- ClientProtocol, Engine (protocol), UpstreamConnection (upstream), AccessLog.tick: count
#    an unexpected exception and log it with its traceback (rate-limited)
cdef void _internal_error(int where, object exc, bytes request_id) noexcept
# <- Engine._tick (protocol): say how many errors the rate limit left out of the log
#    (inline in errors.pxi)
cdef void _tick_internal_errors() noexcept
