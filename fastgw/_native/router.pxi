# router.pxi: host + path + method -> route, decided by C tables built once in compile().
#
# Search order of Router.match (the precedence contract, tested in tests/unit/test_router.py):
#
# 1. Priority tiers, highest priority first. `priority` overrides everything else, host
#    specificity included: every tier is searched completely before the next lower one.
# 2. Inside a tier, host levels: the exact host, then wildcard hosts from the longest suffix to
#    the shortest, then routes without hosts. Each (tier, host level) owns one path trie.
# 3. Inside a trie, segment by segment: literal child, then {param} child, then {*rest};
#    a pattern that ends at the current segment comes before a {*rest} matching the empty rest.
#    The walk backtracks, so it visits every full path match in precedence order.
# 4. Routes on the same trie node (same pattern shape) are ordered by route_id, then pattern id.
#
# Routes with conditions (`match: {headers, query}`) come first among the routes of one trie
# node, and a candidate whose conditions the request does not meet is passed over as if its
# path did not match (it never causes a 405).
#
# The first path match whose methods contain the request method wins. When no level of any
# tier yields such a match, but some level matched the path, the answer is 405 and the Allow set
# is the union of the methods of all path matches on the FIRST (tier, host level) in search
# order that matched the path at all. Otherwise 404.
#
# match() touches only C arrays: nodes, static edges (scanned when few, hashed with FNV-1a when
# many), candidates, and a host hash table whose keys are exact hosts ("api.example.com") and
# wildcard suffixes (".example.com" for "*.example.com"). A wildcard level is found by looking
# up every suffix of the request host that starts at a dot, longest first.

cimport cython
from libc.stdint cimport int32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcmp, memcpy, memset
from time import perf_counter_ns as _perf_counter_ns


cdef struct RouteMatch:
    int route_id
    int pattern_id                            # global id returned by add() for the pattern
    int n_params
    Py_ssize_t param_off[MAX_ROUTE_PARAMS]    # offsets into the path given to match()
    Py_ssize_t param_len[MAX_ROUTE_PARAMS]
    unsigned int allowed_methods              # (1 << M_*) bits, with MATCH_METHOD_NOT_ALLOWED


cdef enum MatchResult:
    MATCH_FOUND = 0
    MATCH_NOT_FOUND = 1
    MATCH_METHOD_NOT_ALLOWED = 2


cdef enum:
    # PERF: up to this many static children, comparing lengths then bytes beats hashing.
    _ROUTER_LINEAR_EDGES = 8
    _ROUTER_MAX_SEGMENT_BYTES = 1024
    _ROUTER_MAX_SEGMENTS = 256        # per pattern; bounds the depth of the trie walk
    _ROUTER_MAX_WILDCARD_LABELS = 32  # labels after "*."; bounds the wildcard levels of a host

cdef uint32_t _ROUTER_ANY_METHOD = 0xFFFFFFFFu

_ROUTER_METHOD_NAMES = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")

# RFC 3986 3.3 pchar, minus "%" (handled as pct-encoded) and without "{" / "}".
_ROUTER_PCHAR = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
)
_ROUTER_HEX = frozenset(b"0123456789abcdefABCDEF")
_ROUTER_HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-._")

# Segment kinds, in precedence order.
_ROUTER_SEG_LITERAL = 0
_ROUTER_SEG_PARAM = 1
_ROUTER_SEG_CATCHALL = 2


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


cdef enum:
    _ROUTER_COND_HEADER = 0
    _ROUTER_COND_QUERY = 1


cdef struct _RouterCondition:
    int32_t kind
    int32_t name_offset   # into _RouterTables.bytes; header names lowercase
    int32_t name_length
    int32_t value_offset
    int32_t value_length  # -1: any value, the field only has to be present


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


cdef inline uint32_t _router_fnv1a(const char* data, Py_ssize_t length) noexcept nogil:
    cdef uint32_t h = 2166136261u
    cdef Py_ssize_t i
    for i in range(length):
        h = (h ^ <unsigned char>data[i]) * 16777619u
    return h


cdef inline uint32_t _router_fnv1a_reversed(const char* data, Py_ssize_t length) noexcept nogil:
    # Host keys hash from the last byte to the first, so one pass over a request host yields
    # the hash of every suffix (see Router.match).
    cdef uint32_t h = 2166136261u
    cdef Py_ssize_t i = length
    while i > 0:
        i -= 1
        h = (h ^ <unsigned char>data[i]) * 16777619u
    return h


cdef inline int32_t _router_host_find(_RouterTables* t, uint32_t h, const char* host,
                                      Py_ssize_t length) noexcept nogil:
    cdef uint32_t i = h & t.host_slot_mask
    cdef int32_t s
    cdef _RouterHost* entry
    if not (t.host_lengths >> (<uint64_t>length & 63)) & 1:
        return -1
    while True:
        s = t.host_slots[i]
        if s < 0:
            return -1
        entry = &t.hosts[s]
        if (entry.hash == h and entry.length == length
                and memcmp(t.bytes + entry.offset, host, length) == 0):
            return s
        i = (i + 1) & t.host_slot_mask


cdef inline int32_t _router_child(_RouterTables* t, _RouterNode* node, const char* seg,
                                  Py_ssize_t length) noexcept nogil:
    cdef int32_t i, s
    cdef uint32_t h, j
    cdef _RouterEdge* edge
    if node.slot_first < 0:
        for i in range(node.edge_first, node.edge_first + node.edge_count):
            edge = &t.edges[i]
            if edge.length == length and memcmp(t.bytes + edge.offset, seg, length) == 0:
                return edge.child
        return -1
    h = _router_fnv1a(seg, length)
    j = h & node.slot_mask
    while True:
        s = t.slots[node.slot_first + j]
        if s < 0:
            return -1
        edge = &t.edges[s]
        if (edge.hash == h and edge.length == length
                and memcmp(t.bytes + edge.offset, seg, length) == 0):
            return edge.child
        j = (j + 1) & node.slot_mask


cdef bint _router_field_is(const char* a, Py_ssize_t a_len, const char* lower,
                           Py_ssize_t lower_len) noexcept nogil:
    cdef Py_ssize_t i
    cdef unsigned char c
    if a_len != lower_len:
        return False
    for i in range(a_len):
        c = <unsigned char>a[i]
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned char>lower[i]:
            return False
    return True


cdef bint _router_condition_met(_RouterTables* t, _RouterCondition* cond) noexcept nogil:
    cdef const RequestFields* req = t.request
    cdef const char* name = t.bytes + cond.name_offset
    cdef const char* value = t.bytes + cond.value_offset
    cdef const char* q
    cdef const char* amp
    cdef const char* eq
    cdef Py_ssize_t left, pair_len, key_len
    cdef int i
    if cond.kind == _ROUTER_COND_HEADER:
        for i in range(req.n_headers):
            if _router_field_is(req.head + req.name_off[i], req.name_len[i], name,
                                cond.name_length):
                if cond.value_length < 0 or (
                        req.value_len[i] == cond.value_length
                        and memcmp(req.head + req.value_off[i], value, cond.value_length) == 0):
                    return True
        return False
    if req.query == NULL:
        return False
    q = req.query
    left = req.query_len
    while left >= 0:
        amp = <const char*>memchr(q, b"&", <size_t>left)
        pair_len = left if amp == NULL else amp - q
        eq = <const char*>memchr(q, b"=", <size_t>pair_len)
        key_len = pair_len if eq == NULL else eq - q
        if key_len == cond.name_length and memcmp(q, name, key_len) == 0:
            if cond.value_length < 0:
                return True
            if (eq != NULL and pair_len - key_len - 1 == cond.value_length
                    and memcmp(eq + 1, value, cond.value_length) == 0):
                return True
        if amp == NULL:
            break
        left -= pair_len + 1
        q = amp + 1
    return False


cdef bint _router_conditions_met(_RouterTables* t, _RouterCandidate* cand) noexcept nogil:
    cdef int32_t i
    if t.request == NULL:
        return False
    for i in range(cand.cond_first, cand.cond_first + cand.cond_count):
        if not _router_condition_met(t, &t.conds[i]):
            return False
    return True


cdef inline int _router_pick(_RouterTables* t, int32_t first, int32_t count, uint32_t bit,
                             int n_params, RouteMatch* out, uint32_t* allowed) noexcept nogil:
    cdef int32_t i
    cdef _RouterCandidate* cand
    for i in range(first, first + count):
        cand = &t.cands[i]
        if cand.cond_count and not _router_conditions_met(t, cand):
            continue
        if cand.methods & bit:
            out.route_id = cand.route_id
            out.pattern_id = cand.pattern_id
            out.n_params = n_params
            return 1
        allowed[0] |= cand.methods
    return 0


cdef inline int _router_level(_RouterTables* t, int32_t root, const char* path,
                              Py_ssize_t path_len, uint32_t bit, RouteMatch* out,
                              uint32_t* first_allowed) noexcept nogil:
    # One (tier, host level): 1 on a full match; else remember the Allow set of the first
    # level that matched the path at all.
    cdef uint32_t allowed = 0
    if _router_walk(t, root, path, 0, path_len, 0, bit, out, &allowed):
        return 1
    if first_allowed[0] == 0:
        first_allowed[0] = allowed
    return 0


cdef int _router_walk(_RouterTables* t, int32_t index, const char* path, Py_ssize_t pos,
                      Py_ssize_t end, int n_params, uint32_t bit, RouteMatch* out,
                      uint32_t* allowed) noexcept nogil:
    # pos is the index of the "/" opening the next segment, or end when none is left.
    # Recursion depth is bounded by the deepest pattern, not by the request path.
    cdef _RouterNode* node = &t.nodes[index]
    cdef Py_ssize_t start, stop
    cdef const char* slash
    cdef int32_t child
    if pos == end:
        if node.cand_count and _router_pick(t, node.cand_first, node.cand_count, bit,
                                            n_params, out, allowed):
            return 1
        if node.catchall_count:
            out.param_off[n_params] = end
            out.param_len[n_params] = 0
            return _router_pick(t, node.catchall_first, node.catchall_count, bit,
                                n_params + 1, out, allowed)
        return 0
    start = pos + 1
    slash = <const char*>memchr(path + start, b"/", <size_t>(end - start))
    stop = end if slash == NULL else slash - path
    if node.edge_count:
        child = _router_child(t, node, path + start, stop - start)
        if child >= 0 and _router_walk(t, child, path, stop, end, n_params, bit, out, allowed):
            return 1
    if node.param_child >= 0 and stop > start:
        out.param_off[n_params] = start
        out.param_len[n_params] = stop - start
        if _router_walk(t, node.param_child, path, stop, end, n_params + 1, bit, out,
                        allowed):
            return 1
    if node.catchall_count:
        out.param_off[n_params] = start
        out.param_len[n_params] = end - start
        return _router_pick(t, node.catchall_first, node.catchall_count, bit, n_params + 1,
                            out, allowed)
    return 0


def _parse_route_pattern(pattern):
    """Split a path pattern into ((kind, literal bytes), ...) and its capture names.

    Raises ValueError naming the offending segment.
    """
    if not isinstance(pattern, str):
        raise ValueError(f"path pattern must be a string, got {type(pattern).__name__}")
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with '/'")
    parts = pattern[1:].split("/")
    if len(parts) > _ROUTER_MAX_SEGMENTS:
        raise ValueError(
            f"path pattern {pattern[:40]!r}... has {len(parts)} segments;"
            f" at most {_ROUTER_MAX_SEGMENTS}"
        )
    segments = []
    names = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part.startswith("{") and part.endswith("}") and len(part) >= 2:
            name = part[1:len(part) - 1]
            kind = _ROUTER_SEG_PARAM
            if name.startswith("*"):
                name = name[1:]
                kind = _ROUTER_SEG_CATCHALL
                if not last:
                    raise ValueError(
                        f"path pattern {pattern!r}: {part} must be the last segment"
                    )
            if not (name.isascii() and name.isidentifier()):
                raise ValueError(
                    f"path pattern {pattern!r}: capture name {name!r} is not an identifier"
                )
            if name in names:
                raise ValueError(f"path pattern {pattern!r}: capture {name!r} appears twice")
            names.append(name)
            segments.append((kind, b""))
            continue
        if "{" in part or "}" in part:
            raise ValueError(
                f"path pattern {pattern!r}: segment {part!r} mixes literal text and a capture;"
                " a segment is either literal or exactly one {name} / {*name}"
            )
        if part == "" and not last:
            raise ValueError(f"path pattern {pattern!r} has an empty segment ('//')")
        raw = part.encode("utf-8")
        if len(raw) > _ROUTER_MAX_SEGMENT_BYTES:
            raise ValueError(f"path pattern {pattern!r}: segment longer than "
                             f"{_ROUTER_MAX_SEGMENT_BYTES} bytes")
        i = 0
        while i < len(raw):
            c = raw[i]
            if c == 0x25:  # "%": RFC 3986 2.1 pct-encoded = "%" HEXDIG HEXDIG
                if i + 2 >= len(raw) or not (
                    raw[i + 1] in _ROUTER_HEX and raw[i + 2] in _ROUTER_HEX
                ):
                    raise ValueError(f"path pattern {pattern!r}: bad percent-escape in {part!r}")
                i += 3
                continue
            if c not in _ROUTER_PCHAR:
                raise ValueError(
                    f"path pattern {pattern!r}: character {chr(c)!r} is not allowed in a path"
                    " segment (RFC 3986 3.3; percent-encode it)"
                )
            i += 1
        segments.append((_ROUTER_SEG_LITERAL, raw))
    if len(names) > MAX_ROUTE_PARAMS:
        raise ValueError(
            f"path pattern {pattern!r} has {len(names)} captures; at most {MAX_ROUTE_PARAMS}"
        )
    return tuple(segments), names


def _parse_route_host(host):
    """Normalise a route host to its table key: b"api.example.com" or b".example.com"."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    text = host.lower()
    label_part = text[2:] if text.startswith("*.") else text
    if "*" in label_part:
        raise ValueError(
            f"host {host!r}: '*' is only allowed as the whole first label ('*.example.com');"
            " omit hosts to match any host"
        )
    if label_part.startswith("[") and label_part.endswith("]") and text is label_part:
        inner = label_part[1:len(label_part) - 1]
        if not inner or any(ch not in "0123456789abcdef:." for ch in inner):
            raise ValueError(f"host {host!r} is not a valid IPv6 literal")
        return text.encode("ascii")
    if ":" in label_part:
        raise ValueError(f"host {host!r} must not include a port")
    raw = label_part.encode("ascii", "replace")
    if (not raw or any(c not in _ROUTER_HOST_CHARS for c in raw) or raw.startswith(b".")
            or raw.endswith(b".") or b".." in raw):
        raise ValueError(
            f"host {host!r} is not a valid host name (letters, digits, '-', '.'; IDNs in"
            " punycode)"
        )
    if text.startswith("*."):
        if raw.count(b".") >= _ROUTER_MAX_WILDCARD_LABELS:
            raise ValueError(
                f"host {host!r}: at most {_ROUTER_MAX_WILDCARD_LABELS} labels after '*.'"
            )
        return b"." + raw
    return raw


def _parse_route_methods(methods):
    """Method names -> bit mask; None or empty means any method (nonstandard ones too)."""
    if isinstance(methods, str):
        raise ValueError(f"methods must be a list of method names, not the string {methods!r}")
    if methods is None or len(methods) == 0:
        return _ROUTER_ANY_METHOD, None
    mask = 0
    names = []
    for method in methods:
        name = method.upper() if isinstance(method, str) else method
        if name not in _ROUTER_METHOD_NAMES:
            raise ValueError(
                f"method {method!r} is not one of {', '.join(_ROUTER_METHOD_NAMES)}"
            )
        if not mask & (1 << METHOD_IDS[name]):
            names.append(name)
        mask |= 1 << METHOD_IDS[name]
    return mask, names


def _router_host_bytes(host):
    # Tools pass text; a non-ASCII host can match no key, "?" keeps it that way.
    return host.lower().encode("ascii", "replace")


def _router_method_names(mask):
    return [METHOD_NAMES[m] for m in sorted(METHOD_NAMES) if mask & (1 << m)]


def _router_host_label(key):
    if key is None:
        return "any host"
    text = key.decode("ascii")
    return f"wildcard '*{text}'" if text.startswith(".") else f"exact '{text}'"


def _router_shape(segments):
    return tuple(kind if kind != _ROUTER_SEG_LITERAL else raw for kind, raw in segments)


def _router_generalises(general, specific):
    """True when every path matched by `specific` is matched by `general`."""
    for index, (kind, raw) in enumerate(general):
        if kind == _ROUTER_SEG_CATCHALL:
            return True
        if index >= len(specific):
            return False
        other_kind, other_raw = specific[index]
        if kind == _ROUTER_SEG_LITERAL:
            if other_kind != _ROUTER_SEG_LITERAL or other_raw != raw:
                return False
        elif other_kind == _ROUTER_SEG_CATCHALL or (
            other_kind == _ROUTER_SEG_LITERAL and other_raw == b""
        ):
            # {param} needs a non-empty segment; a {*rest} or "" there can be empty.
            return False
    return len(general) == len(specific)


def _router_host_covers(general, specific):
    """True when every request host matching key `specific` also matches key `general`."""
    if general is None:
        return True
    if specific is None:
        return False
    if general == specific:
        return True
    # "*.a.example.com" and "x.example.com" both sit strictly under "*.example.com".
    return (general.startswith(b".") and specific.endswith(general)
            and len(specific) > len(general))


@cython.final
cdef class Router:
    """Route table: add() routes, compile() once, then match() on the hot path."""

    cdef _RouterTables _t
    cdef bint _compiled
    cdef dict _routes          # route_id -> (host keys, hosts, mask, method names, priority)
    cdef list _patterns        # pattern_id -> (route_id, text, segments, capture names)
    cdef list _tiers           # priorities, highest first
    cdef list _host_keys       # host index -> key bytes
    cdef dict _conditions      # route_id -> ((kind, name bytes, value bytes or None), ...)

    def __cinit__(self):
        memset(&self._t, 0, sizeof(_RouterTables))  # NULL tables: match() answers 404

    def __init__(self):
        self._compiled = False
        self._routes = {}
        self._patterns = []
        self._tiers = []
        self._host_keys = []
        self._conditions = {}

    def __dealloc__(self):
        self._free_tables()

    cdef void _free_tables(self) noexcept:
        free(self._t.nodes)
        free(self._t.edges)
        free(self._t.slots)
        free(self._t.cands)
        free(self._t.conds)
        free(self._t.bytes)
        free(self._t.hosts)
        free(self._t.host_slots)
        free(self._t.host_roots)
        free(self._t.any_roots)
        memset(&self._t, 0, sizeof(_RouterTables))

    def add(self, int route_id, hosts, patterns, methods=None, int priority=0,
            headers=None, query=None):
        """Register a route; returns one pattern id per pattern, in order.

        `headers` / `query` ({name: value}, "*" for any value) are conditions the request must
        meet too: header names case-insensitive, values and query parts compared raw."""
        if self._compiled:
            raise RuntimeError("Router.add() after compile()")
        if route_id in self._routes:
            raise ValueError(f"route id {route_id} added twice")
        if isinstance(patterns, str) or not patterns:
            raise ValueError("a route needs a non-empty list of path patterns")
        if isinstance(hosts, str):
            raise ValueError("hosts must be a list of host names, not a string")
        host_keys = []
        host_texts = []
        for host in hosts or ():
            key = _parse_route_host(host)
            if key not in host_keys:
                host_keys.append(key)
                host_texts.append(host.lower())
        mask, method_names = _parse_route_methods(methods)
        parsed = [_parse_route_pattern(p) for p in patterns]
        conditions = []
        for kind, table in ((_ROUTER_COND_HEADER, headers), (_ROUTER_COND_QUERY, query)):
            for name, value in (table or {}).items():
                key = name.lower() if kind == _ROUTER_COND_HEADER else name
                conditions.append((kind, key.encode("latin-1"),
                                   None if value == "*" else value.encode("latin-1")))
        if conditions:
            self._conditions[route_id] = tuple(conditions)
        self._routes[route_id] = (tuple(host_keys), tuple(host_texts), mask, method_names,
                                  priority)
        ids = []
        for text, (segments, names) in zip(patterns, parsed):
            ids.append(len(self._patterns))
            self._patterns.append((route_id, text, segments, names))
        return ids

    def compile(self):
        """Build the C tables; the route set is frozen afterwards."""
        if self._compiled:
            return
        # A trie node while building: [static {bytes: node}, param node, cands, catchall cands].
        tries = {}
        for pattern_id, (route_id, _text, segments, _names) in enumerate(self._patterns):
            host_keys, _hosts, mask, _names2, priority = self._routes[route_id]
            for key in host_keys or (None,):
                node = tries.get((priority, key))
                if node is None:
                    node = tries[(priority, key)] = [{}, None, [], []]
                for kind, raw in segments:
                    if kind == _ROUTER_SEG_LITERAL:
                        child = node[0].get(raw)
                        if child is None:
                            child = node[0][raw] = [{}, None, [], []]
                        node = child
                    elif kind == _ROUTER_SEG_PARAM:
                        if node[1] is None:
                            node[1] = [{}, None, [], []]
                        node = node[1]
                    else:
                        node[3].append((route_id not in self._conditions, route_id,
                                        pattern_id, mask))
                        break
                else:
                    node[2].append((route_id not in self._conditions, route_id,
                                    pattern_id, mask))
        self._tiers = sorted({key[0] for key in tries}, reverse=True)
        self._host_keys = sorted({key[1] for key in tries if key[1] is not None})
        nodes = []
        edges = []
        slots = []
        cands = []
        pool = bytearray()
        roots = {level: self._flatten(trie, nodes, edges, slots, cands, pool)
                 for level, trie in tries.items()}
        host_offsets = []
        for key in self._host_keys:
            host_offsets.append(len(pool))
            pool += key
        # Conditions: one run per conditional route; names and values go to the byte pool.
        conds = []
        cond_runs = {}
        for route_id, conditions in self._conditions.items():
            cond_runs[route_id] = (len(conds), len(conditions))
            for kind, name, value in conditions:
                name_offset = len(pool)
                pool += name
                value_offset = len(pool)
                if value is not None:
                    pool += value
                conds.append((kind, name_offset, len(name), value_offset,
                              -1 if value is None else len(value)))
        cands = [(route_id, pattern_id, mask) + cond_runs.get(route_id, (0, 0))
                 for _unconditional, route_id, pattern_id, mask in cands]
        self._allocate(nodes, edges, slots, cands, pool, host_offsets, roots)
        self._t.conds = <_RouterCondition*>malloc(max(1, len(conds)) * sizeof(_RouterCondition))
        if self._t.conds == NULL:
            raise MemoryError()
        for i, cond in enumerate(conds):
            (self._t.conds[i].kind, self._t.conds[i].name_offset, self._t.conds[i].name_length,
             self._t.conds[i].value_offset, self._t.conds[i].value_length) = cond
        self._compiled = True

    cdef int32_t _flatten(self, list trie, list nodes, list edges, list slots, list cands,
                          bytearray pool) except -2:
        index = len(nodes)
        nodes.append(None)
        children = sorted(trie[0].items())
        child_ids = [self._flatten(child, nodes, edges, slots, cands, pool)
                     for _raw, child in children]
        param_child = -1
        if trie[1] is not None:
            param_child = self._flatten(trie[1], nodes, edges, slots, cands, pool)
        edge_first = len(edges)
        for (raw, _child), child_id in zip(children, child_ids):
            edges.append((_router_fnv1a(raw, len(raw)), len(raw), len(pool), child_id))
            pool += raw
        slot_first = -1
        slot_mask = 0
        if len(children) > _ROUTER_LINEAR_EDGES:
            size = 1
            while size < 2 * len(children):
                size *= 2
            table = [-1] * size
            for i in range(edge_first, len(edges)):
                j = edges[i][0] & (size - 1)
                while table[j] >= 0:
                    j = (j + 1) & (size - 1)
                table[j] = i
            slot_first = len(slots)
            slot_mask = size - 1
            slots.extend(table)
        cand_first = len(cands)
        cands.extend(sorted(trie[2]))
        catchall_first = len(cands)
        cands.extend(sorted(trie[3]))
        nodes[index] = (edge_first, len(children), slot_first, slot_mask, param_child,
                        cand_first, len(trie[2]), catchall_first, len(trie[3]))
        return index

    cdef _allocate(self, list nodes, list edges, list slots, list cands, bytearray pool,
                   list host_offsets, dict roots):
        cdef _RouterTables* t = &self._t
        cdef Py_ssize_t i, n_tiers = len(self._tiers), n_hosts = len(self._host_keys)
        cdef uint32_t size = 1
        cdef uint32_t j
        self._free_tables()  # a compile() that failed half-way may have left tables
        t.nodes = <_RouterNode*>malloc(max(1, len(nodes)) * sizeof(_RouterNode))
        t.edges = <_RouterEdge*>malloc(max(1, len(edges)) * sizeof(_RouterEdge))
        t.slots = <int32_t*>malloc(max(1, len(slots)) * sizeof(int32_t))
        t.cands = <_RouterCandidate*>malloc(max(1, len(cands)) * sizeof(_RouterCandidate))
        t.bytes = <char*>malloc(max(1, len(pool)))
        t.hosts = <_RouterHost*>malloc(max(1, n_hosts) * sizeof(_RouterHost))
        while size < 2 * n_hosts + 2:
            size *= 2
        t.host_slots = <int32_t*>malloc(size * sizeof(int32_t))
        t.host_roots = <int32_t*>malloc(max(1, n_hosts * n_tiers) * sizeof(int32_t))
        t.any_roots = <int32_t*>malloc(max(1, n_tiers) * sizeof(int32_t))
        if (t.nodes == NULL or t.edges == NULL or t.slots == NULL or t.cands == NULL
                or t.bytes == NULL or t.hosts == NULL or t.host_slots == NULL
                or t.host_roots == NULL or t.any_roots == NULL):
            raise MemoryError()
        for i, node in enumerate(nodes):
            (t.nodes[i].edge_first, t.nodes[i].edge_count, t.nodes[i].slot_first,
             t.nodes[i].slot_mask, t.nodes[i].param_child, t.nodes[i].cand_first,
             t.nodes[i].cand_count, t.nodes[i].catchall_first,
             t.nodes[i].catchall_count) = node
        for i, edge in enumerate(edges):
            t.edges[i].hash, t.edges[i].length, t.edges[i].offset, t.edges[i].child = edge
        for i, slot in enumerate(slots):
            t.slots[i] = slot
        for i, cand in enumerate(cands):
            (t.cands[i].route_id, t.cands[i].pattern_id, t.cands[i].methods,
             t.cands[i].cond_first, t.cands[i].cond_count) = cand
        if len(pool):
            memcpy(t.bytes, <char*>pool, len(pool))
        t.host_slot_mask = size - 1
        for j in range(size):
            t.host_slots[j] = -1
        for i, key in enumerate(self._host_keys):
            t.hosts[i].hash = _router_fnv1a_reversed(key, len(key))
            t.host_lengths |= (<uint64_t>1) << (len(key) & 63)
            t.hosts[i].length = len(key)
            t.hosts[i].offset = host_offsets[i]
            j = t.hosts[i].hash & t.host_slot_mask
            while t.host_slots[j] >= 0:
                j = (j + 1) & t.host_slot_mask
            t.host_slots[j] = i
        for tier, priority in enumerate(self._tiers):
            t.any_roots[tier] = roots.get((priority, None), -1)
            for i, key in enumerate(self._host_keys):
                t.host_roots[i * n_tiers + tier] = roots.get((priority, key), -1)
        t.n_hosts = n_hosts
        t.n_wildcards = sum(1 for key in self._host_keys if key.startswith(b"."))
        t.n_tiers = n_tiers

    cdef int match(self, const char* host, Py_ssize_t host_len, const char* path,
                   Py_ssize_t path_len, int method_id, RouteMatch* out) noexcept:
        """Route one request; host lowercased without port, path normalised without query."""
        cdef _RouterTables* t = &self._t
        cdef uint32_t bit, first_allowed = 0
        cdef int32_t exact = -1, entry, root, tier
        cdef int32_t wildcards[_ROUTER_MAX_WILDCARD_LABELS]
        cdef int n_wildcard_levels = 0
        cdef Py_ssize_t i
        cdef uint32_t h
        out.route_id = -1
        out.pattern_id = -1
        out.n_params = 0
        out.allowed_methods = 0
        if path_len < 1 or path[0] != b"/":
            return MATCH_NOT_FOUND
        bit = (1u << method_id) if 0 <= method_id < 32 else (1u << M_OTHER)
        if t.n_hosts and host_len > 0:
            # PERF: one right-to-left pass hashes every suffix that starts at a dot; the
            # wildcard levels are then probed longest suffix first without rehashing.
            h = 2166136261u
            i = host_len
            while i > 0:
                i -= 1
                h = (h ^ <unsigned char>host[i]) * 16777619u
                if (host[i] == b"." and i > 0 and t.n_wildcards
                        and n_wildcard_levels < _ROUTER_MAX_WILDCARD_LABELS):
                    entry = _router_host_find(t, h, host + i, host_len - i)
                    if entry >= 0:
                        wildcards[n_wildcard_levels] = entry
                        n_wildcard_levels += 1
            if host[0] != b".":
                exact = _router_host_find(t, h, host, host_len)
        for tier in range(t.n_tiers):
            if exact >= 0:
                root = t.host_roots[exact * t.n_tiers + tier]
                if root >= 0 and _router_level(t, root, path, path_len, bit, out,
                                               &first_allowed):
                    return MATCH_FOUND
            i = n_wildcard_levels
            while i > 0:
                i -= 1
                root = t.host_roots[wildcards[i] * t.n_tiers + tier]
                if root >= 0 and _router_level(t, root, path, path_len, bit, out,
                                               &first_allowed):
                    return MATCH_FOUND
            root = t.any_roots[tier]
            if root >= 0 and _router_level(t, root, path, path_len, bit, out, &first_allowed):
                return MATCH_FOUND
        out.route_id = -1
        out.pattern_id = -1
        out.n_params = 0
        if first_allowed:
            out.allowed_methods = first_allowed
            return MATCH_METHOD_NOT_ALLOWED
        return MATCH_NOT_FOUND

    def pattern_params(self, int pattern_id):
        """Capture names of a pattern, in the order of RouteMatch.param_off."""
        return list(self._pattern(pattern_id)[3])

    def pattern_text(self, int pattern_id):
        return self._pattern(pattern_id)[1]

    cdef tuple _pattern(self, int pattern_id):
        # Bounds checks are compiled out, so an unknown id must be refused here.
        if not 0 <= pattern_id < len(self._patterns):
            raise IndexError(f"unknown pattern id {pattern_id}")
        return self._patterns[pattern_id]

    def _check_compiled(self):
        if not self._compiled:
            raise RuntimeError("Router.compile() has not been called")

    cdef int match_fields(self, const char* host, Py_ssize_t host_len, const char* path,
                          Py_ssize_t path_len, int method_id, const RequestFields* fields,
                          RouteMatch* out) noexcept:
        """match() for a request whose header and query fields conditions may look at."""
        cdef int result
        self._t.request = fields
        result = self.match(host, host_len, path, path_len, method_id, out)
        self._t.request = NULL
        return result

    def lookup(self, str method, str host, str path, headers=None, query=None):
        """("found", route_id, pattern_id, {name: value}) | ("not_found",)
        | ("method_not_allowed", [method, ...])

        `headers` ([(name, value)]) and `query` (raw, without "?") feed route conditions."""
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
        self._check_compiled()
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
        result = self.match_fields(host_bytes, len(host_bytes), path_bytes, len(path_bytes),
                                   METHOD_IDS.get(method, M_OTHER), &fields, &m)
        if result == MATCH_FOUND:
            names = self._patterns[m.pattern_id][3]
            params = {
                names[i]: path_bytes[m.param_off[i]:m.param_off[i] + m.param_len[i]].decode(
                    "utf-8", "surrogateescape")
                for i in range(m.n_params)
            }
            return ("found", m.route_id, m.pattern_id, params)
        if result == MATCH_METHOD_NOT_ALLOWED:
            return ("method_not_allowed", _router_method_names(m.allowed_methods))
        return ("not_found",)

    def _bench_match(self, str method, str host, str path, int rounds):
        """Nanoseconds per C-level match() call, measured around a loop of `rounds`."""
        cdef RouteMatch m
        cdef int i, method_id = METHOD_IDS.get(method, M_OTHER)
        cdef int sink = 0
        self._check_compiled()
        host_bytes = host.encode("ascii")
        path_bytes = path.encode("utf-8")
        cdef const char* h = host_bytes
        cdef const char* p = path_bytes
        cdef Py_ssize_t hl = len(host_bytes), pl = len(path_bytes)
        start = _perf_counter_ns()
        for i in range(rounds):
            sink += self.match(h, hl, p, pl, method_id, &m)
        elapsed = _perf_counter_ns() - start
        if sink < 0:
            raise AssertionError("unreachable")
        return elapsed / rounds

    def describe(self):
        """One dict per pattern, in pattern id order (for `fastgw routes`)."""
        rows = []
        for pattern_id, (route_id, text, _segments, _names) in enumerate(self._patterns):
            _keys, hosts, _mask, method_names, priority = self._routes[route_id]
            rows.append({
                "route_id": route_id,
                "pattern_id": pattern_id,
                "hosts": list(hosts),
                "pattern": text,
                "methods": None if method_names is None else list(method_names),
                "priority": priority,
            })
        return rows

    def _levels(self, bytes host):
        """(tier index, priority, host key or None, root) in match() search order."""
        cdef _RouterTables* t = &self._t
        keys = []
        if host and not host.startswith(b"."):
            keys.append(host)
        keys.extend(host[i:] for i in range(1, len(host)) if host[i] == 0x2E)
        index = {key: i for i, key in enumerate(self._host_keys)}
        levels = []
        for tier, priority in enumerate(self._tiers):
            for key in keys:
                if key in index and t.host_roots[index[key] * t.n_tiers + tier] >= 0:
                    levels.append((priority, key, t.host_roots[index[key] * t.n_tiers + tier]))
            if t.any_roots[tier] >= 0:
                levels.append((priority, None, t.any_roots[tier]))
        return levels

    def _path_matches(self, int32_t root, bytes path):
        """Every candidate matching `path` under `root`, in the order match() visits them."""
        cdef _RouterTables* t = &self._t
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

    def _why(self, winner, other):
        """Why pattern `winner` ranks before pattern `other` in one trie walk."""
        a = self._patterns[winner][2]
        b = self._patterns[other][2]
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b):
                return f"pattern ends at segment {i} before {{*rest}} takes the empty rest"
            if a[i][0] != b[i][0]:
                kinds = ("literal", "{param}", "{*rest}")
                return (f"{kinds[a[i][0]]} beats {kinds[b[i][0]]} at segment {i + 1}")
        route_a = self._patterns[winner][0]
        route_b = self._patterns[other][0]
        if route_a != route_b:
            return f"same pattern shape; route {route_a} has the lower route id"
        return "same route; earlier pattern"

    def explain(self, str method, str host, str path):
        """Human-readable trace of the decision for `fastgw routes --explain`."""
        self._check_compiled()
        host_bytes = _router_host_bytes(host)
        path_bytes = path.encode("utf-8")
        method_id = METHOD_IDS.get(method, M_OTHER)
        bit = 1 << method_id
        lines = [f"request: {method} host={host.lower() or '-'} path={path}"]
        levels = self._levels(host_bytes)
        if not levels:
            lines.append("no host level applies to this host")
        winner = None
        first_path_level = None
        for priority, key, root in levels:
            label = f"priority {priority}, {_router_host_label(key)}"
            matches = self._path_matches(root, path_bytes)
            if not matches:
                lines.append(f"[{label}] no pattern matches the path")
                continue
            lines.append(f"[{label}] {len(matches)} pattern(s) match the path,"
                         " in precedence order:")
            if first_path_level is None:
                first_path_level = (label, matches)
            for rank, (route_id, pattern_id, mask, _captures) in enumerate(matches):
                allowed = "any method" if mask == _ROUTER_ANY_METHOD else ",".join(
                    _router_method_names(mask))
                verdict = "method ok" if mask & bit else f"{method} not allowed"
                lines.append(f"  {rank + 1}. route {route_id} pattern {pattern_id} "
                             f"{self._patterns[pattern_id][1]!r} ({allowed}): {verdict}")
            for rank, (route_id, pattern_id, mask, _captures) in enumerate(matches):
                if mask & bit:
                    winner = (label, route_id, pattern_id, matches, rank)
                    break
            if winner is not None:
                break
        if winner is not None:
            label, route_id, pattern_id, matches, rank = winner
            lines.append(f"winner: route {route_id} pattern {pattern_id} "
                         f"{self._patterns[pattern_id][1]!r} at [{label}]")
            if rank > 0:
                lines.append(f"  earlier path matches on this level do not allow {method}")
            if rank + 1 < len(matches):
                lines.append(f"  over pattern {matches[rank + 1][1]} "
                             f"{self._patterns[matches[rank + 1][1]][1]!r}: "
                             + self._why(pattern_id, matches[rank + 1][1]))
            if len(self._tiers) > 1:
                lines.append("  (higher priority tiers are searched before lower ones, "
                             "host levels inside a tier: exact, wildcard, any host)")
        elif first_path_level is not None:
            label, matches = first_path_level
            mask = 0
            for _route_id, _pattern_id, m, _captures in matches:
                mask |= m
            lines.append(f"result: 405 method not allowed; Allow from [{label}]: "
                         + ", ".join(_router_method_names(mask)))
        else:
            lines.append("result: 404 no route matches")
        result = self.lookup(method, host, path)
        lines.append(f"match(): {result!r}")
        return lines

    def shadowed(self):
        """[(route_id, by_route_id)] for routes that can never be selected.

        Route A is reported when each of its (host, pattern) pairs is covered by one route B
        that always wins there for every method of A:
        - same priority: B has the same host key (same host level), the same pattern shape
          (literals and capture kinds, names ignored), a smaller route id and methods covering
          A's; or
        - higher priority: B's hosts cover A's (no hosts, same host, or a wildcard above it),
          B's pattern matches every path A's pattern matches, and B's methods cover A's.
        Combinations of several routes that together hide A are not detected.
        """
        by_shape = {}
        by_route = {}
        for route_id, _text, segments, _names in self._patterns:
            by_shape.setdefault(_router_shape(segments), []).append(route_id)
            by_route.setdefault(route_id, []).append(segments)
        higher = sorted(self._routes, key=lambda r: -self._routes[r][4])
        result = []
        for route_a in sorted(self._routes):
            keys_a, _hosts, mask_a, _names, priority_a = self._routes[route_a]
            shadower = None
            shadowed = True
            for segments in by_route[route_a]:
                for key in keys_a or (None,):
                    by = self._shadower(route_a, key, segments, mask_a, priority_a,
                                        by_shape[_router_shape(segments)], higher, by_route)
                    if by is None:
                        shadowed = False
                        break
                    if shadower is None:
                        shadower = by
                if not shadowed:
                    break
            if shadowed and shadower is not None:
                result.append((route_a, shadower))
        return result

    def _shadower(self, route_a, key, segments, mask_a, priority_a, same_shape, higher,
                  by_route):
        conditional_a = route_a in self._conditions
        for route_b in same_shape:
            if conditional_a or route_b in self._conditions:
                continue  # conditions decide at request time (conditional routes go first)
            keys_b, _h, mask_b, _n, priority_b = self._routes[route_b]
            if (route_b < route_a and priority_b == priority_a and key in (keys_b or (None,))
                    and mask_a & mask_b == mask_a):
                return route_b
        for route_b in higher:
            keys_b, _h, mask_b, _n, priority_b = self._routes[route_b]
            if priority_b <= priority_a:
                break
            if route_b in self._conditions:
                continue
            if mask_a & mask_b != mask_a:
                continue
            if not any(_router_host_covers(k, key) for k in keys_b or (None,)):
                continue
            if any(_router_generalises(general, segments) for general in by_route[route_b]):
                return route_b
        return None
