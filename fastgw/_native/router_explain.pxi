# router_explain.pxi: the router's answers for people and tools: lookup() (match() from
# Python), describe() and explain() for `fastgw routes`, shadowed() for plan.py's checks.
# Module functions on the router, which its methods of the same names call; none is on the
# request path. They read what add() recorded and (all but describe) the tables compile()
# built (router_build.pxi), with router.pxi's record strides and segment kinds.


cdef tuple _router_lookup(Router router, str method, str host, str path, headers, query):
    cdef RouteMatch m
    cdef int result, i
    cdef RequestFields fields
    cdef Py_ssize_t name_off[16]
    cdef Py_ssize_t name_len[16]
    cdef Py_ssize_t value_off[16]
    cdef Py_ssize_t value_len[16]
    headers = list(headers or ())
    if len(headers) > 16:
        raise ValueError("lookup() takes at most 16 headers")
    router._check_compiled()
    host_bytes = _router_host_bytes(host)
    path_bytes = path.encode("utf-8")
    head = b""
    for i, (name, value) in enumerate(headers):
        name_b, value_b = name.encode("latin-1"), value.encode("latin-1")
        name_off[i] = len(head)
        name_len[i] = len(name_b)
        value_off[i] = len(head) + len(name_b)
        value_len[i] = len(value_b)
        head += name_b + value_b
    query_bytes = query.encode("latin-1") if query is not None else None
    fields.head = head
    fields.n_headers = len(headers)
    fields.name_off = name_off
    fields.name_len = name_len
    fields.value_off = value_off
    fields.value_len = value_len
    fields.query = NULL if query_bytes is None else <const char*>query_bytes
    fields.query_len = 0 if query_bytes is None else len(query_bytes)
    result = router.match_fields(host_bytes, len(host_bytes), path_bytes, len(path_bytes),
                                 router._method_id(method), &fields, &m)
    if result == MATCH_FOUND:
        names = router._pat_names[m.pattern_id]
        params = {
            names[i]: path_bytes[m.param_off[i]:m.param_off[i] + m.param_len[i]].decode(
                "utf-8", "surrogateescape")
            for i in range(m.n_params)
        }
        return ("found", m.route_id, m.pattern_id, params)
    if result == MATCH_METHOD_NOT_ALLOWED:
        return ("method_not_allowed", router.method_names(m.allowed_methods))
    return ("not_found",)


cdef list _router_describe(Router router):
    cdef Py_ssize_t pattern_id
    cdef int32_t r
    rows = []
    for pattern_id in range(len(router._pat_text)):
        r = router._pats.data[pattern_id * _PAT_STRIDE + _PAT_ROUTE]
        method_names = router._route_methods[r]
        rows.append({
            "route_id": router._rts.data[r * _RT_STRIDE + _RT_ID],
            "pattern_id": pattern_id,
            "hosts": list(router._route_hosts[r][1]),
            "pattern": router._pat_text[pattern_id],
            "methods": None if method_names is None else list(method_names),
            "priority": router._rts.data[r * _RT_STRIDE + _RT_PRIORITY],
        })
    return rows


# --- explain(): every (tier, host level) in search order, the path matches on each
def _router_host_label(key):
    if key is None:
        return "any host"
    text = key.decode("ascii")
    return f"wildcard '*{text}'" if text.startswith(".") else f"exact '{text}'"


cdef list _router_levels(Router router, bytes host):
    cdef _RouterTables* t = &router._t
    keys = []
    if host and not host.startswith(b"."):
        keys.append(host)
    keys.extend(host[i:] for i in range(1, len(host)) if host[i] == 0x2E)
    index = {key: i for i, key in enumerate(router._host_keys)}
    levels = []
    for tier, priority in enumerate(router._tiers):
        for key in keys:
            if key in index and t.host_roots[index[key] * t.n_tiers + tier] >= 0:
                levels.append((priority, key, t.host_roots[index[key] * t.n_tiers + tier]))
        if t.any_roots[tier] >= 0:
            levels.append((priority, None, t.any_roots[tier]))
    return levels


cdef list _router_path_matches(Router router, int32_t root, bytes path):
    cdef _RouterTables* t = &router._t
    results = []

    def visit(int32_t index, Py_ssize_t pos, list captures):
        cdef _RouterNode* node = &t.nodes[index]
        cdef int32_t child
        end = len(path)
        if pos == end:
            for i in range(node.cand_first, node.cand_first + node.cand_count):
                results.append((i, captures))
            for i in range(node.catchall_first, node.catchall_first + node.catchall_count):
                results.append((i, captures + [b""]))
            return
        start = pos + 1
        stop = path.find(b"/", start)
        if stop < 0:
            stop = end
        if node.edge_count:
            segment = path[start:stop]
            child = _router_child(t, node, segment, len(segment))
            if child >= 0:
                visit(child, stop, captures)
        if node.param_child >= 0 and stop > start:
            visit(node.param_child, stop, captures + [path[start:stop]])
        for i in range(node.catchall_first, node.catchall_first + node.catchall_count):
            results.append((i, captures + [path[start:]]))

    if path.startswith(b"/"):
        visit(root, 0, [])
    return [(t.cands[i].route_id, t.cands[i].pattern_id, t.cands[i].methods, captures)
            for i, captures in results]


cdef tuple _router_segments(Router router, int pattern_id):
    # ((kind, literal bytes), ...) of a pattern, as _parse_route_pattern splits it.
    cdef int32_t* pat = router._pats.data + pattern_id * _PAT_STRIDE
    cdef int32_t* seg
    cdef Py_ssize_t i
    segments = []
    for i in range(pat[_PAT_SEG_FIRST], pat[_PAT_SEG_FIRST] + pat[_PAT_SEG_COUNT]):
        seg = router._segs.data + i * _SEG_STRIDE
        segments.append((seg[_SEG_KIND], bytes(
            router._pool[seg[_SEG_OFFSET]:seg[_SEG_OFFSET] + seg[_SEG_LENGTH]])))
    return tuple(segments)


cdef int _router_route_id_of(Router router, int pattern_id):
    return router._rts.data[router._pats.data[pattern_id * _PAT_STRIDE + _PAT_ROUTE]
                            * _RT_STRIDE + _RT_ID]


cdef str _router_why(Router router, winner, other, names):
    a = _router_segments(router, winner)
    b = _router_segments(router, other)
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b):
            return f"it ends at segment {i}, before {{*rest}} would take the empty rest"
        if a[i][0] != b[i][0]:
            kinds = ("a literal segment", "{param}", "{*rest}")
            return (f"{kinds[a[i][0]]} beats {kinds[b[i][0]]} at segment {i + 1}")
    route_a = _router_route_id_of(router, winner)
    route_b = _router_route_id_of(router, other)
    if route_a != route_b:
        return (f"the same shape; {names(route_a)} comes before {names(route_b)} in the"
                " config")
    return "the same route; its earlier path"


cdef list _router_explain(Router router, str method, str host, str path, route_names):
    router._check_compiled()
    host_bytes = _router_host_bytes(host)
    path_bytes = path.encode("utf-8")
    method_id = router._method_id(method)
    bit = 1 << method_id

    def name(route_id):
        if route_names is None:
            return f"route {route_id}"
        return f"route {route_names[route_id]!r}"

    lines = [f"request: {method} host={host.lower() or '(none)'} path={path}"]
    levels = _router_levels(router, host_bytes)
    if not levels:
        lines.append("no route serves this host")
    winner = None
    first_path_level = None
    for priority, key, root in levels:
        label = f"priority {priority}, {_router_host_label(key)}"
        matches = _router_path_matches(router, root, path_bytes)
        if not matches:
            lines.append(f"[{label}] no path pattern matches")
            continue
        lines.append(f"[{label}] {len(matches)} path pattern(s) match,"
                     " in precedence order:")
        if first_path_level is None:
            first_path_level = (label, matches)
        for rank, (route_id, pattern_id, mask, _captures) in enumerate(matches):
            allowed = "any method" if mask == _ROUTER_ANY_METHOD else ",".join(
                router.method_names(mask))
            verdict = "method ok" if mask & bit else f"{method} not allowed"
            lines.append(f"  {rank + 1}. {name(route_id)} "
                         f"{router._pat_text[pattern_id]!r} ({allowed}): {verdict}")
        for rank, (route_id, pattern_id, mask, _captures) in enumerate(matches):
            if mask & bit:
                winner = (label, route_id, pattern_id, matches, rank)
                break
        if winner is not None:
            break
    if winner is not None:
        label, route_id, pattern_id, matches, rank = winner
        lines.append(f"winner: {name(route_id)} {router._pat_text[pattern_id]!r}"
                     f" [{label}]")
        if rank > 0:
            lines.append(f"  the path patterns before it do not allow {method}")
        if rank + 1 < len(matches):
            other = matches[rank + 1]
            lines.append(f"  over {name(other[0])} {router._pat_text[other[1]]!r}: "
                         + _router_why(router, pattern_id, other[1], name))
        if len(router._tiers) > 1:
            lines.append("  (higher priorities are searched first; within one:"
                         " the exact host, then wildcards, then routes for any host)")
    elif first_path_level is not None:
        label, matches = first_path_level
        mask = 0
        for _route_id, _pattern_id, m, _captures in matches:
            mask |= m
        lines.append(f"result: 405 method not allowed; Allow from [{label}]: "
                     + ", ".join(router.method_names(mask)))
    else:
        lines.append("result: 404 no route matches")
    return lines


# --- shadowed(): routes another route always wins over
cdef inline void _router_cover_run(_RouterCover* c, int32_t first, int32_t count) noexcept:
    cdef int32_t i, route_index
    cdef _RouterCandidate* cand
    for i in range(first, first + count):
        cand = &c.t.cands[i]
        if cand.cond_count == 0 and c.mask & cand.methods == c.mask:
            route_index = c.pats[cand.pattern_id * _PAT_STRIDE + _PAT_ROUTE]
            if c.best < 0 or route_index < c.best:
                c.best = route_index


cdef void _router_cover_walk(_RouterCover* c, int32_t index, int32_t seg,
                             int32_t seg_end) noexcept:
    # Every pattern under trie node `index` that matches every path the segments
    # [seg, seg_end) of the covered pattern match: a literal is covered by the same literal or
    # (when not empty) a {param}, a {param} by a {param}, anything by a {*rest}.
    cdef _RouterNode* node = &c.t.nodes[index]
    cdef const int32_t* s
    cdef int32_t child
    if node.catchall_count:
        _router_cover_run(c, node.catchall_first, node.catchall_count)
    if seg == seg_end:
        if node.cand_count:
            _router_cover_run(c, node.cand_first, node.cand_count)
        return
    s = c.segs + seg * _SEG_STRIDE
    if s[_SEG_KIND] == _ROUTER_SEG_LITERAL:
        if node.edge_count:
            child = _router_child(c.t, node, c.t.bytes + s[_SEG_OFFSET], s[_SEG_LENGTH])
            if child >= 0:
                _router_cover_walk(c, child, seg + 1, seg_end)
        if s[_SEG_LENGTH] > 0 and node.param_child >= 0:
            _router_cover_walk(c, node.param_child, seg + 1, seg_end)
    elif s[_SEG_KIND] == _ROUTER_SEG_PARAM and node.param_child >= 0:
        _router_cover_walk(c, node.param_child, seg + 1, seg_end)


cdef int32_t _router_shadower(Router router, Py_ssize_t r, Py_ssize_t p, Py_ssize_t pair,
                              int32_t level) except -2:
    # The route index of the route that always wins over pattern p of route r on one
    # host level, or -1.
    cdef _RouterTables* t = &router._t
    cdef int32_t* rt = router._rts.data + r * _RT_STRIDE
    cdef int32_t* pr = router._pairs.data + pair * _PAIR_STRIDE
    cdef int32_t* pat = router._pats.data + p * _PAT_STRIDE
    cdef uint32_t mask = <uint32_t>rt[_RT_MASK]
    cdef int32_t i, best = -1, root
    cdef _RouterCandidate* cand
    cdef _RouterCover cover
    cdef Py_ssize_t tier, host
    if not rt[_RT_COND]:  # conditions decide at request time (conditional routes go first)
        for i in range(pr[_PAIR_RUN_FIRST], pr[_PAIR_RUN_FIRST] + pr[_PAIR_RUN_COUNT]):
            cand = &t.cands[i]
            if (cand.cond_count == 0 and cand.route_id < rt[_RT_ID]
                    and mask & cand.methods == mask
                    and (best < 0 or cand.pattern_id < best)):
                best = cand.pattern_id
        if best >= 0:
            return router._pats.data[best * _PAT_STRIDE + _PAT_ROUTE]
    if not router._tiers or router._tiers[0] <= rt[_RT_PRIORITY]:
        return -1
    cover.t = t
    cover.pats = router._pats.data
    cover.segs = router._segs.data
    cover.mask = mask
    cover.best = -1
    key = router._level_keys[level][1]
    covering = []  # host indexes of the keys whose hosts include every host of `key`
    if key is not None:
        if key in router._host_index:
            covering.append(router._host_index[key])
        for i in range(1, len(key)):
            if key[i] == 0x2E and key[i:] in router._host_index:
                covering.append(router._host_index[key[i:]])
    for tier in range(t.n_tiers):
        if router._tiers[tier] <= rt[_RT_PRIORITY]:
            break
        for host in covering:
            root = t.host_roots[host * t.n_tiers + tier]
            if root >= 0:
                _router_cover_walk(&cover, root, pat[_PAT_SEG_FIRST],
                                   pat[_PAT_SEG_FIRST] + pat[_PAT_SEG_COUNT])
        if t.any_roots[tier] >= 0:
            _router_cover_walk(&cover, t.any_roots[tier], pat[_PAT_SEG_FIRST],
                               pat[_PAT_SEG_FIRST] + pat[_PAT_SEG_COUNT])
        if cover.best >= 0:
            return cover.best
    return -1


cdef list _router_shadowed(Router router):
    cdef Py_ssize_t n_routes = router._rts.n // _RT_STRIDE
    cdef Py_ssize_t n_patterns = router._pats.n // _PAT_STRIDE
    cdef Py_ssize_t p, r, li, pair
    cdef int32_t by, shadower
    cdef bint shadowed
    router._check_compiled()
    # Pattern ids of each route, and the first pair of each pattern.
    route_patterns = [[] for _ in range(n_routes)]
    starts = [0] * (n_patterns + 1)
    pair = 0
    for p in range(n_patterns):
        r = router._pats.data[p * _PAT_STRIDE + _PAT_ROUTE]
        route_patterns[r].append(p)
        starts[p] = pair
        pair += router._route_levels.data[r + 1] - router._route_levels.data[r]
    result = []
    for route_id, r in sorted(router._route_index.items()):
        shadower = -1
        shadowed = True
        for p in route_patterns[r]:
            pair = starts[p]
            for li in range(router._route_levels.data[r], router._route_levels.data[r + 1]):
                by = _router_shadower(router, r, p, pair, router._route_levels.data[li])
                pair += 1
                if by < 0:
                    shadowed = False
                    break
                if shadower < 0:
                    shadower = by
            if not shadowed:
                break
        if shadowed and shadower >= 0:
            result.append((route_id, router._rts.data[shadower * _RT_STRIDE + _RT_ID]))
    return result
