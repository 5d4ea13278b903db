# plan.pxi: the compiled plan the core executes, built once per configuration by
# fastgw/plan.py: per-route actions, the typed limits and timeouts, the router.
#
# Everything here is decided before the first request (DESIGN.md principle 4); the request
# path only reads it.

import ipaddress as _ipaddress


cdef class RouteAction:
    """What to do with a request once its route is known (built once per Plan)."""

    # The route's response body stages (body.pxi) in order, the first sees the upstream's

    def __init__(self, str name, int route_id, UpstreamPool pool, strip_prefix,
                 rewrites, bint preserve_host, CoreChain chain, *, double connect_timeout,
                 double read_timeout, double send_timeout, int64_t max_body_bytes,
                 body_stages=()):
        self.name = name
        self.metric_slot = -1
        self.name_bytes = name.encode("utf-8")
        self.log_field = b',"route":' + _orjson.dumps(name)
        self.route_id = route_id
        self.pool = pool
        self.strip_prefix = strip_prefix.encode() if strip_prefix else None
        self.rewrites = rewrites
        self.preserve_host = preserve_host
        self.chain = chain
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.send_timeout = send_timeout
        self.max_body_bytes = max_body_bytes
        self.body_stages = _body_stages(body_stages)

    def _set_body_stages(self, stages):
        """Internal, for tests: plug body stages into a route of a running plan (a plan
        gets them through the constructor). Takes effect at the next response head."""
        self.body_stages = _body_stages(stages)


cdef tuple _body_stages(object stages):
    cdef tuple found = tuple(stages)
    for stage in found:
        if not isinstance(stage, BodyStage):
            raise TypeError(f"body stages are BodyStage objects, not {type(stage).__name__}")
    return found or None


cdef class CoreLimits:
    """The gateway's request limits as the core applies them. Every value is required:
    their defaults are the config schema's (fastgw/config/schema.py), filled in plan.py."""

    def __init__(self, *, Py_ssize_t max_header_bytes, Py_ssize_t max_headers,
                 Py_ssize_t max_target_bytes, int64_t max_body_bytes,
                 str headers_with_underscores, bint merge_slashes, str path_semicolons):
        if headers_with_underscores not in UNDERSCORE_MODES:
            raise ValueError(f"headers_with_underscores must be one of "
                             f"{sorted(UNDERSCORE_MODES)}, got {headers_with_underscores!r}")
        if path_semicolons not in SEMICOLON_MODES:
            raise ValueError(f"path_semicolons must be one of "
                             f"{sorted(SEMICOLON_MODES)}, got {path_semicolons!r}")
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_target_bytes = max_target_bytes
        self.max_body_bytes = max_body_bytes
        self.headers_with_underscores = headers_with_underscores
        self.merge_slashes = merge_slashes
        self.path_semicolons = path_semicolons


cdef class CoreTimeouts:
    """The gateway's client and upstream timeouts in seconds, all required (see
    CoreLimits); a route's own upstream timeouts are on its RouteAction."""

    def __init__(self, *, double client_header, double client_body_idle,
                 double keepalive_idle, double upstream_read, double upstream_send,
                 double client_send):
        self.client_header = client_header
        self.client_body_idle = client_body_idle
        self.keepalive_idle = keepalive_idle
        self.upstream_read = upstream_read
        self.upstream_send = upstream_send
        self.client_send = client_send


cdef class CorePlan:
    """The executable part of a Plan: router, route actions, limits and timeouts."""

    def __init__(self, Router router, list actions, CoreLimits limits not None,
                 CoreTimeouts timeouts not None, trusted_networks, dict pools not None):
        self.router = router
        self.actions = actions
        self.pools = pools
        self.limits = limits
        self.timeouts = timeouts
        # PERF: copied into C fields, read per request without a second indirection.
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_target_bytes = limits.max_target_bytes
        self.max_body_bytes = limits.max_body_bytes
        self.underscores = UNDERSCORE_MODES[limits.headers_with_underscores]
        self.merge_slashes = limits.merge_slashes
        self.semicolons = SEMICOLON_MODES[limits.path_semicolons]
        self.client_header = timeouts.client_header
        self.client_body_idle = timeouts.client_body_idle
        self.keepalive_idle = timeouts.keepalive_idle
        self.upstream_read = timeouts.upstream_read
        self.upstream_send = timeouts.upstream_send
        self.client_send = timeouts.client_send
        self.trusted_networks = tuple(trusted_networks)

    cdef bint is_trusted(self, str ip):
        if not self.trusted_networks or not ip:
            return False
        try:
            addr = _ipaddress.ip_address(ip)
        except ValueError:
            return False
        for network in self.trusted_networks:
            if addr.version == network.version and addr in network:
                return True
        return False
