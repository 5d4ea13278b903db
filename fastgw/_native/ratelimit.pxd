# ratelimit.pxd: GCRA rate limiting in a table every worker shares, concurrency limits and
# the leases of batched Redis limiting (code: ratelimit.pxi).
#
# A request meets these in its route's chain: ClientProtocol.rate_check, concurrency_check
# and lease_check (protocol) build the key from the request (RL_KEY_*), ask the limiter, and
# answer 429 / 503 or add the RateLimit fields. plan.py makes the limiters; the policies of
# fastgw/policy/ make the leases.

# <- ratelimit.pxi (the table's layout, RateLimiter's limits), ClientProtocol.build_key
#    (protocol: RL_KEY_*), rate_check and lease_check (RL_HEADERS_*)
cdef enum:
    RL_HEADER_WORDS = 8         # magic, slots, seed0, seed1, evictions, busy evictions, 2 spare
    RL_PROBES = 8
    RL_MAX_LIMITS = 8
    RL_KEY_CLIENT_IP = 1
    RL_KEY_ROUTE = 2
    RL_KEY_HEADER = 3
    RL_KEY_PARAM = 4
    RL_KEY_CONSUMER = 5         # request.consumer, set by an authentication policy
    RL_KEY_CLAIM = 6            # request.claims[NAME]
    RL_HEADERS_NONE = 0
    RL_HEADERS_DRAFT = 1
    RL_HEADERS_LEGACY = 2
    RL_HEADERS_BOTH = 3
    RL_SPIN_LIMIT = 64          # a slot locked this long: its evictor died mid-way


# One decision of RateLimiter.decide, or of a lease (protocol) or a Python policy (policy).
# <- read by ClientProtocol.rate_check / lease_check (protocol) and _rate_limit_fields
cdef struct RateDecision:
    bint allowed
    int64_t limit             # burst of the limit reported (the one nearest to limiting)
    int64_t remaining
    int64_t reset_s           # seconds until that bucket is full again
    int64_t retry_after_s     # on a rejection: seconds until the request would pass
    int64_t wait_ns           # allowed after this wait (`delay`); 0: at once


cdef class RateTable:
    # The mapping (private, or the supervisor's shared file) and its layout; RateLimiter
    # only goes through the methods.
    cdef uint64_t* words           # header, then 2 words per slot
    cdef Py_ssize_t size           # bytes mapped
    cdef readonly Py_ssize_t slots
    cdef uint64_t mask
    cdef readonly bint shared

    # <- RateLimiter.decide, RateLimiter.__init__: a key's hash under the table's seed
    cdef inline uint64_t key_hash(self, const char* p, Py_ssize_t n) noexcept
    # <- RateLimiter.decide: the TAT word of a key's slot, claimed or reused if it has none
    cdef uint64_t* find(self, uint64_t key, int64_t now, bint* fresh) noexcept


cdef class RateLimiter:
    # ClientProtocol.build_key and rate_check (protocol) read key_kinds, fallback, cost and
    # headers; the limits are decide()'s.
    cdef readonly RateTable table
    cdef uint64_t ident                   # keyed hash of the limiter id
    cdef int n_limits
    cdef int64_t[RL_MAX_LIMITS] interval  # ns per token
    cdef int64_t[RL_MAX_LIMITS] capacity  # burst * interval
    cdef int64_t[RL_MAX_LIMITS] burst
    cdef readonly int64_t cost
    cdef readonly int64_t delay_ns        # a request may wait this long instead of a 429
    cdef readonly int headers
    cdef readonly tuple key_kinds         # ((kind, header name | {pattern id: capture}), ...)
    cdef readonly int fallback
    cdef readonly str limiter_id

    # <- ClientProtocol.rate_check (protocol), check(), _bench_decide (bench): every limit for
    #    one key at `now`, committed only if all of them pass
    cdef int decide(self, const char* key, Py_ssize_t n, int64_t now, int64_t cost,
                    RateDecision* out) noexcept
    # <- decide: undo what an earlier limit took when a later one refuses
    cdef void _give_back(self, uint64_t* word, uint64_t taken, int i, int64_t cost) noexcept


cdef class ConcurrencyLimiter:
    # ClientProtocol.concurrency_check and its release of places (protocol) use all of these.
    cdef readonly int max_inflight
    cdef readonly int queue_max          # waiting requests per key; 0: refuse at once
    cdef readonly double queue_timeout
    cdef readonly int code               # E_CONCURRENCY_LIMITED or _429
    cdef readonly tuple key_kinds
    cdef readonly int fallback
    cdef dict counts                     # key bytes -> requests in flight
    cdef dict queues                     # key bytes -> deque of (ClientProtocol, serial)


@cython.final
cdef class Lease:
    # ClientProtocol.lease_check (protocol) and the batched Redis policy (Python) share these.
    cdef public int64_t tokens
    cdef public int64_t want             # tokens the next lease asks for
    cdef public double expires           # time.monotonic(): unused tokens lapse then
    cdef public double denied_until      # Redis refused this key until then
    cdef public int64_t limit            # burst of the limit the fields report
    cdef public int64_t remaining        # tokens Redis still had when it answered
    cdef public double reset_at          # that bucket is full again
    cdef public object fetch             # the refill in flight (an asyncio.Task) or None


@cython.final
cdef class LeaseStep:
    # ClientProtocol.lease_check (protocol) reads these; `slow` and `refill` are the policy's.
    cdef readonly dict leases            # key bytes -> Lease
    cdef readonly tuple key_kinds
    cdef readonly int fallback
    cdef readonly int64_t cost
    cdef readonly int headers
    cdef readonly object slow            # async def (request): the policy's full check
    cdef readonly object refill          # def (key, lease): start a refill in the background


# <- RateLimiter.decide, ClientProtocol.lease_check (protocol): ns to whole seconds, up
#    (inline in ratelimit.pxi)
cdef int64_t _ceil_s(int64_t ns) noexcept
# <- ClientProtocol.rate_check, lease_check (protocol), PolicyRequest.record_rate_limit
#    (policy): the RateLimit fields of a decision, Retry-After on a rejection
cdef bytes _rate_limit_fields(int mode, RateDecision* d)
