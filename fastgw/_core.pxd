# fastgw/_core.pxd: the declared map of the compiled core, fastgw._core.
#
# Cython reads this file before _core.pyx: it declares every cdef class of the core (its
# fields and every cdef method), the structs and enums, and the cdef functions one fragment
# calls in another. One .pxd per fragment of _native/, included in the order _core.pyx
# includes the fragments, which is the order a request meets them; the code stays in the
# .pxi. In each .pxd, a comment above an entry says who calls or reads it ("<- caller
# (fragment)"), then what it does.

cimport cython

# Constants and the error codes every fragment shares.
include "_native/consts.pxd"
# The PROXY protocol header a connection may open with.
include "_native/proxyproto.pxd"
# The HTTP/1.1 parsers: the request's head and body, later the upstream's response.
include "_native/http1.pxd"
# Host + path + method -> route.
include "_native/router.pxd"
# Router.compile(): the C tables match() walks.
include "_native/router_build.pxd"
# The router for people and tools: lookup, describe, explain, shadowed.
include "_native/router_explain.pxd"
# The buffer every outgoing head is written into.
include "_native/serialize.pxd"
# Metrics, the access log, the clock.
include "_native/observe.pxd"
# Where an unexpected exception goes.
include "_native/errors.pxd"
# Rate and concurrency limits.
include "_native/ratelimit.pxd"

# --- the other fragments -------------------------------------------------------------------
# Their declarations go here, one `include "_native/<name>.pxd"` line each, in this order:
# plan, upstream, policy, exchange, engine, protocol, then the stages a request passes
# through: request, route, chain, pick, forward, relay, record. Until a fragment has its
# .pxd, its classes are declared in its .pxi as before.
