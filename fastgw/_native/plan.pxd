# plan.pxd: what plan.py compiles once per configuration and the request path only reads: each
# route's action, the typed limits and timeouts, the router and pools of one plan. (code: plan.pxi)

cdef class RouteAction:
    cdef readonly str name
    cdef readonly int route_id
    cdef readonly UpstreamPool pool
    cdef bytes strip_prefix               # None when the route does not strip
    cdef dict rewrites                    # pattern_id -> tuple of bytes / int parts, or None
    cdef bint preserve_host
    cdef readonly CoreChain chain         # None when the route has no policies
    cdef bytes name_bytes
    cdef bytes log_field                  # ',"route":"NAME"' for the access log
    cdef int metric_slot                  # this route in the engine's CoreMetrics
    # Effective limits, the route's own or the global ones (resolved in plan.py).
    cdef readonly double connect_timeout
    cdef readonly double read_timeout
    cdef readonly double send_timeout
    cdef readonly int64_t max_body_bytes
    # bytes; None when it has none (the relay tests this one pointer).
    cdef readonly tuple body_stages


# <- this fragment
cdef tuple _body_stages(object stages)


cdef class CoreLimits:
    cdef readonly Py_ssize_t max_header_bytes
    cdef readonly Py_ssize_t max_headers
    cdef readonly Py_ssize_t max_target_bytes
    cdef readonly int64_t max_body_bytes       # the largest any route allows (plan.py)
    cdef readonly str headers_with_underscores
    cdef readonly bint merge_slashes
    cdef readonly str path_semicolons


cdef class CoreTimeouts:
    cdef readonly double client_header
    cdef readonly double client_body_idle
    cdef readonly double keepalive_idle
    cdef readonly double upstream_read
    cdef readonly double upstream_send
    cdef readonly double client_send


cdef class CorePlan:
    cdef readonly Router router
    cdef readonly list actions            # RouteAction per route id
    cdef Py_ssize_t max_header_bytes
    cdef Py_ssize_t max_headers
    cdef Py_ssize_t max_target_bytes
    # The largest body any route accepts: the parser's limit until the route is known.
    cdef int64_t max_body_bytes
    cdef int underscores                  # UNDERSCORES_* for request field names
    cdef bint merge_slashes               # "//" in a request path is one "/"
    cdef int semicolons                   # SEMICOLONS_* for ";" in a request path
    cdef double client_header
    cdef double client_body_idle
    cdef double keepalive_idle
    cdef double upstream_read
    cdef double upstream_send
    cdef double client_send
    cdef tuple trusted_networks
    cdef dict pools                       # upstream name -> UpstreamPool (for set_upstream)
    cdef readonly CoreLimits limits
    cdef readonly CoreTimeouts timeouts

    # <- protocol, request
    cdef bint is_trusted(self, str ip)
