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

# The compiled plan: what each route does, the typed limits and timeouts.
include "_native/plan.pxd"
# Upstream targets, their pools and selectors, the upstream protocol.
include "_native/upstream.pxd"
# The compiled chain and what Python policies see of a request and a response.
include "_native/policy.pxd"
# The state of one request and its answer.
include "_native/exchange.pxd"
# Connections, the clock tick, timeouts.
include "_native/engine.pxd"
# One client connection.
include "_native/protocol.pxd"
# The stages an exchange runs through, in order.
include "_native/request.pxd"
include "_native/route.pxd"
include "_native/chain.pxd"
include "_native/steps.pxd"
include "_native/pick.pxd"
include "_native/forward.pxd"
include "_native/relay.pxd"
include "_native/body.pxd"
include "_native/record.pxd"
