# observe.pxi: what the core counts and logs about each exchange.
#
# Metrics are C counters a worker keeps for its life (they survive reloads: routes and
# upstreams are counted by name); `CoreMetrics.snapshot()` hands them to Python, which sums
# the workers and formats them with prometheus_client. The access log is JSON lines written
# into a C buffer by the core and handed to a writer thread in 256 KiB slices, so no request
# builds a Python dict or waits on a disk.

from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec
from libc.stdlib cimport calloc

import time as _time
from os import urandom as _urandom

import orjson as _orjson

# Histogram bounds in nanoseconds (0.5 ms .. 10 s); the last bucket is +Inf.
cdef enum:
    _N_BOUNDS = 14
    _N_BUCKETS = 15             # the bounds and +Inf
cdef int64_t[_N_BOUNDS] _BOUNDS_NS = [
    500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
]
HISTOGRAM_BOUNDS = tuple(b / 1e9 for b in [
    500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
])

# Access log fields, in the order a line holds them; a config selects a subset (bit mask,
# AF_* in observe.pxd).
# The opt-in fields for debugging (from "code" on) come last, so a line without them tests
# one bit for the whole group (PERF: the default line costs what it did before them).
ACCESS_LOG_FIELDS = (
    "time", "request_id", "client_ip", "method", "host", "path", "query", "route",
    "upstream", "target", "status", "bytes_in", "bytes_out", "duration_ms", "upstream_ms",
    "trace_id", "rate_limit", "code", "user_agent", "referer", "upstream_path", "consumer",
    "bytes_sent", "auth",
)


cdef inline int64_t _mono_ns() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# xorshift64*: trace ids, span ids and log sampling need speed, not secrecy.
cdef uint64_t _rng_state = 0x9E3779B97F4A7C15


cdef inline uint64_t _rand64() noexcept:
    global _rng_state
    cdef uint64_t x = _rng_state
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    _rng_state = x
    return x * <uint64_t>0x2545F4914F6CDD1D


# Each process (every worker is one) seeds its own generator.
_rng_state = int.from_bytes(_urandom(8), "little") or <uint64_t>0x9E3779B97F4A7C15


cdef inline void _put_hex64(char* out, uint64_t value) noexcept:
    cdef int i
    for i in range(15, -1, -1):
        out[i] = b"0123456789abcdef"[value & 15]
        value >>= 4


# PERF: one table lookup per byte instead of three compares.
cdef unsigned char[256] _JSON_ESCAPE
for _c in range(256):
    _JSON_ESCAPE[_c] = 1 if _c < 0x20 or _c == 0x22 or _c == 0x5c else 0


cdef int _put_json_str(HeadBuffer b, const char* s, Py_ssize_t n) except -1:
    """A JSON string of UTF-8 bytes (route names come from the config; request fields are
    ASCII after parsing): quote and backslash escaped, control bytes as \\u00XX."""
    cdef Py_ssize_t i, start = 0
    cdef unsigned char c
    cdef char esc[6]
    b.put("\"", 1)
    for i in range(n):
        c = <unsigned char>s[i]
        if not _JSON_ESCAPE[c]:
            continue
        if i > start:
            b.put(s + start, i - start)
        start = i + 1
        if c == 0x22:
            b.put("\\\"", 2)
        elif c == 0x5c:
            b.put("\\\\", 2)
        else:
            esc[0] = b"\\"
            esc[1] = b"u"
            esc[2] = b"0"
            esc[3] = b"0"
            esc[4] = b"0123456789abcdef"[c >> 4]
            esc[5] = b"0123456789abcdef"[c & 15]
            b.put(esc, 6)
    if n > start:
        b.put(s + start, n - start)
    b.put("\"", 1)
    return 0


cdef inline int _utf8_length(const unsigned char* s, Py_ssize_t n) noexcept:
    """Bytes of the well-formed UTF-8 sequence at s (RFC 3629 4), 0 if it is not one."""
    cdef unsigned char c = s[0]
    cdef int need, k
    cdef unsigned char low = 0x80, high = 0xBF
    if 0xC2 <= c <= 0xDF:
        need = 2
    elif 0xE0 <= c <= 0xEF:
        need = 3
        if c == 0xE0:
            low = 0xA0              # no overlong forms
        elif c == 0xED:
            high = 0x9F             # no surrogates
    elif 0xF0 <= c <= 0xF4:
        need = 4
        if c == 0xF0:
            low = 0x90
        elif c == 0xF4:
            high = 0x8F             # nothing above U+10FFFF
    else:
        return 0
    if n < need or not low <= s[1] <= high:
        return 0
    for k in range(2, need):
        if not 0x80 <= s[k] <= 0xBF:
            return 0
    return need


cdef int _put_json_text(HeadBuffer b, const char* s, Py_ssize_t n) except -1:
    """A JSON string of bytes a client chose (a header value may hold any obs-text): UTF-8
    sequences are kept, a byte that is not part of one is written as \\u00XX (its Latin-1
    reading), so every line stays valid UTF-8 and valid JSON whatever was sent."""
    cdef Py_ssize_t i = 0, start = 0
    cdef int k
    cdef unsigned char c
    cdef char esc[6]
    b.put("\"", 1)
    while i < n:
        c = <unsigned char>s[i]
        if c < 0x80 and not _JSON_ESCAPE[c]:
            i += 1
            continue
        if c >= 0x80:
            k = _utf8_length(<const unsigned char*>s + i, n - i)
            if k:
                i += k
                continue
        if i > start:
            b.put(s + start, i - start)
        if c == 0x22:
            b.put("\\\"", 2)
        elif c == 0x5c:
            b.put("\\\\", 2)
        else:
            esc[0] = b"\\"
            esc[1] = b"u"
            esc[2] = b"0"
            esc[3] = b"0"
            esc[4] = b"0123456789abcdef"[c >> 4]
            esc[5] = b"0123456789abcdef"[c & 15]
            b.put(esc, 6)
        i += 1
        start = i
    if n > start:
        b.put(s + start, n - start)
    b.put("\"", 1)
    return 0


cdef int _put_ms(HeadBuffer b, int64_t ns) except -1:
    """Nanoseconds as milliseconds with three decimals ("12.345")."""
    cdef int64_t us = (ns + 500) // 1000
    cdef int64_t frac
    cdef char digits[3]
    if us < 0:
        us = 0
    b.put_int(us // 1000)
    frac = us % 1000
    digits[0] = <char>(48 + frac // 100)
    digits[1] = <char>(48 + (frac // 10) % 10)
    digits[2] = <char>(48 + frac % 10)
    b.put(".", 1)
    b.put(digits, 3)
    return 0


cdef class CoreMetrics:
    """Per-worker counters: requests by (route, method, status), latency histograms by route
    and by upstream, client bytes. Never reset; names map to slots for the worker's life."""

    def __cinit__(self):
        self.req_cap = 1024
        self.req_keys = <uint64_t*>calloc(self.req_cap, sizeof(uint64_t))
        self.req_counts = <uint64_t*>calloc(self.req_cap, sizeof(uint64_t))
        if self.req_keys == NULL or self.req_counts == NULL:
            raise MemoryError()

    def __init__(self):
        self.route_slots = {}
        self.route_names = []
        self.upstream_slots = {}
        self.upstream_names = []
        self.route_slot("")

    def __dealloc__(self):
        free(self.req_keys)
        free(self.req_counts)
        free(self.route_hist)
        free(self.route_sum_ns)
        free(self.up_hist)
        free(self.up_sum_ns)

    cdef int _grow_hist(self, uint64_t** hist, uint64_t** sums, Py_ssize_t* cap,
                        Py_ssize_t need) except -1:
        cdef Py_ssize_t new_cap = max(16, cap[0])
        cdef uint64_t* h
        cdef uint64_t* s
        while new_cap < need:
            new_cap *= 2
        if new_cap == cap[0] and hist[0] != NULL:
            return 0
        h = <uint64_t*>calloc(new_cap * _N_BUCKETS, sizeof(uint64_t))
        s = <uint64_t*>calloc(new_cap, sizeof(uint64_t))
        if h == NULL or s == NULL:
            free(h)
            free(s)
            raise MemoryError()
        if hist[0] != NULL:
            memcpy(h, hist[0], cap[0] * _N_BUCKETS * sizeof(uint64_t))
            memcpy(s, sums[0], cap[0] * sizeof(uint64_t))
            free(hist[0])
            free(sums[0])
        hist[0] = h
        sums[0] = s
        cap[0] = new_cap
        return 0

    cpdef int route_slot(self, str name) except -1:
        slot = self.route_slots.get(name)
        if slot is None:
            slot = len(self.route_names)
            self._grow_hist(&self.route_hist, &self.route_sum_ns, &self.route_cap, slot + 1)
            self.route_slots[name] = slot
            self.route_names.append(name)
        return slot

    cpdef int upstream_slot(self, str name) except -1:
        slot = self.upstream_slots.get(name)
        if slot is None:
            slot = len(self.upstream_names)
            self._grow_hist(&self.up_hist, &self.up_sum_ns, &self.up_cap, slot + 1)
            self.upstream_slots[name] = slot
            self.upstream_names.append(name)
        return slot

    cdef int _grow_requests(self) except -1:
        cdef Py_ssize_t old_cap = self.req_cap, i, j
        cdef uint64_t* old_keys = self.req_keys
        cdef uint64_t* old_counts = self.req_counts
        cdef Py_ssize_t cap = old_cap * 2
        keys = <uint64_t*>calloc(cap, sizeof(uint64_t))
        counts = <uint64_t*>calloc(cap, sizeof(uint64_t))
        if keys == NULL or counts == NULL:
            free(keys)
            free(counts)
            raise MemoryError()
        for i in range(old_cap):
            if old_keys[i]:
                j = <Py_ssize_t>((old_keys[i] * <uint64_t>0x9E3779B97F4A7C15) >> 40) & (cap - 1)
                while keys[j]:
                    j = (j + 1) & (cap - 1)
                keys[j] = old_keys[i]
                counts[j] = old_counts[i]
        self.req_keys = keys
        self.req_counts = counts
        self.req_cap = cap
        free(old_keys)
        free(old_counts)
        return 0

    cdef inline void _observe(self, uint64_t* hist, uint64_t* sums, int slot,
                              int64_t ns) noexcept:
        cdef int i = 0
        if ns < 0:
            ns = 0
        while i < _N_BOUNDS and ns > _BOUNDS_NS[i]:
            i += 1
        hist[slot * _N_BUCKETS + i] += 1
        sums[slot] += <uint64_t>ns

    cdef int count(self, int route_slot, int method, int status) except -1:
        cdef uint64_t key = ((<uint64_t>route_slot << 16) | (<uint64_t>(method & 63) << 10)
                             | <uint64_t>(status & 1023)) + 1
        cdef Py_ssize_t j
        if (self.req_used + 1) * 2 > self.req_cap:
            self._grow_requests()
        j = <Py_ssize_t>((key * <uint64_t>0x9E3779B97F4A7C15) >> 40) & (self.req_cap - 1)
        while self.req_keys[j] != key:
            if self.req_keys[j] == 0:
                self.req_keys[j] = key
                self.req_used += 1
                break
            j = (j + 1) & (self.req_cap - 1)
        self.req_counts[j] += 1
        return 0

    cdef int record(self, int route_slot, int method, int status, int64_t duration_ns,
                    int upstream_slot, int64_t upstream_ns) except -1:
        self.count(route_slot, method, status)
        self._observe(self.route_hist, self.route_sum_ns, route_slot, duration_ns)
        if upstream_slot >= 0 and upstream_ns >= 0:
            self._observe(self.up_hist, self.up_sum_ns, upstream_slot, upstream_ns)
        return 0

    def observe(self, str route, str method, int status, double duration, str upstream=None,
                double upstream_duration=-1.0):
        """Count one request from Python (tests, and requests answered outside the core)."""
        method_id = METHOD_IDS.get(method, M_OTHER)
        self.record(self.route_slot(route), method_id, status, <int64_t>(duration * 1e9),
                    self.upstream_slot(upstream) if upstream is not None else -1,
                    <int64_t>(upstream_duration * 1e9))

    def snapshot(self):
        """Plain data: {"requests": [[route, method, status, count]], "duration": {route:
        [buckets..., sum_seconds]}, "upstream_duration": {...}, "bytes": {"in", "out"}}."""
        cdef Py_ssize_t i
        cdef uint64_t key
        requests = []
        decisions = []
        for i in range(self.req_cap):
            key = self.req_keys[i]
            if key:
                key -= 1
                method_id = (key >> 10) & 63
                if method_id == _METHOD_RATELIMIT:
                    decisions.append([self.route_names[key >> 16],
                                      "allowed" if (key & 1023) == RL_ALLOWED else "limited",
                                      self.req_counts[i]])
                    continue
                requests.append([self.route_names[key >> 16],
                                 METHOD_NAMES.get(method_id, "OTHER") if method_id else "OTHER",
                                 <int>(key & 1023), self.req_counts[i]])
        return {
            "requests": requests,
            "ratelimit": decisions,
            "duration": self._hist(self.route_names, self.route_hist, self.route_sum_ns),
            "upstream_duration": self._hist(self.upstream_names, self.up_hist, self.up_sum_ns),
            "bytes": {"in": self.bytes_in, "out": self.bytes_out},
        }

    cdef dict _hist(self, list names, uint64_t* hist, uint64_t* sums):
        cdef Py_ssize_t slot, i
        result = {}
        for slot in range(len(names)):
            counts = [hist[slot * _N_BUCKETS + i] for i in range(_N_BUCKETS)]
            if any(counts):
                result[names[slot]] = counts + [sums[slot] / 1e9]
        return result


cdef class AccessLog:
    """The core's access log buffer: lines go to `sink(bytes)` by size, or by time on the
    engine tick. `fields` is a mask over ACCESS_LOG_FIELDS; `sample` in [0, 1] keeps that
    share of lines, all of those with status >= 400 when `keep_errors`."""

    def __init__(self, sink, fields=None, double sample=1.0, bint keep_errors=True,
                 Py_ssize_t flush_bytes=262144, double flush_interval=1.0):
        cdef uint32_t mask = 0
        self.buf = HeadBuffer()
        self.sink = sink
        for name in (ACCESS_LOG_FIELDS if fields is None else fields):
            if name not in ACCESS_LOG_FIELDS:
                raise ValueError(f"unknown access log field {name!r}")
            mask |= 1 << ACCESS_LOG_FIELDS.index(name)
        self.fields = mask
        if not 0.0 <= sample <= 1.0:
            raise ValueError("sample must be between 0 and 1")
        self.sample_all = sample >= 1.0
        self.sample_below = <uint64_t>(sample * 18446744073709551615.0) if sample < 1.0 else 0
        self.keep_errors = keep_errors
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.time_sec = -1

    cdef inline bint wants(self, int status) noexcept:
        if self.sample_all:
            return True
        if self.keep_errors and status >= 400:
            return True
        if _rand64() < self.sample_below:
            return True
        self.sampled_out += 1
        return False

    cdef int put_time(self) except -1:
        cdef timespec ts
        cdef char ms[5]
        cdef long millis
        clock_gettime(CLOCK_REALTIME, &ts)
        if ts.tv_sec != self.time_sec:
            self.time_sec = ts.tv_sec
            self.time_prefix = ('"' + _time.strftime("%Y-%m-%dT%H:%M:%S",
                                                     _time.gmtime(ts.tv_sec)) + ".").encode()
        self.buf.put_bytes(self.time_prefix)
        millis = ts.tv_nsec // 1000000
        ms[0] = <char>(48 + millis // 100)
        ms[1] = <char>(48 + (millis // 10) % 10)
        ms[2] = <char>(48 + millis % 10)
        ms[3] = b"Z"
        ms[4] = b"\""
        self.buf.put(ms, 5)
        return 0

    cdef int end_line(self) except -1:
        self.buf.put("}\n", 2)
        self.lines += 1
        if self.buf.length >= self.flush_bytes:
            self.flush()
        return 0

    cpdef flush(self):
        """Hand the buffered lines to the sink (the engine tick calls this by time)."""
        self.last_flush = _now
        if self.buf.length == 0:
            return
        data = self.buf.take()
        self.sink(data)

    cdef void tick(self) noexcept:
        if self.buf.length and _now - self.last_flush >= self.flush_interval:
            try:
                self.flush()
            except BaseException as exc:
                _internal_error(W_RECORD, exc, None)

    def write_line(self, dict record):
        """A line built in Python (requests the core never saw); same buffer, same order."""
        body = _orjson.dumps(record)
        self.buf.put(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body) - 1)
        self.end_line()
