# cython: language_level=3
"""fastgw._core: the compiled hot path.

One extension built from fragments included in pipeline order (the uvloop layout):
constants and error codes, the PROXY protocol header that may open a connection, the
HTTP/1.1 parsers, the router, the plan, the upstream pool, the client connection and then
the stages each request's Exchange runs through (docs/architecture.md draws them). Python
modules configure it; requests never leave it unless a policy written in Python is on the
route.
"""

include "_native/consts.pxi"        # error codes, header and method ids, the error table
include "_native/proxyproto.pxi"    # the PROXY header that may open a connection
include "_native/http1.pxi"         # the HTTP/1.1 request and response parsers
include "_native/router.pxi"        # host, path and method -> route
include "_native/router_build.pxi"  # compile(): the router's C tables
include "_native/router_explain.pxi"  # lookup, explain, shadowed: the router for tools
include "_native/serialize.pxi"     # the shared head buffer, status lines
include "_native/observe.pxi"       # metrics counters and the access log writer
include "_native/errors.pxi"        # the one reporter of internal errors
include "_native/ratelimit.pxi"     # GCRA tables, concurrency limits, Redis leases
include "_native/plan.pxi"          # the compiled plan: route actions, limits, timeouts
include "_native/upstream.pxi"      # targets, their pools, target selection, upstream protocol
include "_native/policy.pxi"        # the compiled chain and what Python policies see
include "_native/exchange.pxi"      # per-request state
include "_native/engine.pxi"        # connections, the clock tick, timeouts
include "_native/protocol.pxi"      # one client connection (asyncio callbacks, flow control)
# The stages an exchange runs through, in order:
include "_native/request.pxi"       # request head: ids, trace, body, end, parse errors
include "_native/route.pxi"         # route: match, the route's limits
include "_native/chain.pxi"         # chain: policy steps, limits, hooks
include "_native/steps.pxi"         # the compiled steps: one class per kind
include "_native/pick.pxi"          # pick a target
include "_native/forward.pxi"       # upstream exchange: head, connect, body, failures
include "_native/relay.pxi"         # response relay and local answers
include "_native/body.pxi"          # response body stages: observe or transform the body
include "_native/record.pxi"        # record: metrics, access log, tracing
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
