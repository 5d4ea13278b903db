# cython: language_level=3
"""fastgw._core: the compiled hot path.

One extension built from fragments included in pipeline order (the uvloop layout):
constants and error codes, the PROXY protocol header that may open a connection, the
HTTP/1.1 parsers, the router, the upstream pool and the client/upstream protocols. Python
modules configure it; requests never leave it unless a policy written in Python is on the
route.
"""

include "_native/consts.pxi"
include "_native/proxyproto.pxi"
include "_native/http1.pxi"
include "_native/router.pxi"
include "_native/serialize.pxi"
include "_native/observe.pxi"
include "_native/errors.pxi"
include "_native/ratelimit.pxi"
include "_native/upstream.pxi"
include "_native/policy.pxi"
include "_native/protocol.pxi"
# Empty unless built with FASTGW_BENCH=1 (`make bench`): the benchmarks' C-loop entry points.
include "_native/bench.pxi"


cdef extern from *:
    """
    #ifndef FASTGW_CYTHON_VERSION
    #define FASTGW_CYTHON_VERSION "unknown"
    #endif
    """
    const char* FASTGW_CYTHON_VERSION
    int FASTGW_DEBUG


def build_info():
    """How this core was built (for `fastgw version`)."""
    return {
        "cython": FASTGW_CYTHON_VERSION.decode("ascii"),
        "debug": bool(FASTGW_DEBUG),
    }
