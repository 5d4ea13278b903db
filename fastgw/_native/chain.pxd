# chain.pxd: stage chain: a route's request steps run in order, their answers, hooks. (code:
# chain.pxi)

# <- request: the route has a chain: run its request steps now, or once the body a policy reads is
#    whole
cdef bint chain_start(ClientProtocol conn, Exchange ex, RequestParser p) except *


# <- this fragment, request: run the chain's request steps from `start` (steps.pxi): each one lets
#    the next run, answers, or waits
cdef int chain_run(ClientProtocol conn, Exchange ex, Py_ssize_t start) except -1


# <- policy, protocol: an async hook that had to wait is finished: carry on where the chain stopped
cdef void chain_hook_done(ClientProtocol conn, Exchange ex, object exc, object result,
                          bint response, uint64_t serial) noexcept


# <- protocol
cdef void chain_cancel(ClientProtocol conn, Exchange ex) noexcept


# <- this fragment
cdef void chain_log_failure(ClientProtocol conn, Exchange ex, object exc)


# <- this fragment, steps
cdef void chain_failed(ClientProtocol conn, Exchange ex, object exc)


# <- this fragment, steps: a hook returned a Response: send it instead of going upstream
cdef void chain_answer_policy(ClientProtocol conn, Exchange ex, object response) except *


# <- this fragment, relay: run response hooks from `start`; False when one suspended or failed
cdef bint chain_response_hooks(ClientProtocol conn, Exchange ex, Py_ssize_t start) except *


# <- steps: a limiter's key for this request, built in _key_buffer: the key sources joined by NUL,
#    each missing one replaced by the fallback
cdef int chain_build_key(ClientProtocol conn, Exchange ex, tuple key_kinds, int fallback) except -1


# <- this fragment, protocol
cdef void chain_leave_queue(ClientProtocol conn, Exchange ex) noexcept


# <- record: the exchange is over: give each concurrency place to the next waiter, if any
cdef void chain_release_held(ClientProtocol conn, Exchange ex) noexcept


# <- this fragment: append one key source's bytes; False when the request does not have it
cdef bint chain_put_key(ClientProtocol conn, Exchange ex, HeadBuffer kb, int kind,
                        object arg) except *
