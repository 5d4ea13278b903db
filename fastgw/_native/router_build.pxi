# router_build.pxi: Router.compile(), which turns the routes add() recorded (router.pxi)
# into the C tables match() walks: one path trie per (priority tier, host level), the
# candidate runs of every trie node in precedence order, the conditions, and the host hash
# table. It runs once per plan, before the first request.

from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcmp, memcpy


cdef inline uint32_t _router_fnv1a_reversed(const char* data, Py_ssize_t length) noexcept nogil:
    # Host keys hash from the last byte to the first, so one pass over a request host yields
    # the hash of every suffix (see Router.match).
    cdef uint32_t h = 2166136261u
    cdef Py_ssize_t i = length
    while i > 0:
        i -= 1
        h = (h ^ <unsigned char>data[i]) * 16777619u
    return h


cdef int _router_build_cand_cmp(const void* pa, const void* pb) noexcept nogil:
    # Candidate runs: by node, ends before {*rest}, conditional routes first, then route id
    # and pattern id (the precedence of routes on one trie node).
    cdef const _RouterBuildCand* a = <const _RouterBuildCand*>pa
    cdef const _RouterBuildCand* b = <const _RouterBuildCand*>pb
    if a.node != b.node:
        return -1 if a.node < b.node else 1
    if a.kind != b.kind:
        return -1 if a.kind < b.kind else 1
    if a.unconditional != b.unconditional:
        return -1 if a.unconditional < b.unconditional else 1
    if a.route_id != b.route_id:
        return -1 if a.route_id < b.route_id else 1
    if a.pattern_id != b.pattern_id:
        return -1 if a.pattern_id < b.pattern_id else 1
    return 0


cdef inline void _router_node_init(_RouterNode* node) noexcept nogil:
    node.edge_first = 0
    node.edge_count = 0
    node.slot_first = -1
    node.slot_mask = 0
    node.param_child = -1
    node.cand_first = 0
    node.cand_count = 0
    node.catchall_first = 0
    node.catchall_count = 0


cdef _router_compile(Router router):
    cdef _RouterTables* t = &router._t
    cdef Py_ssize_t n_routes = router._rts.n // _RT_STRIDE
    cdef Py_ssize_t n_patterns = router._pats.n // _PAT_STRIDE
    cdef Py_ssize_t n_levels, n_pairs = 0, node_cap, edge_cap, n_nodes = 0, n_edges = 0
    cdef Py_ssize_t p, r, li, si, i, k, n_slots
    cdef int32_t node, child, level, seg_first, seg_end, kind_end, length, run_first
    cdef uint32_t h, j, table_mask, size
    cdef int32_t* rts = router._rts.data
    cdef int32_t* pats = router._pats.data
    cdef int32_t* segs = router._segs.data
    cdef int32_t* levels_of = NULL
    cdef int32_t* level_root = NULL
    cdef int32_t* edge_parent = NULL
    cdef int32_t* edge_table = NULL
    cdef _RouterEdge* build_edges = NULL
    cdef _RouterBuildCand* build_cands = NULL
    cdef _RouterBuildCand* bc
    cdef _RouterEdge* edge
    cdef _RouterNode* nodes
    cdef const char* pool
    if router._compiled:
        return
    router._free_tables()  # a compile() that failed half-way may have left tables
    _router_vec_free(&router._route_levels)
    _router_vec_free(&router._pairs)
    # Host levels: one trie per (priority, host key or None); each route's level ids.
    level_ids = {}
    router._level_keys = level_keys = []
    for r in range(n_routes):
        _router_vec_push(&router._route_levels, 0)
    _router_vec_push(&router._route_levels, 0)
    for r in range(n_routes):
        router._route_levels.data[r] = <int32_t>(router._route_levels.n)
        priority = rts[r * _RT_STRIDE + _RT_PRIORITY]
        for key in router._route_hosts[r][0] or (None,):
            level_key = (priority, key)
            level = level_ids.get(level_key, -1)
            if level < 0:
                level = level_ids[level_key] = len(level_keys)
                level_keys.append(level_key)
            _router_vec_push(&router._route_levels, level)
    router._route_levels.data[n_routes] = <int32_t>router._route_levels.n
    levels_of = router._route_levels.data
    n_levels = len(level_keys)
    # Each segment of each (pattern, level) pair adds at most one node and one edge.
    edge_cap = 0
    for p in range(n_patterns):
        r = pats[p * _PAT_STRIDE + _PAT_ROUTE]
        k = levels_of[r + 1] - levels_of[r]
        n_pairs += k
        edge_cap += k * pats[p * _PAT_STRIDE + _PAT_SEG_COUNT]
    node_cap = n_levels + edge_cap
    size = 1
    while size < 2 * edge_cap + 2:
        size *= 2
    table_mask = size - 1
    try:
        t.nodes = nodes = <_RouterNode*>malloc(max(1, node_cap) * sizeof(_RouterNode))
        t.cands = <_RouterCandidate*>malloc(max(1, n_pairs) * sizeof(_RouterCandidate))
        t.edges = <_RouterEdge*>malloc(max(1, edge_cap) * sizeof(_RouterEdge))
        level_root = <int32_t*>malloc(max(1, n_levels) * sizeof(int32_t))
        edge_parent = <int32_t*>malloc(max(1, edge_cap) * sizeof(int32_t))
        edge_table = <int32_t*>malloc(size * sizeof(int32_t))
        build_edges = <_RouterEdge*>malloc(max(1, edge_cap) * sizeof(_RouterEdge))
        build_cands = <_RouterBuildCand*>malloc(
            max(1, n_pairs) * sizeof(_RouterBuildCand))
        if (nodes == NULL or t.cands == NULL or t.edges == NULL or level_root == NULL
                or edge_parent == NULL or edge_table == NULL or build_edges == NULL
                or build_cands == NULL):
            raise MemoryError()
        for i in range(n_levels):
            level_root[i] = -1
        for i in range(size):
            edge_table[i] = -1
        pool = router._pool
        # PERF: the tries are built straight into C arrays; static children are found
        # through one hash table keyed by (parent node, segment bytes).
        k = 0
        for p in range(n_patterns):
            r = pats[p * _PAT_STRIDE + _PAT_ROUTE]
            seg_first = pats[p * _PAT_STRIDE + _PAT_SEG_FIRST]
            seg_end = seg_first + pats[p * _PAT_STRIDE + _PAT_SEG_COUNT]
            for li in range(levels_of[r], levels_of[r + 1]):
                level = levels_of[li]
                node = level_root[level]
                if node < 0:
                    node = level_root[level] = <int32_t>n_nodes
                    _router_node_init(&nodes[n_nodes])
                    n_nodes += 1
                kind_end = 0
                for si in range(seg_first, seg_end):
                    if segs[si * _SEG_STRIDE + _SEG_KIND] == _ROUTER_SEG_CATCHALL:
                        kind_end = 1
                        break
                    if segs[si * _SEG_STRIDE + _SEG_KIND] == _ROUTER_SEG_PARAM:
                        if nodes[node].param_child < 0:
                            nodes[node].param_child = <int32_t>n_nodes
                            _router_node_init(&nodes[n_nodes])
                            n_nodes += 1
                        node = nodes[node].param_child
                        continue
                    length = segs[si * _SEG_STRIDE + _SEG_LENGTH]
                    run_first = segs[si * _SEG_STRIDE + _SEG_OFFSET]
                    h = _router_fnv1a(pool + run_first, length)
                    j = (h ^ (<uint32_t>node * 2654435761u)) & table_mask
                    while True:
                        i = edge_table[j]
                        if i < 0:
                            child = <int32_t>n_nodes
                            _router_node_init(&nodes[n_nodes])
                            n_nodes += 1
                            edge = &build_edges[n_edges]
                            edge.hash = h
                            edge.length = length
                            edge.offset = run_first
                            edge.child = child
                            edge_parent[n_edges] = node
                            edge_table[j] = <int32_t>n_edges
                            nodes[node].edge_count += 1
                            n_edges += 1
                            break
                        edge = &build_edges[i]
                        if (edge_parent[i] == node and edge.hash == h
                                and edge.length == length
                                and memcmp(pool + edge.offset, pool + run_first,
                                           length) == 0):
                            child = edge.child
                            break
                        j = (j + 1) & table_mask
                    node = child
                bc = &build_cands[k]
                bc.node = node
                bc.kind = kind_end
                bc.unconditional = 1 - rts[r * _RT_STRIDE + _RT_COND]
                bc.route_id = rts[r * _RT_STRIDE + _RT_ID]
                bc.pattern_id = <int32_t>p
                bc.order = <int32_t>k
                bc.methods = <uint32_t>rts[r * _RT_STRIDE + _RT_MASK]
                k += 1
        # Static children of a node are contiguous in t.edges.
        i = 0
        for node in range(n_nodes):
            nodes[node].edge_first = <int32_t>i
            i += nodes[node].edge_count
            nodes[node].edge_count = 0
        for i in range(n_edges):
            node = edge_parent[i]
            t.edges[nodes[node].edge_first + nodes[node].edge_count] = build_edges[i]
            nodes[node].edge_count += 1
        n_slots = 0
        for node in range(n_nodes):
            if nodes[node].edge_count > _ROUTER_LINEAR_EDGES:
                size = 1
                while size < 2 * <uint32_t>nodes[node].edge_count:
                    size *= 2
                nodes[node].slot_first = <int32_t>n_slots
                nodes[node].slot_mask = size - 1
                n_slots += size
        t.slots = <int32_t*>malloc(max(1, n_slots) * sizeof(int32_t))
        if t.slots == NULL:
            raise MemoryError()
        for i in range(n_slots):
            t.slots[i] = -1
        for node in range(n_nodes):
            if nodes[node].slot_first >= 0:
                for i in range(nodes[node].edge_first,
                               nodes[node].edge_first + nodes[node].edge_count):
                    j = t.edges[i].hash & nodes[node].slot_mask
                    while t.slots[nodes[node].slot_first + j] >= 0:
                        j = (j + 1) & nodes[node].slot_mask
                    t.slots[nodes[node].slot_first + j] = <int32_t>i
        # Candidates: sorted into one run per (node, kind), in precedence order.
        qsort(build_cands, n_pairs, sizeof(_RouterBuildCand), _router_build_cand_cmp)
        data = bytearray(router._pool)
        cond_runs = _router_compile_conditions(router, data)
        for i in range(n_pairs):
            _router_vec_push(&router._pairs, 0)
            _router_vec_push(&router._pairs, 0)
            _router_vec_push(&router._pairs, 0)
        i = 0
        while i < n_pairs:
            node = build_cands[i].node
            kind_end = build_cands[i].kind
            run_first = <int32_t>i
            while i < n_pairs and build_cands[i].node == node and (
                    build_cands[i].kind == kind_end):
                bc = &build_cands[i]
                t.cands[i].route_id = bc.route_id
                t.cands[i].pattern_id = bc.pattern_id
                t.cands[i].methods = bc.methods
                t.cands[i].cond_first = 0
                t.cands[i].cond_count = 0
                if not bc.unconditional:
                    r = pats[bc.pattern_id * _PAT_STRIDE + _PAT_ROUTE]
                    t.cands[i].cond_first, t.cands[i].cond_count = cond_runs[r]
                router._pairs.data[bc.order * _PAIR_STRIDE + _PAIR_CAND] = <int32_t>i
                i += 1
            if kind_end:
                nodes[node].catchall_first = run_first
                nodes[node].catchall_count = <int32_t>i - run_first
            else:
                nodes[node].cand_first = run_first
                nodes[node].cand_count = <int32_t>i - run_first
            for k in range(run_first, i):
                router._pairs.data[build_cands[k].order * _PAIR_STRIDE + _PAIR_RUN_FIRST] = (
                    run_first)
                router._pairs.data[build_cands[k].order * _PAIR_STRIDE + _PAIR_RUN_COUNT] = (
                    <int32_t>i - run_first)
        roots = {level_keys[i]: level_root[i] for i in range(n_levels)}
    finally:
        free(level_root)
        free(edge_parent)
        free(edge_table)
        free(build_edges)
        free(build_cands)
    _router_compile_hosts(router, data, roots)
    router._compiled = True


cdef dict _router_compile_conditions(Router router, bytearray data):
    # One run per conditional route; names and values go to the byte pool.
    cdef _RouterCondition* cond
    cdef Py_ssize_t i = 0, n = 0
    cond_runs = {}
    for conditions in router._conditions.values():
        n += len(conditions)
    router._t.conds = <_RouterCondition*>malloc(max(1, n) * sizeof(_RouterCondition))
    if router._t.conds == NULL:
        raise MemoryError()
    for route_index, conditions in router._conditions.items():
        cond_runs[route_index] = (i, len(conditions))
        for kind, name, value in conditions:
            cond = &router._t.conds[i]
            cond.kind = kind
            cond.name_offset = len(data)
            cond.name_length = len(name)
            data += name
            cond.value_offset = len(data)
            cond.value_length = -1
            if value is not None:
                cond.value_length = len(value)
                data += value
            i += 1
    return cond_runs


cdef _router_compile_hosts(Router router, bytearray data, dict roots):
    # The host hash table, the roots of every (tier, host level) and the byte pool.
    cdef _RouterTables* t = &router._t
    cdef Py_ssize_t i, n_tiers, n_hosts
    cdef uint32_t size = 1
    cdef uint32_t j
    router._tiers = sorted({key[0] for key in roots}, reverse=True)
    router._host_keys = sorted({key[1] for key in roots if key[1] is not None})
    router._host_index = {key: i for i, key in enumerate(router._host_keys)}
    n_tiers = len(router._tiers)
    n_hosts = len(router._host_keys)
    host_offsets = []
    for key in router._host_keys:
        host_offsets.append(len(data))
        data += key
    t.bytes = <char*>malloc(max(1, len(data)))
    t.hosts = <_RouterHost*>malloc(max(1, n_hosts) * sizeof(_RouterHost))
    while size < 2 * n_hosts + 2:
        size *= 2
    t.host_slots = <int32_t*>malloc(size * sizeof(int32_t))
    t.host_roots = <int32_t*>malloc(max(1, n_hosts * n_tiers) * sizeof(int32_t))
    t.any_roots = <int32_t*>malloc(max(1, n_tiers) * sizeof(int32_t))
    if (t.bytes == NULL or t.hosts == NULL or t.host_slots == NULL
            or t.host_roots == NULL or t.any_roots == NULL):
        raise MemoryError()
    if len(data):
        memcpy(t.bytes, <char*>data, len(data))
    t.host_slot_mask = size - 1
    for j in range(size):
        t.host_slots[j] = -1
    for i, key in enumerate(router._host_keys):
        t.hosts[i].hash = _router_fnv1a_reversed(key, len(key))
        t.host_lengths |= (<uint64_t>1) << (len(key) & 63)
        t.hosts[i].length = len(key)
        t.hosts[i].offset = host_offsets[i]
        j = t.hosts[i].hash & t.host_slot_mask
        while t.host_slots[j] >= 0:
            j = (j + 1) & t.host_slot_mask
        t.host_slots[j] = i
    for tier, priority in enumerate(router._tiers):
        t.any_roots[tier] = roots.get((priority, None), -1)
        for i, key in enumerate(router._host_keys):
            t.host_roots[i * n_tiers + tier] = roots.get((priority, key), -1)
    # Set last: until here match() sees no tiers and answers 404.
    t.n_hosts = n_hosts
    t.n_wildcards = sum(1 for key in router._host_keys if key.startswith(b"."))
    t.n_tiers = n_tiers
