# policy.pxd: the compiled chain of a route (header operations, steps, response hooks) and what
# Python policies see of a request and a response. (code: policy.pxi)

# <- chain, steps: send None into `coroutine`: its return value (finished) or what it waits on
#    (inline in policy.pxi)
cdef object _coroutine_step(object coroutine, bint* finished)


cdef enum:
    OP_SET = 1
    OP_ADD = 2
    OP_REMOVE = 3
    OP_RENAME = 4
    # template variables are stored as negative ints; params as their capture index (>= 0)
    VAR_CLIENT_IP = -1
    VAR_REQUEST_ID = -2
    VAR_HOST = -3
    VAR_METHOD = -4
    VAR_PATH = -5
    VAR_ROUTE = -6
    VAR_CONSUMER = -7           # the authenticated consumer's id (empty without one)
    HOOK_STEP_DONE = 1            # every step ran: go upstream
    HOOK_STEP_ANSWERED = 2        # a step answered (or failed); the exchange is local now
    HOOK_STEP_SUSPENDED = 3       # a step waits (a hook, a delay, a queue), then resumes it
    AUTH_GO_ON = 1                # auth_failed: the chain goes on
    AUTH_REFUSE = 2               # auth_failed: answer the failure (auth_refuse)


cdef struct _FieldOp:
    int op                    # OP_REMOVE, OP_RENAME or OP_SET (they hide received fields)
    const char* name          # lowercase
    Py_ssize_t name_len
    const char* new_name      # OP_RENAME
    Py_ssize_t new_name_len


cdef class HeaderOps:
    cdef _FieldOp* field_ops
    cdef int n_field_ops
    cdef uint64_t name_lengths     # bit (length & 63) of every name above: a quick miss
    cdef bytes static_lines        # "name: value\r\n" of set/add with a literal value
    cdef tuple dynamic             # ((name, template), ...) set/add with variables
    cdef tuple emits               # ((op, name, template), ...) every set/add, in order
    cdef list keep                 # the bytes the C pointers point into

    # <- forward (forward_put_fields): the operation for a received field name, or NULL
    cdef inline _FieldOp* find(self, const char* name, Py_ssize_t n) noexcept


# <- this fragment: a chain's operations of one side: None, one HeaderOps for every pattern, or
#    {pattern_id: HeaderOps}
cdef object _checked_ops(object ops)


# <- forward, relay (inline in policy.pxi)
cdef HeaderOps _ops_for(object ops, int pattern_id)


cdef class CoreChain:
    cdef readonly bint disabled
    cdef readonly tuple steps        # (CoreStep, ...) in chain order
    cdef readonly object request_ops   # HeaderOps for every pattern, {pattern_id: HeaderOps}
    cdef readonly object response_ops  # or None
    cdef readonly tuple response_hooks   # (ResponseHook, ...) in chain order
    cdef readonly bint python_hooks  # a request step runs Python that reads the request
    cdef readonly int64_t body_limit  # read this much of the body before the steps; 0: stream


cdef class Headers:
    cdef list fields                 # [(name, value)] as received


# <- this fragment, body
cdef list _field_list(Http1Parser parser, bint forwarded_only)


cdef class HeaderChanges:
    cdef list changes                # [(op, lowercase name bytes, name bytes, value bytes)]

    # <- this fragment (PolicyRequest and ResponseView's set/add/remove_header): note a change
    cdef void record(self, int op, str name, str value) except *
    # <- forward: true when a set or remove by a hook replaces fields of this name
    cdef bint hides(self, const char* name, Py_ssize_t n)


# <- this fragment, body, upstream: case-insensitive compare of a received field name with a
#    lowercase name (inline in policy.pxi)
cdef bint _name_is(const char* name, Py_ssize_t n, bytes lower) noexcept


# <- this fragment (inline in policy.pxi)
cdef bint _name_is_raw(const char* name, Py_ssize_t n, const char* other) noexcept


cdef class PolicyRequest:
    cdef ClientProtocol conn          # None once the exchange is over
    cdef readonly str route
    cdef bytes request_id_bytes
    cdef str _request_id
    cdef dict _scratch
    cdef HeaderChanges upstream_changes  # made on the first change (PERF: most hooks make none)
    cdef bytes new_path
    cdef UpstreamPool new_pool
    cdef object _method, _path, _query, _params, _headers, _client_ip
    cdef readonly bytes body          # the request body when the chain asked for it

    # <- this fragment
    cdef ClientProtocol attached(self)
    # <- this fragment
    cdef HeaderChanges changes(self)


# <- chain
cdef PolicyRequest _new_policy_request(ClientProtocol conn)


# <- steps, this fragment (PolicyRequest.authenticated): the request is authenticated as
#    `consumer` (a Consumer: its identity fields go upstream) with `claims`, by `by`
cdef void auth_succeeded(Exchange ex, object consumer, object claims, str by,
                         bytes extra_head) except *


# <- steps (KeyAuthStep): auth_succeeded with the consumer's fields looked up at plan time
cdef inline void auth_accept(Exchange ex, object consumer, bytes head, frozenset groups,
                             str by) noexcept


# <- steps, this fragment (PolicyRequest.auth_failed): note an authentication failure; the
#    outcome: AUTH_GO_ON (a later policy may still authenticate, or the anonymous consumer
#    was taken) or AUTH_REFUSE (answer ex.auth_code with the challenges)
cdef int auth_failed(Exchange ex, int code, str challenge, object anonymous,
                     bint fallthrough) except -1


# <- steps: answer the failure auth_failed decided on: 401/403/503 with WWW-Authenticate
cdef void auth_refuse(ClientProtocol conn, Exchange ex) except *


cdef class ResponseView:
    cdef readonly int status
    cdef ResponseParser parser       # None once the response head went out
    cdef Headers _headers
    cdef HeaderChanges changes       # made on the first change

    # <- this fragment (set/add/remove_header): the response's changes, made on the first one
    cdef HeaderChanges record(self)


# <- relay
cdef ResponseView _new_response_view(ResponseParser rp)


# <- forward: bytes outside the URI characters become %XX, so no CR, LF or space can enter
cdef bytes _percent_encode_unsafe(const char* data, Py_ssize_t n)
