# Bench-only entry points: C loops that time one core operation without a Python call per
# iteration. Compiled only into the bench flavour of the core (FASTGW_BENCH=1, `make bench`),
# so the default build exposes none of them. The condition sits here rather than around the
# include in _core.pyx, where cython-lint could no longer parse the module.

IF FASTGW_BENCH:
    from libc.stdlib cimport free, malloc
    from time import perf_counter_ns as _bench_clock_ns

    def _bench_parse(bytes data, int rounds):
        """Parse data (one whole request) `rounds` times in C; returns ns per parse."""
        cdef RequestParser parser = RequestParser()
        cdef const char* buf = data
        cdef Py_ssize_t n = len(data), off, consumed = 0
        cdef int ev, k
        t0 = _bench_clock_ns()
        for k in range(rounds):
            off = 0
            while True:
                ev = parser.execute(buf + off, n - off, &consumed)
                off += consumed
                if ev == EV_DONE or ev == EV_ERROR or ev == EV_NEED_MORE:
                    break
            if ev != EV_DONE:
                raise ValueError(f"request did not parse: {parser.error}")
        t1 = _bench_clock_ns()
        return (t1 - t0) / rounds

    def _bench_match(Router router, str method, str host, str path, int rounds):
        """Nanoseconds per C-level Router.match() call, measured around a loop of `rounds`."""
        cdef RouteMatch m
        cdef int i, method_id = router._method_id(method)
        cdef int sink = 0
        router._check_compiled()
        host_bytes = host.encode("ascii")
        path_bytes = path.encode("utf-8")
        cdef const char* h = host_bytes
        cdef const char* p = path_bytes
        cdef Py_ssize_t hl = len(host_bytes), pl = len(path_bytes)
        start = _bench_clock_ns()
        for i in range(rounds):
            sink += router.match(h, hl, p, pl, method_id, &m)
        elapsed = _bench_clock_ns() - start
        if sink < 0:
            raise AssertionError("unreachable")
        return elapsed / rounds

    def _bench_decide(RateLimiter limiter, list keys, int rounds):
        """Nanoseconds per RateLimiter.decide() over `rounds` passes of `keys`, timed around a C
        loop (what a check costs inside the core, without a Python call per check)."""
        cdef Py_ssize_t n = len(keys), i
        cdef int r
        cdef RateDecision d
        cdef const char** ptrs = <const char**>malloc(max(1, n) * sizeof(char*))
        cdef Py_ssize_t* lens = <Py_ssize_t*>malloc(max(1, n) * sizeof(Py_ssize_t))
        cdef int64_t start, end
        if ptrs == NULL or lens == NULL:
            free(ptrs)
            free(lens)
            raise MemoryError()
        for i in range(n):
            ptrs[i] = PyBytes_AS_STRING(keys[i])
            lens[i] = PyBytes_GET_SIZE(keys[i])
        start = _mono_ns()
        for r in range(rounds):
            for i in range(n):
                limiter.decide(ptrs[i], lens[i], start, limiter.cost, &d)
        end = _mono_ns()
        free(ptrs)
        free(lens)
        return (end - start) / max(1, rounds * n)
