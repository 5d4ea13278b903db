# router_explain.pxd: the router's answers for people and tools (code: router_explain.pxi).
#
# Each function backs the Router method of the same name (router), which Python calls:
# plan.py asks lookup(), explain() and shadowed(); `fastgw routes` prints describe() and
# explain(); the tests call them all. None is on the request path.

# What the walk of _router_shadowed found so far: the best route that always wins over one
# (pattern, host level).
cdef struct _RouterCover:
    _RouterTables* t
    const int32_t* pats
    const int32_t* segs
    uint32_t mask       # the methods it must cover
    int32_t best        # route index (the earliest added wins), -1: none yet


# <- Router.lookup (router): match_fields() on Python's method, host, path, headers and query
cdef tuple _router_lookup(Router router, str method, str host, str path, headers, query)
# <- Router.describe (router): one dict per pattern
cdef list _router_describe(Router router)
# <- Router._levels (router), _router_explain: (priority, host key, root) of every level
#    match() searches, in its order
cdef list _router_levels(Router router, bytes host)
# <- Router._path_matches (router), _router_explain: the candidates of one trie matching a
#    path, in match()'s order
cdef list _router_path_matches(Router router, int32_t root, bytes path)
# <- Router._why (router), _router_explain: why one pattern ranks before another in a trie walk
cdef str _router_why(Router router, winner, other, names)
# <- Router.explain (router): the lines of `fastgw routes --explain`
cdef list _router_explain(Router router, str method, str host, str path, route_names)
# <- Router.shadowed (router): [(route_id, by_route_id)] of routes that never win
cdef list _router_shadowed(Router router)
