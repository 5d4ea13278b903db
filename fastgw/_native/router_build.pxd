# router_build.pxd: Router.compile(), the C tables from what add() recorded (code:
# router_build.pxi).
#
# plan.py compiles each router once, before the first request: Router.compile (router)
# calls _router_compile, which builds every trie, candidate run and the host table into
# the router's _RouterTables, then sets Router._compiled.

# One (pattern, host level) pair on its way into a trie node's candidate run.
cdef struct _RouterBuildCand:
    int32_t node
    int32_t kind          # 0: the pattern ends at node; 1: its {*rest} starts after node
    int32_t unconditional
    int32_t route_id
    int32_t pattern_id
    int32_t order         # index of its (pattern, host level) pair
    uint32_t methods


# <- Router.compile (router): build the tables once; a second call does nothing
cdef _router_compile(Router router)
