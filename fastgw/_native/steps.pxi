# steps.pxi: the compiled request steps of a chain, one class per kind.
#
# A policy's compile_core (fastgw/policy/) makes these objects at plan time; a CoreChain holds
# them in chain order and chain_run calls each one's run(), a C vtable call: the chain has no
# kind codes to dispatch on. run() returns HOOK_STEP_DONE to let the next step run,
# HOOK_STEP_ANSWERED when the exchange was answered here (or failed: a policy's failure is
# answered as policy_error), HOOK_STEP_SUSPENDED when it waits; then it has set
# ex.hook_index to the next step and arranged for chain_hook_done (or ClientProtocol._wake)
# to carry on from there. A new kind of compiled step is one subclass here, and the policy
# class whose compile_core makes it.


cdef class CoreStep:
    """One compiled request step of a route's chain; the core's subclasses below are the
    kinds there are."""

    def __cinit__(self, *args, **kwargs):
        # Only the core's own subclasses have a run(): a class made in Python has none.
        if type(self) is CoreStep or type(self).__module__ != __name__:
            raise TypeError("a kind of CoreStep is a subclass in the core (fastgw/_native/"
                            "steps.pxi); a Python policy compiles to SyncHookStep or "
                            "AsyncHookStep")

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        raise NotImplementedError


@cython.final
cdef class SyncHookStep(CoreStep):
    """A Python policy's `def on_request`, called in place."""

    def __init__(self, hook):
        if not callable(hook):
            raise TypeError(f"a hook is callable, got {hook!r}")
        self.hook = hook
        self.reads_request = True

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        try:
            result = self.hook(ex.preq)
        except BaseException as exc:
            chain_failed(conn, ex, exc)
            return HOOK_STEP_ANSWERED
        if result is not None:
            chain_answer_policy(conn, ex, result)
            return HOOK_STEP_ANSWERED
        return HOOK_STEP_DONE


@cython.final
cdef class AsyncHookStep(CoreStep):
    """A Python policy's `async def on_request`: a Task only if it really waits."""

    def __init__(self, hook):
        if not callable(hook):
            raise TypeError(f"a hook is callable, got {hook!r}")
        self.hook = hook
        self.reads_request = True

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        return step_await_hook(conn, ex, self.hook, index)


cdef int step_await_hook(ClientProtocol conn, Exchange ex, object hook, Py_ssize_t index) except -1:
    """Run `async def hook(request)` as the step at `index`."""
    cdef bint finished = False
    # PERF: drive the coroutine ourselves; a hook that never really waits finishes here
    # without an asyncio Task.
    try:
        coro = hook(ex.preq)
        blocked_on = _coroutine_step(coro, &finished)
    except BaseException as exc:
        chain_failed(conn, ex, exc)
        return HOOK_STEP_ANSWERED
    if finished:
        if blocked_on is not None:
            chain_answer_policy(conn, ex, blocked_on)
            return HOOK_STEP_ANSWERED
        return HOOK_STEP_DONE
    ex.hook_index = index + 1
    ex.hook_task = conn.engine.loop.create_task(
        _resume_hook(conn, coro, blocked_on, False, ex.exchange_serial))
    # A hook that hangs is cut off like an upstream that does not answer.
    conn.deadline = _now + ex.read_timeout
    return HOOK_STEP_SUSPENDED


@cython.final
cdef class RespondStep(CoreStep):
    """direct_response: a fixed answer, its status line and fields serialised once."""

    def __init__(self, int status, headers, bytes body not None):
        """`headers`: (lowercase name, value) bytes pairs, as fastgw.policy.Response holds
        them; the core adds content-length and x-request-id."""
        if not 200 <= status <= 599:
            raise ValueError(f"an answer's status is 200-599, got {status}")
        lines = [status_line(status)]
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                raise TypeError("an answer's headers are (bytes, bytes) pairs")
            # These bytes go to the wire as they are: no CR, LF or other CTL may slip in.
            if (not _TOKEN.match(name.decode("latin-1"))
                    or not _FIELD_VALUE.match(value.decode("latin-1"))):
                raise ValueError(f"invalid header field {name!r}: {value!r}")
            lines.append(name + b": " + value + b"\r\n")
        self.status = status
        self.head = b"".join(lines)
        self.body = body

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        relay_start_local(conn, ex)
        _head_buffer.put_bytes(self.head)
        relay_finish_local(conn, ex, self.body, self.status)
        return HOOK_STEP_ANSWERED


@cython.final
cdef class _RedirectLocation:
    """Where one path pattern of the route redirects to."""


REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@cython.final
cdef class RedirectStep(CoreStep):
    """redirect: a 3xx whose Location is a template; substituted values are
    percent-encoded, so no CR, LF or space can enter it."""

    def __init__(self, int status, locations, bint keep_query):
        """`locations`: {pattern id: template} (bytes, capture indexes, TEMPLATE_VARIABLES
        codes), the route's location resolved for each of its path patterns."""
        cdef _RedirectLocation location
        if status not in REDIRECT_STATUSES:
            raise ValueError(f"a redirect status is one of {REDIRECT_STATUSES}, got {status}")
        self.status = status
        self.keep_query = keep_query
        self.head = status_line(status)
        self.by_pattern = {}
        for pattern_id, template in dict(locations).items():
            location = _RedirectLocation()
            location.template = tuple(template)
            if not all(type(part) is bytes or type(part) is int for part in location.template):
                raise TypeError("a location template holds bytes and int parts")
            if keep_query:
                # The kept query joins one the location already has with "&".
                location.query_join = (
                    b"&" if any(type(part) is bytes and b"?" in part
                                for part in location.template) else b"?")
            self.by_pattern[<int>pattern_id] = location

    @property
    def locations(self):
        """{pattern id: template}, as given."""
        return {pattern_id: (<_RedirectLocation>location).template
                for pattern_id, location in self.by_pattern.items()}

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        cdef _RedirectLocation location = <_RedirectLocation>self.by_pattern[ex.match.pattern_id]
        cdef HeadBuffer b = _head_buffer
        cdef RequestParser p = conn.parser
        relay_start_local(conn, ex)
        b.put_bytes(self.head)
        b.put_bytes(b"location: ")
        forward_put_template(conn, ex, location.template, True)
        if location.query_join is not None and p.has_query:
            b.put_bytes(location.query_join)
            b.put(p.head + p.query_off, p.query_len)
        b.put_bytes(_CRLF)
        relay_finish_local(conn, ex, b"", self.status)
        return HOOK_STEP_ANSWERED


@cython.final
cdef class RateLimitStep(CoreStep):
    """rate_limit (policy: local): a decision in the GCRA table, without Python."""

    def __init__(self, RateLimiter limiter not None):
        self.limiter = limiter

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        """Decide, remember the fields every response of this exchange carries; answer 429
        when a limit says no, or wait when its `delay` allows."""
        cdef RateLimiter limiter = self.limiter
        cdef RateDecision d
        chain_build_key(conn, ex, limiter.key_kinds, limiter.fallback)
        limiter.decide(_key_buffer.data, _key_buffer.length, ex.t_start, limiter.cost, &d)
        ex.rl_result = RL_ALLOWED if d.allowed else RL_LIMITED
        if limiter.headers != RL_HEADERS_NONE or not d.allowed:
            fields = _rate_limit_fields(limiter.headers, &d)
            ex.extra_head = fields if ex.extra_head is None else ex.extra_head + fields
        if not d.allowed:
            relay_local_error(conn, ex, E_RATE_LIMITED, 0)
            return HOOK_STEP_ANSWERED
        if d.wait_ns > 0:
            ex.hook_index = index + 1
            ex.park_handle = conn.engine.loop.call_later(
                d.wait_ns / 1e9, conn._wake, ex.exchange_serial)
            conn.deadline = _now + d.wait_ns / 1e9 + ex.read_timeout
            return HOOK_STEP_SUSPENDED
        return HOOK_STEP_DONE


@cython.final
cdef class LeaseLimitStep(CoreStep):
    """rate_limit (policy: redis, mode: batched): spend a token leased from Redis without
    Python (a refill starts when half the lease is gone); without one, the policy's own
    async check decides, as an AsyncHookStep would run it."""

    def __init__(self, LeaseStep lease not None):
        self.lease = lease
        self.reads_request = True        # the slow path is a Python hook

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        if self.spend(conn, ex):
            return HOOK_STEP_DONE
        return step_await_hook(conn, ex, self.lease.slow, index)

    cdef bint spend(self, ClientProtocol conn, Exchange ex) except *:
        cdef LeaseStep step = self.lease
        cdef Lease lease
        cdef RateDecision d
        cdef double now = ex.t_start / 1e9     # CLOCK_MONOTONIC, as time.monotonic()
        chain_build_key(conn, ex, step.key_kinds, step.fallback)
        key = _key_buffer.take()
        found = step.leases.get(key)
        if found is None:
            return False
        lease = <Lease>found
        if lease.tokens < step.cost or now >= lease.expires:
            return False
        lease.tokens -= step.cost
        if lease.tokens * 2 < lease.want and lease.fetch is None:
            step.refill(key, lease)
        ex.rl_result = RL_ALLOWED
        if step.headers != RL_HEADERS_NONE:
            d.allowed = True
            d.limit = lease.limit
            d.remaining = lease.remaining + lease.tokens
            d.reset_s = _ceil_s(<int64_t>((lease.reset_at - now) * 1e9))
            d.retry_after_s = 0
            d.wait_ns = 0
            fields = _rate_limit_fields(step.headers, &d)
            ex.extra_head = fields if ex.extra_head is None else ex.extra_head + fields
        return True


@cython.final
cdef class ConcurrencyLimitStep(CoreStep):
    """concurrency_limit: take a place, queue for one, or answer 503/429. The place is held
    until the exchange ends (chain_release_held)."""

    def __init__(self, ConcurrencyLimiter limiter not None):
        self.limiter = limiter

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        cdef ConcurrencyLimiter limiter = self.limiter
        chain_build_key(conn, ex, limiter.key_kinds, limiter.fallback)
        key = _key_buffer.take()
        count = limiter.counts.get(key, 0)
        if count < limiter.max_inflight:
            limiter.counts[key] = count + 1
            if ex.held is None:
                ex.held = []
            ex.held.append((limiter, key))
            return HOOK_STEP_DONE
        queue = limiter.queues.get(key)
        if limiter.queue_max and (queue is None or len(queue) < limiter.queue_max):
            if queue is None:
                queue = limiter.queues[key] = _deque()
            queue.append((conn, ex.exchange_serial))
            ex.waiting_on = limiter
            ex.waiting_key = key
            ex.hook_index = index + 1
            conn.deadline = _now + limiter.queue_timeout
            return HOOK_STEP_SUSPENDED
        relay_local_error(conn, ex, limiter.code, 0)
        return HOOK_STEP_ANSWERED


cdef inline uint64_t _be64(const unsigned char* b) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | b[i]
    return v


cdef inline uint32_t _be32(const unsigned char* b) noexcept:
    return ((<uint32_t>b[0]) << 24) | ((<uint32_t>b[1]) << 16) | ((<uint32_t>b[2]) << 8) | b[3]


cdef inline uint64_t _mask64(int bits) noexcept:
    # The first `bits` (0..64) bits set.
    if bits <= 0:
        return 0
    if bits >= 64:
        return 0xFFFFFFFFFFFFFFFF
    return ~((<uint64_t>1 << (64 - bits)) - 1)


cdef bint _ip_in4(const IpRule4* rules, Py_ssize_t n, uint32_t a) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if (a & rules[i].mask) == rules[i].net:
            return True
    return False


cdef bint _ip_in6(const IpRule6* rules, Py_ssize_t n, uint64_t hi, uint64_t lo) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if ((hi & rules[i].mask_hi) == rules[i].net_hi
                and (lo & rules[i].mask_lo) == rules[i].net_lo):
            return True
    return False


cdef Py_ssize_t _ip_fill4(tuple rules, IpRule4** out) except -1:
    cdef Py_ssize_t n = 0
    cdef const unsigned char* b
    cdef uint32_t mask
    cdef int bits
    wanted = [r for r in rules if len(r[0]) == 4]
    for net, bits in rules:
        if len(net) not in (4, 16):
            raise ValueError(f"a network is 4 or 16 packed bytes, got {len(net)}")
        if not 0 <= bits <= 8 * len(net):
            raise ValueError(f"prefix length {bits} out of range")
    out[0] = <IpRule4*>malloc(sizeof(IpRule4) * max(len(wanted), 1))
    if out[0] is NULL:
        raise MemoryError()
    for net, bits in wanted:
        b = net
        mask = <uint32_t>(_mask64(bits) >> 32)
        if _be32(b) & ~mask:
            raise ValueError(f"host bits set in {net!r}/{bits}")
        out[0][n].net = _be32(b)
        out[0][n].mask = mask
        n += 1
    return n


cdef Py_ssize_t _ip_fill6(tuple rules, IpRule6** out) except -1:
    cdef Py_ssize_t n = 0
    cdef const unsigned char* b
    cdef int bits
    wanted = [r for r in rules if len(r[0]) == 16]
    out[0] = <IpRule6*>malloc(sizeof(IpRule6) * max(len(wanted), 1))
    if out[0] is NULL:
        raise MemoryError()
    for net, bits in wanted:
        b = net
        out[0][n].mask_hi = _mask64(bits)
        out[0][n].mask_lo = _mask64(bits - 64)
        out[0][n].net_hi = _be64(b)
        out[0][n].net_lo = _be64(b + 8)
        if ((out[0][n].net_hi & ~out[0][n].mask_hi)
                or (out[0][n].net_lo & ~out[0][n].mask_lo)):
            raise ValueError(f"host bits set in {net!r}/{bits}")
        n += 1
    return n


cdef bint _ip_decide(IpRestrictionStep self, bytes address) noexcept:
    """Whether `address` (text) passes the step's rules; one that is no address passes only
    when there is no allow list."""
    cdef unsigned char a[16]
    cdef const char* s = address
    cdef uint32_t v4
    cdef int i
    cdef bint is4 = False
    if memchr(s, 58, len(address)) is NULL:
        if inet_pton(AF_INET, s, a) != 1:
            return self.n_allow4 + self.n_allow6 == 0
        is4 = True
    else:
        if inet_pton(AF_INET6, s, a) != 1:
            return self.n_allow4 + self.n_allow6 == 0
        # ::ffff:a.b.c.d is the IPv4 client a.b.c.d: IPv4 rules decide.
        is4 = a[10] == 0xFF and a[11] == 0xFF
        for i in range(10):
            if a[i]:
                is4 = False
        if is4:
            memcpy(a, a + 12, 4)
    if is4:
        v4 = _be32(a)
        if _ip_in4(self.deny4, self.n_deny4, v4):
            return False
        return (self.n_allow4 + self.n_allow6 == 0
                or _ip_in4(self.allow4, self.n_allow4, v4))
    if _ip_in6(self.deny6, self.n_deny6, _be64(a), _be64(a + 8)):
        return False
    return (self.n_allow4 + self.n_allow6 == 0
            or _ip_in6(self.allow6, self.n_allow6, _be64(a), _be64(a + 8)))


@cython.final
cdef class IpRestrictionStep(CoreStep):
    """ip_restriction: the client address (through trusted_proxies) against CIDR tables
    compiled at plan time; deny wins over allow; a non-empty allow refuses the rest."""

    def __init__(self, allow, deny):
        """`allow`, `deny`: (packed network, prefix length) pairs; 4 bytes for IPv4, 16 for
        IPv6, host bits zero."""
        self.allow = tuple((bytes(net), int(bits)) for net, bits in allow)
        self.deny = tuple((bytes(net), int(bits)) for net, bits in deny)
        if not self.allow and not self.deny:
            raise ValueError("ip_restriction needs a rule in allow or deny")
        self.n_allow4 = _ip_fill4(self.allow, &self.allow4)
        self.n_deny4 = _ip_fill4(self.deny, &self.deny4)
        self.n_allow6 = _ip_fill6(self.allow, &self.allow6)
        self.n_deny6 = _ip_fill6(self.deny, &self.deny6)

    def __dealloc__(self):
        free(self.allow4)
        free(self.deny4)
        free(self.allow6)
        free(self.deny6)

    def allows(self, bytes address not None):
        """Whether the rules let `address` (text, as the core derives it) pass."""
        return _ip_decide(self, address)

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        if _ip_decide(self, request_client_ip(conn, ex)):
            return HOOK_STEP_DONE
        relay_local_error(conn, ex, E_IP_FORBIDDEN, 0)
        return HOOK_STEP_ANSWERED


from hmac import compare_digest as _compare_digest
from urllib.parse import unquote_to_bytes as _unquote_to_bytes


cdef inline bint _already_authenticated(Exchange ex) noexcept:
    return ex.auth_result is not None and ex.auth_code == 0


@cython.final
cdef class KeyAuthStep(CoreStep):
    """key_auth: an API key from a header or a query parameter, looked up in a table built
    at plan time and compared in constant time; the consumer it belongs to goes upstream."""

    def __init__(self, header, query, keys, bint hide_query=False, anonymous=None,
                 bint fallthrough=False, str challenge="Key"):
        """`keys`: {key bytes: Consumer}; `header`: a lowercase field name (bytes) or None;
        `query`: a parameter name (bytes) or None."""
        if header is None and query is None:
            raise ValueError("key_auth reads the key from a header, a query parameter or both")
        self.header = None if header is None else bytes(header).lower()
        self.query = None if query is None else bytes(query)
        self.hide_query = hide_query
        # key -> (key, Consumer, its identity fields, its groups): nothing to look up later.
        self.keys = {}
        for key, consumer in keys.items():
            head = getattr(consumer, "identity_head", None)
            groups = getattr(consumer, "group_set", None)
            self.keys[bytes(key)] = (bytes(key), consumer,
                                     head if type(head) is bytes else None,
                                     groups if type(groups) is frozenset else None)
        self.anonymous = anonymous
        self.fallthrough = fallthrough
        self.challenge = challenge

    def lookup(self, bytes key not None):
        """The consumer `key` belongs to, or None (as a request would see it)."""
        entry = self.keys.get(key)
        if entry is None or not _compare_digest(<bytes>entry[0], key):
            return None
        return entry[1]

    cdef bytes find_key(self, ClientProtocol conn, Exchange ex):
        cdef RequestParser p = conn.parser
        cdef Py_ssize_t i, n, start, end, q_len, name_len
        cdef const char* q
        cdef bytes raw
        if self.header is not None:
            n = PyBytes_GET_SIZE(self.header)
            for i in range(p.n_headers):
                if (p.hdr_name_len[i] == n and p.hdr_value_len[i] > 0
                        and _h1_name_is(p.head + p.hdr_name_off[i],
                                        PyBytes_AS_STRING(self.header), n)):
                    return PyBytes_FromStringAndSize(p.head + p.hdr_value_off[i],
                                                     p.hdr_value_len[i])
        if self.query is None or not p.has_query:
            return None
        q = p.head + p.query_off
        q_len = p.query_len
        name_len = PyBytes_GET_SIZE(self.query)
        start = 0
        while start < q_len:
            end = start
            while end < q_len and q[end] != c'&':
                end += 1
            if (end - start > name_len and q[start + name_len] == c'='
                    and memcmp(q + start, PyBytes_AS_STRING(self.query), name_len) == 0):
                raw = PyBytes_FromStringAndSize(q + start + name_len + 1,
                                                end - start - name_len - 1)
                if self.hide_query:
                    # The query upstream is the client's without this pair.
                    ex.up_query = (PyBytes_FromStringAndSize(q, start)
                                   + PyBytes_FromStringAndSize(q + end + 1, q_len - end - 1)
                                   if end < q_len else
                                   PyBytes_FromStringAndSize(q, max(start - 1, 0)))
                    ex.auth_touched = True
                if memchr(PyBytes_AS_STRING(raw), c'%', PyBytes_GET_SIZE(raw)) != NULL or \
                        memchr(PyBytes_AS_STRING(raw), c'+', PyBytes_GET_SIZE(raw)) != NULL:
                    raw = _unquote_to_bytes(raw.replace(b"+", b" "))
                return raw if PyBytes_GET_SIZE(raw) else None
            start = end + 1
        return None

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        cdef bytes key
        cdef int code = E_CREDENTIALS_MISSING
        if _already_authenticated(ex):
            return HOOK_STEP_DONE
        key = self.find_key(conn, ex)
        if key is not None:
            entry = self.keys.get(key)
            if entry is not None and _compare_digest(<bytes>(<tuple>entry)[0], key):
                auth_accept(ex, (<tuple>entry)[1], <bytes>(<tuple>entry)[2],
                            <frozenset>(<tuple>entry)[3], "key_auth")
                return HOOK_STEP_DONE
            code = E_CREDENTIALS_INVALID
        if auth_failed(ex, code, self.challenge, self.anonymous,
                       self.fallthrough) == AUTH_GO_ON:
            return HOOK_STEP_DONE
        auth_refuse(conn, ex)
        return HOOK_STEP_ANSWERED


@cython.final
cdef class CachedAuthStep(CoreStep):
    """A cache of accepted credentials in front of a slow authentication hook (basic_auth's
    password hashes, jwt's signature checks): a request whose credential field is one the
    hook accepted before is accepted here, in the core; any other goes to the hook, which
    calls remember() when it accepts one."""

    def __init__(self, header, str by not None, hook, Py_ssize_t max_entries=10000):
        if not callable(hook):
            raise TypeError(f"a hook is callable, got {hook!r}")
        self.header = bytes(header).lower()
        self.by = by
        self.hook = hook
        self.max_entries = max(0, max_entries)
        self.entries = {}
        self.reads_request = False      # a miss makes the PolicyRequest itself

    def remember(self, bytes value not None, consumer, claims=None, bytes extra_head=None,
                 expires=None):
        """Accept `value` (the credential field, as received) as `consumer` with `claims`
        until `expires` (time.monotonic() seconds; None: until evicted); `extra_head`:
        further upstream fields ("name: value\r\n"), after the consumer's identity fields."""
        cdef int64_t until = 0
        if self.max_entries == 0:
            return
        if expires is not None:
            until = <int64_t>(float(expires) * 1e9)
            if until <= 0:
                until = 1
        head = getattr(consumer, "identity_head", None) if consumer is not None else None
        head = head if type(head) is bytes else None
        if extra_head is not None:
            head = extra_head if head is None else head + extra_head
        groups = getattr(consumer, "group_set", None) if consumer is not None else None
        self.entries.pop(value, None)
        while len(self.entries) >= self.max_entries:
            del self.entries[next(iter(self.entries))]      # the oldest first
        self.entries[value] = (until, consumer, claims, head,
                               groups if type(groups) is frozenset else None)

    def forget(self):
        """Drop every remembered credential (the keys that accepted them changed)."""
        self.entries.clear()

    def __len__(self):
        return len(self.entries)

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        cdef RequestParser p = conn.parser
        cdef Py_ssize_t i, n = PyBytes_GET_SIZE(self.header)
        cdef int found = -1, count = 0
        cdef tuple entry
        cdef int64_t until
        if _already_authenticated(ex):
            return HOOK_STEP_DONE
        for i in range(p.n_headers):
            if (p.hdr_name_len[i] == n
                    and _h1_name_is(p.head + p.hdr_name_off[i], PyBytes_AS_STRING(self.header), n)):
                found = i
                count += 1
        if count == 1:
            value = self.entries.get(PyBytes_FromStringAndSize(p.head + p.hdr_value_off[found],
                                                               p.hdr_value_len[found]))
            if value is not None:
                entry = <tuple>value
                until = <int64_t>entry[0]
                if until == 0 or until > _mono_ns():
                    auth_accept(ex, entry[1], <bytes>entry[3], <frozenset>entry[4], self.by)
                    ex.claims = entry[2]
                    return HOOK_STEP_DONE
        # Not remembered: the policy's own hook decides (and may remember it).
        if ex.preq is None:
            ex.preq = _new_policy_request(conn)
        return step_await_hook(conn, ex, self.hook, index)


@cython.final
cdef class AclStep(CoreStep):
    """acl: the consumer's groups (allow / deny) and a claim's scopes (require), after an
    authentication policy; no authenticated client is 401, a known one refused is 403."""

    def __init__(self, allow=(), deny=(), str scope_claim=None, require=()):
        self.allow = frozenset(allow)
        self.deny = frozenset(deny)
        self.scope_claim = scope_claim
        self.require = frozenset(require)
        if not (self.allow or self.deny or self.require):
            raise ValueError("acl needs allow, deny or scopes")

    def allows(self, groups=(), claims=None):
        """Whether a consumer of `groups` with `claims` passes (for tests and tools)."""
        return _acl_decide(self, frozenset(groups), claims)

    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1:
        if ex.consumer is None and ex.claims is None:
            relay_local_error(conn, ex, E_CREDENTIALS_MISSING, 0)
            return HOOK_STEP_ANSWERED
        if _acl_decide(self, ex.auth_groups if ex.auth_groups is not None else _NO_GROUPS,
                       ex.claims):
            return HOOK_STEP_DONE
        ex.auth_touched = True
        ex.auth_result = "forbidden"
        relay_local_error(conn, ex, E_FORBIDDEN, 0)
        return HOOK_STEP_ANSWERED


cdef frozenset _NO_GROUPS = frozenset()


cdef bint _acl_decide(AclStep self, frozenset groups, object claims) except -1:
    if self.deny and not self.deny.isdisjoint(groups):
        return False
    if self.allow and self.allow.isdisjoint(groups):
        return False
    if self.require:
        value = claims.get(self.scope_claim) if isinstance(claims, dict) else None
        if isinstance(value, str):
            scopes = value.split()
        elif isinstance(value, (list, tuple)):
            scopes = value
        else:
            return False
        if not self.require.issubset(scopes):
            return False
    return True


@cython.final
cdef class ResponseHook:
    """A Python policy's on_response, and whether it is `async def` (decided at plan time);
    chain_response_hooks runs them in chain order."""

    def __init__(self, hook, bint is_async):
        if not callable(hook):
            raise TypeError(f"a hook is callable, got {hook!r}")
        self.hook = hook
        self.is_async = is_async
