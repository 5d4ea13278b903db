# policy.pxi: what a route's policy chain compiles to, and the objects Python hooks see.
#
# Each provisioned policy compiles itself (its compile_core, fastgw/policy/) into what a
# CoreChain holds: request steps (steps.pxi: compiled built-ins and Python hooks, their
# sync/async nature decided at plan time), header operations per path pattern (HeaderOps,
# applied while heads are serialised, no Python involved) and response hooks. plan.py
# collects them; a route without policies has no CoreChain at all.

from cpython.ref cimport PyObject, Py_XDECREF

import logging as _logging
import re as _re


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    # PERF: a coroutine that returns reports it here, not with a StopIteration to catch.
    PySendResult PyIter_Send(object iterator, object value, PyObject** result) except PYGEN_ERROR


cdef inline object _coroutine_step(object coroutine, bint* finished):
    """Send None into `coroutine`: its return value (finished) or what it waits on."""
    cdef PyObject* raw = NULL
    cdef PySendResult outcome = PyIter_Send(coroutine, None, &raw)
    cdef object value = <object>raw if raw != NULL else None
    Py_XDECREF(raw)
    finished[0] = outcome == PYGEN_RETURN
    return value

_policy_log = _logging.getLogger("fastgw.policy")


TEMPLATE_VARIABLES = {
    "client_ip": VAR_CLIENT_IP, "request_id": VAR_REQUEST_ID, "host": VAR_HOST,
    "method": VAR_METHOD, "path": VAR_PATH, "route": VAR_ROUTE, "consumer": VAR_CONSUMER,
}
cdef dict _HEADER_OPS = {"set": OP_SET, "add": OP_ADD, "remove": OP_REMOVE, "rename": OP_RENAME}

# Fields the gateway itself manages: no policy may set, remove or rename them. The one list:
# request_headers checks its config against it too (fastgw/policy/builtins.py).
MANAGED_FIELDS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
    "trailer", "proxy-connection", "proxy-authenticate", "proxy-authorization", "upgrade",
    "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
})
_TOKEN = _re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_VALUE = _re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


def check_field(str name, str value=None):
    """Raise ValueError unless name is a token a policy may change and value is safe."""
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {name!r}")
    if name.lower() in MANAGED_FIELDS:
        raise ValueError(f"header {name!r} is managed by the gateway")
    if value is not None and not _FIELD_VALUE.match(value):
        raise ValueError(f"invalid header value for {name!r}: control characters or CR/LF")


cdef class HeaderOps:
    """Header operations for one path pattern, in C arrays (built once per Plan).

    `ops` are objects with `op` ("set", "add", "remove" or "rename"), `name` (lowercase
    bytes), `template` (for set and add: bytes, capture indexes and TEMPLATE_VARIABLES codes,
    resolved for this pattern) and `new_name` (for rename), applied in order."""

    def __cinit__(self, ops):
        cdef int k = 0
        cdef int code
        cdef bytes name, new_name
        cdef tuple template
        ops = tuple(ops)
        self.keep = []
        self.field_ops = <_FieldOp*>malloc(max(1, len(ops)) * sizeof(_FieldOp))
        if self.field_ops == NULL:
            raise MemoryError()
        static, dynamic, emits = [], [], []
        for operation in ops:
            code = _HEADER_OPS[operation.op]
            name = operation.name
            self.keep.append(name)
            if code != OP_ADD:
                self.field_ops[k].op = code
                self.field_ops[k].name = PyBytes_AS_STRING(name)
                self.field_ops[k].name_len = PyBytes_GET_SIZE(name)
                self.field_ops[k].new_name = NULL
                self.field_ops[k].new_name_len = 0
                if code == OP_RENAME:
                    new_name = operation.new_name
                    self.keep.append(new_name)
                    self.field_ops[k].new_name = PyBytes_AS_STRING(new_name)
                    self.field_ops[k].new_name_len = PyBytes_GET_SIZE(new_name)
                self.name_lengths |= (<uint64_t>1) << (PyBytes_GET_SIZE(name) & 63)
                k += 1
            if code == OP_SET or code == OP_ADD:
                template = tuple(operation.template)
                emits.append((code, name, template))
                if all(type(part) is bytes for part in template):
                    static.append(name + b": " + b"".join(template) + b"\r\n")
                else:
                    dynamic.append((name, template))
        self.n_field_ops = k
        self.static_lines = b"".join(static)
        self.dynamic = tuple(dynamic)
        self.emits = tuple(emits)

    def __dealloc__(self):
        free(self.field_ops)

    cdef inline _FieldOp* find(self, const char* name, Py_ssize_t n) noexcept:
        cdef int k
        if not (self.name_lengths >> (n & 63)) & 1:
            return NULL
        for k in range(self.n_field_ops):
            if (self.field_ops[k].name_len == n
                    and _name_is_raw(name, n, self.field_ops[k].name)):
                return &self.field_ops[k]
        return NULL


cdef object _checked_ops(object ops):
    """A chain's operations of one side: None, one HeaderOps for every pattern, or
    {pattern_id: HeaderOps}."""
    if ops is None or type(ops) is HeaderOps:
        return ops
    if type(ops) is not dict or not all(type(value) is HeaderOps for value in ops.values()):
        raise TypeError("header operations are a HeaderOps, {pattern_id: HeaderOps} or None")
    return ops


cdef inline HeaderOps _ops_for(object ops, int pattern_id):
    if ops is None:
        return None
    if type(ops) is HeaderOps:
        return <HeaderOps>ops
    return <HeaderOps>(<dict>ops).get(pattern_id)


cdef class CoreChain:
    """A route's compiled policy chain: what its policies' compile_core gave, in order."""

    def __init__(self, bint disabled, steps=(), request_ops=None, response_ops=None,
                 response_hooks=(), int64_t body_limit=0):
        self.disabled = disabled
        self.body_limit = body_limit
        self.steps = tuple(steps)
        for step in self.steps:
            if not isinstance(step, CoreStep):
                raise TypeError(f"a chain step is one of the core's CoreStep kinds, got {step!r}")
            if (<CoreStep>step).reads_request:
                self.python_hooks = True
        self.request_ops = _checked_ops(request_ops)
        self.response_ops = _checked_ops(response_ops)
        self.response_hooks = tuple(response_hooks)
        for hook in self.response_hooks:
            if type(hook) is not ResponseHook:
                raise TypeError(f"a response hook is a ResponseHook, got {hook!r}")


cdef class Headers:
    """Case-insensitive, read-only view of header fields: get, getall, `in`, iteration."""

    def __init__(self, fields):
        self.fields = list(fields)

    def get(self, str name, default=None):
        cdef str lower = name.lower()
        for field_name, value in self.fields:
            if field_name.lower() == lower:
                return value
        return default

    def getall(self, str name):
        cdef str lower = name.lower()
        return [value for field_name, value in self.fields if field_name.lower() == lower]

    def __getitem__(self, str name):
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self):
        return iter(self.fields)

    def items(self):
        return list(self.fields)

    def keys(self):
        return [name for name, _ in self.fields]

    def __len__(self):
        return len(self.fields)

    def __repr__(self):
        return f"Headers({self.fields!r})"


cdef list _field_list(Http1Parser parser, bint forwarded_only):
    cdef int i
    cdef list fields = []
    for i in range(parser.n_headers):
        if forwarded_only and parser.hdr_flags[i] & HF_DROP:
            continue
        fields.append((
            PyBytes_FromStringAndSize(parser.head + parser.hdr_name_off[i],
                                      parser.hdr_name_len[i]).decode("latin-1"),
            PyBytes_FromStringAndSize(parser.head + parser.hdr_value_off[i],
                                      parser.hdr_value_len[i]).decode("latin-1"),
        ))
    return fields


cdef class HeaderChanges:
    """set/add/remove requested by Python hooks, applied after the compiled operations."""

    def __cinit__(self):
        self.changes = []

    cdef void record(self, int op, str name, str value) except *:
        cdef bytes lower
        check_field(name, value)
        lower = name.lower().encode("latin-1")
        if op != OP_ADD:
            # A later set or remove replaces what earlier hooks set or added for this name.
            self.changes = [change for change in self.changes if change[1] != lower]
        self.changes.append((op, lower, name.encode("latin-1"),
                             None if value is None else value.encode("latin-1")))

    cdef bint hides(self, const char* name, Py_ssize_t n):
        """True when a set or remove by a hook replaces fields of this name."""
        for op, lower, _, _ in self.changes:
            if (op == OP_SET or op == OP_REMOVE) and _name_is(name, n, <bytes>lower):
                return True
        return False


cdef inline bint _name_is(const char* name, Py_ssize_t n, bytes lower) noexcept:
    """Case-insensitive compare of a received field name with a lowercase name."""
    if n != PyBytes_GET_SIZE(lower):
        return False
    return _name_is_raw(name, n, PyBytes_AS_STRING(lower))


cdef inline bint _name_is_raw(const char* name, Py_ssize_t n, const char* other) noexcept:
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = <unsigned char>name[i]
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned char>other[i]:
            return False
    return True


@cython.freelist(32)
cdef class PolicyRequest:
    """The request as a Python policy sees it (see the policy contract in the README)."""

    def __init__(self):
        raise TypeError("PolicyRequest objects are made by the gateway")

    cdef ClientProtocol attached(self):
        if self.conn is None:
            raise RuntimeError("this request is finished; keep what you need in scratch")
        return self.conn

    @property
    def request_id(self):
        if self._request_id is None:
            self._request_id = self.request_id_bytes.decode("ascii")
        return self._request_id

    def record_rate_limit(self, bint allowed, int64_t limit=-1, int64_t remaining=0,
                          int64_t reset=0, int64_t retry_after=0, str headers="none"):
        """Count a rate limit decision a Python policy made (metrics, access log), as the
        core counts its own. With `limit` >= 0 the core also adds the RateLimit fields
        (`headers`: draft, legacy, both or none; Retry-After when refused) to every
        response of the exchange, the policy's own answer included."""
        cdef ClientProtocol conn = self.attached()
        cdef RateDecision d
        conn.ex.rl_result = RL_ALLOWED if allowed else RL_LIMITED
        if limit < 0:
            return
        d.allowed = allowed
        d.limit = limit
        d.remaining = remaining
        d.reset_s = reset
        d.retry_after_s = max(1, retry_after)
        d.wait_ns = 0
        fields = _rate_limit_fields(_RL_HEADER_MODES[headers], &d)
        conn.ex.extra_head = fields if conn.ex.extra_head is None else conn.ex.extra_head + fields

    @property
    def consumer(self):
        """Who the client is, as an authentication policy earlier in the chain said: a
        fastgw.policy.Consumer (or whatever a Python policy set), None until then."""
        return self.attached().ex.consumer

    @consumer.setter
    def consumer(self, value):
        cdef Exchange ex = self.attached().ex
        ex.consumer = value
        ex.auth_touched = True
        groups = getattr(value, "group_set", None)
        ex.auth_groups = groups if type(groups) is frozenset else None

    @property
    def claims(self):
        """What the client proved (a token's claims, a dict), or None."""
        return self.attached().ex.claims

    @claims.setter
    def claims(self, value):
        cdef Exchange ex = self.attached().ex
        ex.claims = value
        ex.auth_touched = True

    @property
    def authenticated(self):
        """Whether an authentication policy earlier in the chain accepted the client (the
        anonymous consumer counts: a policy fell back to it)."""
        return self.attached().ex.auth_result is not None and self.attached().ex.auth_code == 0

    def authenticate(self, consumer, claims=None, str by not None="python", str scope=None):
        """Accept the client as `consumer` (a Consumer whose identity fields then go
        upstream, or None for a token that maps to no consumer) with `claims`; `by` names
        the policy for the access log, `scope` goes upstream as X-Authenticated-Scope."""
        cdef Exchange ex = self.attached().ex
        cdef bytes extra = None
        if scope is not None and _identity_scope_name is not None:
            check_field(_identity_scope_name, scope)
            extra = (_identity_scope_name.encode("latin-1") + b": "
                     + scope.encode("latin-1") + b"\r\n")
        auth_succeeded(ex, consumer, claims, by, extra)

    def auth_failed(self, str code not None, str challenge=None, anonymous=None,
                    bint fallthrough=False):
        """Note that this policy could not authenticate the client, with the stable `code`
        (credentials_missing, credentials_invalid, token_expired, ...) and the
        WWW-Authenticate `challenge` it would send. Returns None when the chain goes on (a
        later authentication policy may still accept the client: `fallthrough`, or the
        anonymous consumer of a failed policy was taken), else the Response to answer with."""
        cdef ClientProtocol conn = self.attached()
        cdef int e = AUTH_FAILURES.get(code, 0)
        if e == 0:
            raise ValueError(f"not an authentication failure code: {code!r} (one of "
                             f"{', '.join(sorted(AUTH_FAILURES))})")
        if challenge is not None:
            check_field("www-authenticate", challenge)
        if auth_failed(conn.ex, e, challenge, anonymous, fallthrough) == AUTH_GO_ON:
            return None
        return _auth_response(conn.ex)

    def add_local_header(self, str name, str value):
        """A field for the gateway's own answer to this request, should it answer itself
        (a later policy's 401 or 429, a 502): what an upstream response would have got
        from on_response hooks, e.g. CORS fields so a browser may read the error."""
        cdef Exchange ex = self.attached().ex
        cdef bytes field
        check_field(name, value)
        if name.lower() in ("content-type", "content-length", "www-authenticate"):
            raise ValueError(f"header {name!r} is set by the answer itself")
        field = name.lower().encode("latin-1") + b": " + value.encode("latin-1") + b"\r\n"
        ex.local_head = field if ex.local_head is None else ex.local_head + field

    @property
    def scratch(self):
        """A dict for this request only: hooks pass data to later hooks through it."""
        if self._scratch is None:
            self._scratch = {}
        return self._scratch

    cdef HeaderChanges changes(self):
        if self.upstream_changes is None:
            self.upstream_changes = HeaderChanges()
        return self.upstream_changes

    @property
    def method(self):
        cdef RequestParser p
        if self._method is None:
            p = self.attached().parser
            self._method = PyBytes_FromStringAndSize(p.head + p.method_off,
                                                     p.method_len).decode("ascii")
        return self._method

    @property
    def path(self):
        cdef RequestParser p
        if self._path is None:
            p = self.attached().parser
            self._path = PyBytes_FromStringAndSize(p.path, p.path_len).decode("latin-1")
        return self._path

    @property
    def query(self):
        cdef RequestParser p
        if self._query is None:
            p = self.attached().parser
            self._query = (PyBytes_FromStringAndSize(p.head + p.query_off, p.query_len)
                           .decode("latin-1") if p.has_query else "")
        return self._query or None

    @property
    def params(self):
        cdef ClientProtocol conn
        cdef int i
        if self._params is None:
            conn = self.attached()
            names = conn.plan.router.pattern_params(conn.ex.match.pattern_id)
            self._params = {
                names[i]: PyBytes_FromStringAndSize(conn.parser.path + conn.ex.match.param_off[i],
                                                    conn.ex.match.param_len[i]).decode("latin-1")
                for i in range(conn.ex.match.n_params)
            }
        return self._params

    @property
    def headers(self):
        if self._headers is None:
            self._headers = Headers(_field_list(self.attached().parser, False))
        return self._headers

    @property
    def client_ip(self):
        cdef ClientProtocol conn
        if self._client_ip is None:
            conn = self.attached()
            self._client_ip = request_client_ip(conn, conn.ex).decode("ascii")
        return self._client_ip

    def set_header(self, str name, str value):
        """Set an upstream request header (replacing the client's fields of that name)."""
        self.changes().record(OP_SET, name, value)

    def add_header(self, str name, str value):
        self.changes().record(OP_ADD, name, value)

    def remove_header(self, str name):
        self.changes().record(OP_REMOVE, name, None)

    def rewrite_path(self, str path):
        """Send this path upstream instead (the query is kept)."""
        if not path.startswith("/") or any(c in path for c in "?# ") or not path.isprintable():
            raise ValueError(f"invalid path {path!r}: must start with '/', no '?', '#', "
                             "spaces or control characters")
        self.new_path = path.encode("utf-8")

    def set_upstream(self, str name):
        """Send this request to another upstream of the configuration."""
        self.new_pool = <UpstreamPool>self.attached().plan.pools[name]

    def __repr__(self):
        return f"<PolicyRequest {self.request_id_bytes.decode()} route={self.route!r}>"


cdef PolicyRequest _new_policy_request(ClientProtocol conn):
    cdef PolicyRequest request = PolicyRequest.__new__(PolicyRequest)
    request.conn = conn
    request.route = conn.ex.action.name
    request.request_id_bytes = conn.ex.request_id
    return request


# The upstream field that carries a token's scope (identity_headers.scope), set with the plan.
cdef str _identity_scope_name = "x-authenticated-scope"


def set_identity_scope_header(name):
    """The field name `PolicyRequest.authenticate(scope=...)` sends the scope in (None: none)."""
    global _identity_scope_name
    _identity_scope_name = None if name is None else str(name).lower()


# An auth failure's rank: a presented but wrong credential says more than a missing one.
cdef inline int _auth_rank(int code) noexcept:
    if code == E_CREDENTIALS_MISSING:
        return 1
    if code == E_AUTH_UNAVAILABLE:
        return 3
    return 2


cdef void auth_succeeded(Exchange ex, object consumer, object claims, str by,
                         bytes extra_head) except *:
    cdef bytes head = None
    ex.auth_touched = True
    ex.consumer = consumer
    ex.claims = claims
    ex.auth_code = 0
    ex.auth_result = by
    ex.auth_groups = None
    if consumer is not None:
        head = getattr(consumer, "identity_head", None)
        if head is not None and type(head) is not bytes:
            raise TypeError("Consumer.identity_head is bytes")
        groups = getattr(consumer, "group_set", None)
        if type(groups) is frozenset:
            ex.auth_groups = groups
    if extra_head is not None:
        head = extra_head if head is None else head + extra_head
    ex.identity_head = head


cdef inline void auth_accept(Exchange ex, object consumer, bytes head, frozenset groups,
                             str by) noexcept:
    ex.auth_touched = True
    ex.consumer = consumer
    ex.auth_code = 0
    ex.auth_result = by
    ex.auth_groups = groups
    ex.identity_head = head


cdef int auth_failed(Exchange ex, int code, str challenge, object anonymous,
                     bint fallthrough) except -1:
    ex.auth_touched = True
    if ex.auth_code == 0 or _auth_rank(code) > _auth_rank(ex.auth_code):
        ex.auth_code = code
    if challenge is not None:
        if ex.auth_challenges is None:
            ex.auth_challenges = [challenge]
        elif challenge not in ex.auth_challenges:
            ex.auth_challenges.append(challenge)
    if ex.auth_anonymous is None and anonymous is not None:
        ex.auth_anonymous = anonymous
    if fallthrough:
        return AUTH_GO_ON
    if ex.auth_anonymous is not None and ex.auth_code != E_AUTH_UNAVAILABLE:
        # Every policy failed and one names an anonymous consumer: the request goes on as it.
        ex.consumer = ex.auth_anonymous
        ex.claims = None
        ex.identity_head = getattr(ex.auth_anonymous, "anonymous_head", None)
        groups = getattr(ex.auth_anonymous, "group_set", None)
        ex.auth_groups = groups if type(groups) is frozenset else None
        ex.auth_result = "anonymous"
        ex.auth_code = 0
        return AUTH_GO_ON
    ex.auth_result = ERROR_TABLE[ex.auth_code][1]
    return AUTH_REFUSE


cdef void auth_refuse(ClientProtocol conn, Exchange ex) except *:
    cdef bytes fields
    if ex.auth_challenges and ERROR_TABLE[ex.auth_code][0] == 401:
        fields = (b"www-authenticate: " + ", ".join(ex.auth_challenges).encode("latin-1")
                  + b"\r\n")
        ex.extra_head = fields if ex.extra_head is None else ex.extra_head + fields
    relay_local_error(conn, ex, ex.auth_code, 0)


cdef object _auth_response(Exchange ex):
    """The Response a Python authentication policy answers a refusal with."""
    from fastgw.policy.base import Response
    status, code, message = ERROR_TABLE[ex.auth_code]
    headers = None
    if ex.auth_challenges and status == 401:
        headers = {"www-authenticate": ", ".join(ex.auth_challenges)}
    return Response.error(status, code, message, ex.request_id.decode("ascii"), headers)


cdef class ResponseView:
    """The upstream's response as a response hook sees it: status, headers, changes."""

    def __init__(self):
        raise TypeError("ResponseView objects are made by the gateway")

    @property
    def headers(self):
        if self._headers is None:
            if self.parser is None:
                raise RuntimeError("this response head is gone; read headers in the hook")
            self._headers = Headers(_field_list(self.parser, True))
        return self._headers

    cdef HeaderChanges record(self):
        if self.changes is None:
            self.changes = HeaderChanges()
        return self.changes

    def set_header(self, str name, str value):
        self.record().record(OP_SET, name, value)

    def add_header(self, str name, str value):
        self.record().record(OP_ADD, name, value)

    def remove_header(self, str name):
        self.record().record(OP_REMOVE, name, None)


cdef ResponseView _new_response_view(ResponseParser rp):
    cdef ResponseView view = ResponseView.__new__(ResponseView)
    view.status = rp.status
    view.parser = rp
    return view


async def _resume_hook(ClientProtocol conn, object coro, object blocked_on, bint response,
                       uint64_t serial):
    """Finish an async hook that suspended on its first step (what a Task would do)."""
    try:
        if blocked_on is None:
            await _asyncio.sleep(0)
        else:
            # We took the coroutine's first yield ourselves: undo what Task.__step would.
            blocked_on._asyncio_future_blocking = False
            try:
                await blocked_on
            except BaseException:
                pass                  # the hook sees the outcome itself when resumed
        result = await coro
    except _asyncio.CancelledError:
        coro.close()
        raise
    except BaseException as exc:
        chain_hook_done(conn, conn.ex, exc, None, response, serial)
        return
    chain_hook_done(conn, conn.ex, None, result, response, serial)


cdef bytes _percent_encode_unsafe(const char* data, Py_ssize_t n):
    """Bytes outside the URI characters become %XX, so no CR, LF or space can enter."""
    cdef HeadBuffer out = HeadBuffer()
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef char escape[3]
    for i in range(n):
        c = <unsigned char>data[i]
        if c <= 0x20 or c >= 0x7f or c in b'"<>\\^`{|}':
            escape[0] = b"%"
            escape[1] = b"0123456789ABCDEF"[c >> 4]
            escape[2] = b"0123456789ABCDEF"[c & 15]
            out.put(escape, 3)
        else:
            out.put(data + i, 1)
    return out.take()
