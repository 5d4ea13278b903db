# ratelimit.pxi: GCRA rate limiting in a table shared by every worker of a gateway.
#
# One slot is two 64-bit words: the key's keyed hash and its theoretical arrival time (TAT,
# CLOCK_MONOTONIC nanoseconds, the same clock in every process). A check reads the slot and
# replaces the TAT with one compare-and-swap, so workers never lock (Envoy's atomic token
# bucket does the same). Keys are placed by open addressing over PROBES slots; a full
# neighbourhood reuses the slot whose bucket is full again (TAT in the past: it holds nothing
# a fresh bucket would not) or, failing that, the one closest to full.
#
# Reusing a slot is the one multi-word change: the evictor locks the TAT word (TAT_LOCKED),
# swaps the key, then stores the new TAT. A checker reads key, TAT, key again, and its CAS on
# the TAT only succeeds if no eviction came in between: an eviction always leaves a TAT later
# than any idle one it replaced.

from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, MAP_SHARED, PROT_READ
from posix.mman cimport PROT_WRITE, mmap, munmap

cdef extern from *:
    """
    static inline int fgw_cas64(uint64_t* p, uint64_t expected, uint64_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static inline uint64_t fgw_load64(uint64_t* p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void fgw_store64(uint64_t* p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline void fgw_add64(uint64_t* p, uint64_t v) {
        __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
    }
    """
    bint fgw_cas64(uint64_t* p, uint64_t expected, uint64_t desired) noexcept nogil
    uint64_t fgw_load64(uint64_t* p) noexcept nogil
    void fgw_store64(uint64_t* p, uint64_t v) noexcept nogil
    void fgw_add64(uint64_t* p, uint64_t v) noexcept nogil

cdef uint64_t RL_MAGIC = 0x66676C696D697431    # "fglimit1"
cdef uint64_t TAT_LOCKED = 0xFFFFFFFFFFFFFFFF
RATE_TABLE_SLOTS = 1 << 18     # 4 MiB: fits the last-level cache and the TLB of a server CPU
SLOT_BYTES = 16


cdef inline uint64_t _fmix64(uint64_t x) noexcept:
    x ^= x >> 33
    x *= <uint64_t>0xFF51AFD7ED558CCD
    x ^= x >> 33
    x *= <uint64_t>0xC4CEB9FE1A85EC53
    x ^= x >> 33
    return x


cdef uint64_t _keyed_hash(uint64_t seed0, uint64_t seed1, const char* p,
                          Py_ssize_t n) noexcept:
    """64-bit hash of n bytes under a secret per-gateway seed: clients cannot aim their
    keys at another client's bucket without knowing it."""
    cdef uint64_t h = seed0 ^ (<uint64_t>n * <uint64_t>0x9E3779B97F4A7C15)
    cdef uint64_t w
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        h = _fmix64(h ^ w) + seed1
        i += 8
    w = 0
    if i < n:
        memcpy(&w, p + i, n - i)
    h = _fmix64(h ^ w ^ seed1)
    return _fmix64(h + seed0)


cdef class RateTable:
    """The slots every limiter of this process (and, shared, every worker) uses."""

    def __cinit__(self, Py_ssize_t slots=RATE_TABLE_SLOTS, int fd=-1):
        cdef void* region
        if slots < RL_PROBES or slots & (slots - 1):
            raise ValueError("slots must be a power of two >= 8")
        self.size = (RL_HEADER_WORDS + 2 * slots) * 8
        if fd >= 0:
            region = mmap(NULL, self.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        else:
            region = mmap(NULL, self.size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if region == MAP_FAILED:
            raise OSError("cannot map the rate limit table")
        self.words = <uint64_t*>region
        self.slots = slots
        self.mask = <uint64_t>(slots - 1)
        self.shared = fd >= 0
        if self.words[0] == 0:
            # A new table (the creator of a shared one does this before any worker maps it).
            seed = _urandom(16)
            self.words[1] = <uint64_t>slots
            self.words[2] = int.from_bytes(seed[:8], "little")
            self.words[3] = int.from_bytes(seed[8:], "little")
            fgw_store64(&self.words[0], RL_MAGIC)
        elif self.words[0] != RL_MAGIC or self.words[1] != <uint64_t>slots:
            munmap(region, self.size)
            self.words = NULL
            raise ValueError("the shared rate limit table has another layout")

    def __dealloc__(self):
        if self.words != NULL:
            munmap(self.words, self.size)

    @staticmethod
    def bytes_for(Py_ssize_t slots=RATE_TABLE_SLOTS):
        """The size of a shared table file with `slots` slots."""
        return (RL_HEADER_WORDS + 2 * slots) * 8

    @property
    def evictions(self):
        """(slots reused whose bucket was full again, slots reused that still held tokens)."""
        return (fgw_load64(&self.words[4]), fgw_load64(&self.words[5]))

    def used(self):
        """Slots holding a key (a scan: for tests and the admin API, not per request)."""
        cdef Py_ssize_t i, n = 0
        for i in range(self.slots):
            if self.words[RL_HEADER_WORDS + 2 * i] != 0:
                n += 1
        return n

    cdef inline uint64_t key_hash(self, const char* p, Py_ssize_t n) noexcept:
        return _keyed_hash(self.words[2], self.words[3], p, n)

    cdef uint64_t* find(self, uint64_t key, int64_t now, bint* fresh) noexcept:
        """The TAT word of `key`'s slot, claimed (or reused) if the key has none. When
        `fresh` is set the slot's TAT word is TAT_LOCKED and the caller must store it."""
        cdef uint64_t* base = self.words + RL_HEADER_WORDS
        cdef uint64_t start = (key >> 1) & self.mask   # bit 0 of every key is 1
        cdef uint64_t idx, k, tat, best_tat = TAT_LOCKED
        cdef Py_ssize_t i, best = -1
        fresh[0] = False
        for i in range(RL_PROBES):
            idx = (start + <uint64_t>i) & self.mask
            k = fgw_load64(&base[2 * idx])
            if k == key:
                return &base[2 * idx + 1]
            if k == 0:
                if fgw_cas64(&base[2 * idx], 0, key):
                    return &base[2 * idx + 1]
                if fgw_load64(&base[2 * idx]) == key:
                    return &base[2 * idx + 1]   # another worker placed the same key
                continue
            tat = fgw_load64(&base[2 * idx + 1])
            if tat < best_tat:
                best_tat = tat
                best = <Py_ssize_t>idx
        if best < 0:
            return NULL
        # Every probed slot is taken: reuse the one nearest to a full bucket.
        idx = <uint64_t>best
        k = fgw_load64(&base[2 * idx])
        if not fgw_cas64(&base[2 * idx + 1], best_tat, TAT_LOCKED):
            return NULL
        if not fgw_cas64(&base[2 * idx], k, key):
            fgw_store64(&base[2 * idx + 1], best_tat)
            return NULL
        fgw_add64(&self.words[4 if <int64_t>best_tat <= now else 5], 1)
        fresh[0] = True
        return &base[2 * idx + 1]


cdef RateTable _rate_table = None
cdef Py_ssize_t _table_slots = RATE_TABLE_SLOTS
cdef dict _RL_HEADER_MODES = {"none": RL_HEADERS_NONE, "draft": RL_HEADERS_DRAFT,
                              "legacy": RL_HEADERS_LEGACY, "both": RL_HEADERS_BOTH}
cdef dict _KEY_KINDS = {"client_ip": RL_KEY_CLIENT_IP, "route": RL_KEY_ROUTE,
                        "header": RL_KEY_HEADER, "param": RL_KEY_PARAM,
                        "consumer": RL_KEY_CONSUMER, "claim": RL_KEY_CLAIM}


def rate_table():
    """This process's table: the shared one attached at start, or a private one."""
    global _rate_table
    if _rate_table is None:
        _rate_table = RateTable(_table_slots)
    return _rate_table


def set_rate_table_slots(Py_ssize_t slots):
    """The size of the private table, made on first use (a made table keeps its size)."""
    global _table_slots
    _table_slots = slots


def attach_rate_table(int fd, Py_ssize_t slots=RATE_TABLE_SLOTS):
    """Use the table in `fd` (a file the supervisor made and every worker maps)."""
    global _rate_table
    _rate_table = RateTable(slots, fd)
    return _rate_table


cdef inline int64_t _ceil_s(int64_t ns) noexcept:
    if ns <= 0:
        return 0
    return (ns + 999999999) // 1000000000


cdef class RateLimiter:
    """One `rate_limit` entry: its limits, its key sources and its identity in the table."""

    def __init__(self, str limiter_id, keys, fallback, limits, int cost=1, str headers="draft",
                 RateTable table=None, int64_t delay_ns=0):
        self.table = table if table is not None else rate_table()
        self.limiter_id = limiter_id
        ident = limiter_id.encode("utf-8")
        self.ident = self.table.key_hash(PyBytes_AS_STRING(ident), PyBytes_GET_SIZE(ident))
        if not 1 <= len(limits) <= RL_MAX_LIMITS:
            raise ValueError(f"a rate limit entry has 1 to {RL_MAX_LIMITS} limits")
        self.n_limits = len(limits)
        for i, (interval, burst) in enumerate(limits):
            if interval < 1 or burst < 1 or burst < cost:
                raise ValueError("each limit needs interval >= 1 ns and burst >= cost")
            self.interval[i] = interval
            self.burst[i] = burst
            self.capacity[i] = interval * burst
        self.cost = cost
        self.delay_ns = delay_ns
        self.headers = _RL_HEADER_MODES[headers]
        self.key_kinds = tuple((_KEY_KINDS[kind], arg) for kind, arg in keys)
        self.fallback = _KEY_KINDS[fallback]

    cdef int decide(self, const char* key, Py_ssize_t n, int64_t now, int64_t cost,
                    RateDecision* out) noexcept:
        """Check every limit for `key` at `now`; commit only if all of them pass."""
        cdef uint64_t h = self.table.key_hash(key, n) ^ self.ident
        cdef uint64_t slot_key
        cdef uint64_t* word
        cdef uint64_t[RL_MAX_LIMITS] before
        cdef uint64_t* words[RL_MAX_LIMITS]
        cdef int i, j, spins
        cdef bint fresh
        cdef uint64_t tat, base_tat, new_tat
        cdef int64_t best_remaining = -1, remaining, excess
        cdef uint64_t* key_word
        out.allowed = True
        out.retry_after_s = 0
        out.wait_ns = 0
        for i in range(self.n_limits):
            slot_key = _fmix64(h + <uint64_t>(i + 1) * <uint64_t>0x9E3779B97F4A7C15) | 1
            spins = 0
            while True:
                word = self.table.find(slot_key, now, &fresh)
                if word == NULL:
                    # No slot could be had (all contended this instant): let it pass.
                    words[i] = NULL
                    break
                key_word = word - 1
                if fresh:
                    tat = 0
                else:
                    tat = fgw_load64(word)
                    if tat == TAT_LOCKED or fgw_load64(key_word) != slot_key:
                        spins += 1
                        if spins > RL_SPIN_LIMIT:
                            words[i] = NULL
                            break
                        continue
                base_tat = tat if <int64_t>tat > now else <uint64_t>now
                new_tat = base_tat + <uint64_t>(cost * self.interval[i])
                if <int64_t>(new_tat - <uint64_t>now) > self.capacity[i] + self.delay_ns:
                    # Rejected: undo what earlier limits took, report this one.
                    if fresh:
                        fgw_store64(word, <uint64_t>now + 1)
                    for j in range(i):
                        if words[j] != NULL:
                            self._give_back(words[j], before[j], j, cost)
                    out.allowed = False
                    out.limit = self.burst[i]
                    out.remaining = 0
                    out.reset_s = (_ceil_s(<int64_t>(tat - <uint64_t>now))
                                   if <int64_t>tat > now else 0)
                    out.retry_after_s = max(1, _ceil_s(
                        <int64_t>(new_tat - <uint64_t>now) - self.capacity[i] - self.delay_ns))
                    return 0
                if fresh:
                    fgw_store64(word, new_tat)
                elif not fgw_cas64(word, tat, new_tat):
                    continue                  # another worker moved it: decide again
                words[i] = word
                before[i] = new_tat
                excess = <int64_t>(new_tat - <uint64_t>now) - self.capacity[i]
                if excess > 0:
                    # Admitted beyond the burst: it waits until its token is due (nginx's
                    # limit_req delay).
                    out.wait_ns = max(out.wait_ns, excess)
                    remaining = 0
                else:
                    remaining = -excess // self.interval[i]
                if best_remaining < 0 or remaining < best_remaining:
                    best_remaining = remaining
                    out.limit = self.burst[i]
                    out.remaining = remaining
                    out.reset_s = _ceil_s(<int64_t>(new_tat - <uint64_t>now))
                break
        if best_remaining < 0:
            out.limit = self.burst[0]
            out.remaining = self.burst[0]
            out.reset_s = 0
        return 0

    cdef void _give_back(self, uint64_t* word, uint64_t taken, int i, int64_t cost) noexcept:
        cdef uint64_t tat
        cdef int spins = 0
        while spins < RL_SPIN_LIMIT:
            tat = fgw_load64(word)
            if tat == TAT_LOCKED or tat < taken - <uint64_t>(cost * self.interval[i]):
                return                        # reused meanwhile: nothing of ours is left
            if fgw_cas64(word, tat, tat - <uint64_t>(cost * self.interval[i])):
                return
            spins += 1

    def check(self, bytes key, now_ns=None, cost=None):
        """One decision for `key` (tests and benchmarks; the core calls decide()):
        (allowed, limit, remaining, reset seconds, retry-after seconds). `now_ns` injects the
        clock (CLOCK_MONOTONIC nanoseconds)."""
        cdef RateDecision d
        cdef int64_t now = _mono_ns() if now_ns is None else now_ns
        self.decide(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), now,
                    self.cost if cost is None else cost, &d)
        if self.delay_ns:
            return (bool(d.allowed), d.limit, d.remaining, d.reset_s, d.retry_after_s,
                    d.wait_ns)
        return (bool(d.allowed), d.limit, d.remaining, d.reset_s, d.retry_after_s)

    def check_fast(self, bytes key):
        """decide() with the real clock and nothing built for the caller: the benchmark's
        view of what a check costs."""
        cdef RateDecision d
        self.decide(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), _mono_ns(), self.cost, &d)
        return d.allowed


cdef class ConcurrencyLimiter:
    """A `concurrency_limit` entry: requests in flight per key in this worker, and the
    requests waiting for a place (ClientProtocol does the acquiring and releasing)."""

    def __init__(self, keys, str fallback, int max_inflight, int queue_max=0,
                 double queue_timeout=1.0, int status=503):
        self.key_kinds = tuple((_KEY_KINDS[kind], arg) for kind, arg in keys)
        self.fallback = _KEY_KINDS[fallback]
        self.max_inflight = max_inflight
        self.queue_max = queue_max
        self.queue_timeout = queue_timeout
        self.code = E_CONCURRENCY_LIMITED_429 if status == 429 else E_CONCURRENCY_LIMITED
        self.counts = {}
        self.queues = {}

    def inflight(self, bytes key):
        return self.counts.get(key, 0)

    def waiting(self, bytes key):
        queue = self.queues.get(key)
        return len(queue) if queue is not None else 0


@cython.final
cdef class Lease:
    """Batched Redis limiting: tokens of one key this gateway took from Redis. The core
    spends them; the policy (Python) refills them and decides when they run out."""

    def __init__(self, int64_t want):
        self.want = want


@cython.final
cdef class LeaseStep:
    """A `rate_limit` entry with `policy: redis, mode: batched` as the core runs it: the
    leases by key, the cost, and the policy's hooks for what the core cannot decide."""

    def __init__(self, dict leases, keys, str fallback, int64_t cost, str headers, slow,
                 refill):
        self.leases = leases
        self.key_kinds = tuple((_KEY_KINDS[kind], arg) for kind, arg in keys)
        self.fallback = _KEY_KINDS[fallback]
        self.cost = cost
        self.headers = _RL_HEADER_MODES[headers]
        self.slow = slow
        self.refill = refill


cdef HeadBuffer _rl_buffer = HeadBuffer()
cdef HeadBuffer _key_buffer = HeadBuffer()   # a request's key, built in place


cdef bytes _rate_limit_fields(int mode, RateDecision* d):
    """The RateLimit fields (IETF draft names and/or the legacy X- ones) of a decision,
    with Retry-After on a rejection."""
    cdef HeadBuffer b = _rl_buffer
    b.length = 0
    if mode & RL_HEADERS_DRAFT:
        b.put_bytes(b"ratelimit-limit: ")
        b.put_int(d.limit)
        b.put_bytes(b"\r\nratelimit-remaining: ")
        b.put_int(d.remaining)
        b.put_bytes(b"\r\nratelimit-reset: ")
        b.put_int(d.reset_s)
        b.put_bytes(b"\r\n")
    if mode & RL_HEADERS_LEGACY:
        b.put_bytes(b"x-ratelimit-limit: ")
        b.put_int(d.limit)
        b.put_bytes(b"\r\nx-ratelimit-remaining: ")
        b.put_int(d.remaining)
        b.put_bytes(b"\r\nx-ratelimit-reset: ")
        b.put_int(d.reset_s)
        b.put_bytes(b"\r\n")
    if not d.allowed:
        b.put_bytes(b"retry-after: ")
        b.put_int(d.retry_after_s)
        b.put_bytes(b"\r\n")
    return b.take()
