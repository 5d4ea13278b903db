# router.pxd: host + path + method -> route, in C tables compile() builds once (code:
# router.pxi, which also states the precedence contract).
#
# A request meets Router.method_bit() and Router.match_fields(), both called from
# ClientProtocol.on_request_head (protocol) on the RequestParser's fields, then the
# RouteMatch it filled. Everything else runs before the first request: plan.py adds the
# routes, compiles them (router_build), and asks shadowed(); `fastgw routes` explains and
# describes them (router_explain).

from libc.stdint cimport int32_t


# What match() found: the route and pattern ids, the captures as offsets into the path.
# <- filled by Router.match; read by ClientProtocol (protocol): rewrite, params, rate keys
cdef struct RouteMatch:
    int route_id
    int pattern_id                            # global id returned by add() for the pattern
    int n_params
    Py_ssize_t param_off[MAX_ROUTE_PARAMS]    # offsets into the path given to match()
    Py_ssize_t param_len[MAX_ROUTE_PARAMS]
    unsigned int allowed_methods              # (1 << M_*) bits, with MATCH_METHOD_NOT_ALLOWED


# <- returned by Router.match / match_fields; ClientProtocol.on_request_head answers 404 or
#    405 (with allowed_methods) on the last two
cdef enum MatchResult:
    MATCH_FOUND = 0
    MATCH_NOT_FOUND = 1
    MATCH_METHOD_NOT_ALLOWED = 2


# <- filled by ClientProtocol.on_request_head (protocol) from a RequestParser's field arrays,
#    and by _router_lookup (router_explain) from Python's
cdef struct RequestFields:
    # What conditions look at, borrowed from the request parser for one match() call.
    const char* head
    int n_headers
    const Py_ssize_t* name_off
    const Py_ssize_t* name_len
    const Py_ssize_t* value_off
    const Py_ssize_t* value_len
    const char* query     # raw query without "?", or NULL
    Py_ssize_t query_len


# The tables compile() builds (router_build) and match() walks.
cdef struct _RouterEdge:
    uint32_t hash
    int32_t length
    int32_t offset        # into _RouterTables.bytes
    int32_t child


cdef struct _RouterNode:
    int32_t edge_first
    int32_t edge_count
    int32_t slot_first    # -1: few edges, scan them; else an open-addressing table in slots
    uint32_t slot_mask
    int32_t param_child   # -1: none
    int32_t cand_first    # patterns ending at this node
    int32_t cand_count
    int32_t catchall_first  # patterns whose {*rest} starts after this node
    int32_t catchall_count


cdef struct _RouterCandidate:
    int32_t route_id
    int32_t pattern_id
    uint32_t methods
    int32_t cond_first    # into _RouterTables.conds
    int32_t cond_count    # 0: unconditional


cdef struct _RouterCondition:
    int32_t kind
    int32_t name_offset   # into _RouterTables.bytes; header names lowercase
    int32_t name_length
    int32_t value_offset
    int32_t value_length  # -1: any value, the field only has to be present


cdef struct _RouterHost:
    uint32_t hash
    int32_t length
    int32_t offset        # into _RouterTables.bytes


cdef struct _RouterTables:
    _RouterNode* nodes
    _RouterEdge* edges
    int32_t* slots
    _RouterCandidate* cands
    _RouterCondition* conds
    const RequestFields* request   # set around one match() call; NULL: conditions fail
    char* bytes
    _RouterHost* hosts
    int32_t* host_slots
    uint32_t host_slot_mask
    uint64_t host_lengths  # bit (length % 64) set for every key length: cheap miss filter
    int32_t n_hosts
    int32_t n_wildcards
    int32_t* host_roots   # [host index * n_tiers + tier] -> trie root or -1
    int32_t* any_roots    # [tier] -> trie root of host-less routes or -1
    int32_t n_tiers


# <- _router_child (router), _router_compile (router_build): FNV-1a of a literal segment
#    (inline in router.pxi)
cdef uint32_t _router_fnv1a(const char* data, Py_ssize_t length) noexcept nogil
# <- _router_walk (router), _router_cover_walk and _router_path_matches (router_explain): a
#    node's static child for one segment, or -1 (inline in router.pxi)
cdef int32_t _router_child(_RouterTables* t, _RouterNode* node, const char* seg,
                           Py_ssize_t length) noexcept nogil


# What add() records (router.pxi) and compile() (router_build) builds from.
cdef struct _RouterVec:
    # A growable int32 array: add() records routes, patterns and segments in these, so that
    # compile() builds the tables from C data.
    int32_t* data
    Py_ssize_t n
    Py_ssize_t cap


# <- Router.add, Router._add_pattern (router), _router_compile (router_build): append one
#    value, growing the array
cdef int _router_vec_push(_RouterVec* v, int32_t value) except -1
# <- Router.__dealloc__ (router), _router_compile (router_build)
cdef void _router_vec_free(_RouterVec* v) noexcept


# Final: protocol's calls to match_fields() are direct C calls.
@cython.final
cdef class Router:
    cdef _RouterTables _t
    cdef bint _compiled
    # Routes and patterns as add() recorded them, indexed by add order (route index) and
    # pattern id. Literal segments point into _pool, which compile() copies into the tables.
    cdef _RouterVec _rts           # _RT_STRIDE int32 per route
    cdef _RouterVec _pats          # _PAT_STRIDE int32 per pattern
    cdef _RouterVec _segs          # _SEG_STRIDE int32 per pattern segment
    cdef bytearray _pool
    cdef dict _route_index         # route id -> route index
    cdef list _route_hosts         # route index -> (host keys, host names as given, lowercase)
    cdef list _route_methods       # route index -> method names, or None for any method
    cdef list _pat_text            # pattern id -> pattern as given
    cdef list _pat_names           # pattern id -> capture names (tuple)
    cdef dict _conditions          # route index -> ((kind, name bytes, value bytes or None), ..)
    cdef dict _method_cache        # tuple of method names -> (mask, names)
    cdef dict _extra_methods       # method without an M_* id -> its bit, in the order named
    cdef list _extra_method_bytes  # [(name bytes, bit)] of _extra_methods, for the hot path
    # Filled by compile(): for shadowed(), every (pattern, host level) pair and its candidate.
    cdef _RouterVec _route_levels  # n_routes + 1 offsets into the level ids that follow
    cdef _RouterVec _pairs         # _PAIR_STRIDE int32 per pair, pattern by pattern
    cdef list _level_keys          # level id -> (priority, host key or None)
    cdef dict _host_index          # host key -> host index
    cdef list _tiers               # priorities, highest first
    cdef list _host_keys           # host index -> key bytes

    # The request path, in the order a request meets it.
    # <- ClientProtocol.on_request_head (protocol): the method's bit, PURGE and such included
    cdef int method_bit(self, int method_id, const char* method,
                        Py_ssize_t method_len) noexcept
    # <- ClientProtocol.on_request_head (protocol), _router_lookup (router_explain): match()
    #    with conditions' fields
    cdef int match_fields(self, const char* host, Py_ssize_t host_len, const char* path,
                          Py_ssize_t path_len, int method_id, const RequestFields* fields,
                          RouteMatch* out) noexcept
    # <- match_fields, _bench_match (bench): route one request through the C tables
    cdef int match(self, const char* host, Py_ssize_t host_len, const char* path,
                   Py_ssize_t path_len, int method_id, RouteMatch* out) noexcept

    # Plan time (plan.py calls add(), compile(), shadowed()) and the tools; compile() and
    # the tools are module functions on the router (router_build, router_explain).
    # <- add: a method list's mask and names, parsed once per distinct list
    cdef tuple _methods(self, methods)
    # <- add: a pattern's segments into _segs and _pool, or None if refused
    cdef object _add_pattern(self, object pattern, int32_t route_index)
    # <- _router_compile (router_build), __dealloc__
    cdef void _free_tables(self) noexcept
    # <- _router_lookup, _router_explain (router_explain), _bench_match (bench): a method
    #    name's id, the router's own included
    cdef int _method_id(self, str method)
    # <- pattern_params, common_params, pattern_text: refuse an unknown pattern id
    cdef _check_pattern_id(self, int pattern_id)
