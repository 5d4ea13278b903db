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
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memchr, memcmp, memcpy, memset


cdef enum:
    # PERF: up to this many static children, comparing lengths then bytes beats hashing.
    _ROUTER_LINEAR_EDGES = 8
    _ROUTER_MAX_SEGMENT_BYTES = 1024
    _ROUTER_MAX_SEGMENTS = 256        # per pattern; bounds the depth of the trie walk
    _ROUTER_MAX_WILDCARD_LABELS = 32  # labels after "*."; bounds the wildcard levels of a host

cdef uint32_t _ROUTER_ANY_METHOD = 0xFFFFFFFFu

# RFC 3986 3.3 pchar, minus "%" (handled as pct-encoded) and without "{" / "}".
_ROUTER_PCHAR = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
)
_ROUTER_HEX = frozenset(b"0123456789abcdefABCDEF")
_ROUTER_HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-._")

cdef enum:
    # Segment kinds, in precedence order.
    _ROUTER_SEG_LITERAL = 0
    _ROUTER_SEG_PARAM = 1
    _ROUTER_SEG_CATCHALL = 2


cdef enum:
    _ROUTER_COND_HEADER = 0
    _ROUTER_COND_QUERY = 1


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


# RFC 9110 5.6.2 / 9.1: a method is a token; any token is a method (PURGE, PROPFIND, ...).
_ROUTER_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Method ids: M_* below _ROUTER_FIRST_EXTRA_METHOD; every other method a route names gets the
# next free bit of the 32-bit mask, per router (so per Plan).
cdef int _ROUTER_FIRST_EXTRA_METHOD = M_CONNECT + 1
cdef int _ROUTER_MAX_METHOD_BITS = 32


def _parse_route_methods(methods, dict extra):
    """Method names -> bit mask; None or empty means any method (nonstandard ones too).

    `extra` (name -> bit) is the router's table of methods without an M_* id; a new name
    takes the next free bit."""
    if isinstance(methods, str):
        raise ValueError(f"methods must be a list of method names, not the string {methods!r}")
    if methods is None or len(methods) == 0:
        return _ROUTER_ANY_METHOD, None
    mask = 0
    names = []
    for method in methods:
        if not isinstance(method, str) or not method or any(
                c not in _ROUTER_TOKEN_CHARS for c in method.encode("latin-1", "replace")):
            raise ValueError(f"method {method!r} is not a method name (an HTTP token)")
        # Methods are case-sensitive (RFC 9110 9.1); configs write the standard ones in any
        # case, so those are uppercased, as the config layer does for all of them.
        name = method.upper()
        bit = METHOD_IDS.get(name, -1)
        if bit < 0:
            bit = extra.get(name, -1)
        if bit < 0:
            bit = _ROUTER_FIRST_EXTRA_METHOD + len(extra)
            if bit >= _ROUTER_MAX_METHOD_BITS:
                raise ValueError(
                    f"method {method!r}: at most"
                    f" {_ROUTER_MAX_METHOD_BITS - _ROUTER_FIRST_EXTRA_METHOD} methods besides"
                    " the standard ones can be named in one config")
            extra[name] = bit
        if not mask & (1u << bit):
            names.append(name)
        mask |= 1u << bit
    return mask, names


def _router_host_bytes(host):
    # Tools pass text; a non-ASCII host can match no key, "?" keeps it that way.
    return host.lower().encode("ascii", "replace")


def _router_method_names(mask, dict extra=None):
    """The names of the methods in `mask`: standard ones in M_* order, then `extra`'s."""
    names = [METHOD_NAMES[m] for m in sorted(METHOD_NAMES) if mask & (1 << m)]
    if extra:
        names += [name for name, bit in extra.items() if mask & (1u << bit)]
    return names


def _router_pattern_error(pattern):
    """The message _parse_route_pattern refuses `pattern` with."""
    try:
        _parse_route_pattern(pattern)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"path pattern {pattern!r}: the scanner refused what the parser takes")


def _router_host_label(key):
    if key is None:
        return "any host"
    text = key.decode("ascii")
    return f"wildcard '*{text}'" if text.startswith(".") else f"exact '{text}'"


class RoutePatternError(ValueError):
    """Router.add() refused path patterns; `errors` is [(index in `patterns`, message)]."""

    def __init__(self, errors):
        super().__init__(errors[0][1])
        self.errors = errors


# Byte classes for the pattern scanner in add(); the rules are _parse_route_pattern's, which
# also words the error when the scanner refuses a pattern.
cdef enum:
    _ROUTER_BC_PCHAR = 1
    _ROUTER_BC_HEX = 2
    _ROUTER_BC_NAME = 4         # letter, digit or "_"
    _ROUTER_BC_NAME_FIRST = 8   # letter or "_"

cdef unsigned char _ROUTER_BYTE_CLASS[256]
memset(_ROUTER_BYTE_CLASS, 0, sizeof(_ROUTER_BYTE_CLASS))
for _router_c in _ROUTER_PCHAR:
    _ROUTER_BYTE_CLASS[_router_c] |= _ROUTER_BC_PCHAR
for _router_c in _ROUTER_HEX:
    _ROUTER_BYTE_CLASS[_router_c] |= _ROUTER_BC_HEX
for _router_c in bytearray(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"):
    _ROUTER_BYTE_CLASS[_router_c] |= _ROUTER_BC_NAME | _ROUTER_BC_NAME_FIRST
for _router_c in bytearray(b"0123456789"):
    _ROUTER_BYTE_CLASS[_router_c] |= _ROUTER_BC_NAME

_ROUTER_NO_HOSTS = ((), ())


cdef int _router_vec_push(_RouterVec* v, int32_t value) except -1:
    cdef Py_ssize_t cap
    cdef int32_t* data
    if v.n == v.cap:
        cap = 64 if v.cap == 0 else 2 * v.cap
        data = <int32_t*>realloc(v.data, cap * sizeof(int32_t))
        if data == NULL:
            raise MemoryError()
        v.data = data
        v.cap = cap
    v.data[v.n] = value
    v.n += 1
    return 0


cdef void _router_vec_free(_RouterVec* v) noexcept:
    free(v.data)
    v.data = NULL
    v.n = 0
    v.cap = 0


# Record strides of the vectors.
cdef enum:
    _RT_ID = 0          # Router._rts: route id, method mask, priority, has conditions
    _RT_MASK = 1
    _RT_PRIORITY = 2
    _RT_COND = 3
    _RT_STRIDE = 4
    _PAT_ROUTE = 0      # Router._pats: route index, first segment, segment count
    _PAT_SEG_FIRST = 1
    _PAT_SEG_COUNT = 2
    _PAT_STRIDE = 3
    _SEG_KIND = 0       # Router._segs: kind, offset into Router._pool, length
    _SEG_OFFSET = 1
    _SEG_LENGTH = 2
    _SEG_STRIDE = 3
    _PAIR_CAND = 0      # Router._pairs, one per (pattern, host level): candidate, its run
    _PAIR_RUN_FIRST = 1
    _PAIR_RUN_COUNT = 2
    _PAIR_STRIDE = 3


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


@cython.final
cdef class Router:
    """Route table: add() routes, compile() once, then match() on the hot path."""

    def __cinit__(self):
        memset(&self._t, 0, sizeof(_RouterTables))  # NULL tables: match() answers 404
        memset(&self._rts, 0, sizeof(_RouterVec))
        memset(&self._pats, 0, sizeof(_RouterVec))
        memset(&self._segs, 0, sizeof(_RouterVec))
        memset(&self._route_levels, 0, sizeof(_RouterVec))
        memset(&self._pairs, 0, sizeof(_RouterVec))

    def __init__(self):
        self._compiled = False
        self._pool = bytearray()
        self._route_index = {}
        self._route_hosts = []
        self._route_methods = []
        self._pat_text = []
        self._pat_names = []
        self._conditions = {}
        self._method_cache = {}
        self._extra_methods = {}
        self._extra_method_bytes = []
        self._level_keys = []
        self._host_index = {}
        self._tiers = []
        self._host_keys = []

    def __dealloc__(self):
        self._free_tables()
        _router_vec_free(&self._rts)
        _router_vec_free(&self._pats)
        _router_vec_free(&self._segs)
        _router_vec_free(&self._route_levels)
        _router_vec_free(&self._pairs)

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
        meet too: header names case-insensitive, values and query parts compared raw.
        Invalid patterns raise RoutePatternError (a ValueError) listing each one with its
        index; they are checked before hosts and methods. A refused route leaves no trace."""
        cdef int32_t route_index
        cdef Py_ssize_t segs_mark = self._segs.n, pats_mark = self._pats.n
        cdef Py_ssize_t pool_mark = len(self._pool)
        if self._compiled:
            raise RuntimeError("Router.add() after compile()")
        if route_id in self._route_index:
            raise ValueError(f"route id {route_id} added twice")
        if isinstance(patterns, str) or not patterns:
            raise ValueError("a route needs a non-empty list of path patterns")
        if isinstance(hosts, str):
            raise ValueError("hosts must be a list of host names, not a string")
        route_index = len(self._route_hosts)
        first_id = len(self._pat_text)
        try:
            errors = None
            for j, pattern in enumerate(patterns):
                names = self._add_pattern(pattern, route_index)
                if names is None:
                    errors = errors or []
                    errors.append((j, _router_pattern_error(pattern)))
                elif errors is None:
                    self._pat_text.append(pattern)
                    self._pat_names.append(names)
            if errors is not None:
                raise RoutePatternError(errors)
            if hosts:
                host_keys = []
                host_texts = []
                for host in hosts:
                    key = _parse_route_host(host)
                    if key not in host_keys:
                        host_keys.append(key)
                        host_texts.append(host.lower())
                route_hosts = (tuple(host_keys), tuple(host_texts))
            else:
                route_hosts = _ROUTER_NO_HOSTS
            mask, method_names = self._methods(methods)
            conditions = []
            for kind, table in ((_ROUTER_COND_HEADER, headers), (_ROUTER_COND_QUERY, query)):
                for name, value in (table or {}).items():
                    key = name.lower() if kind == _ROUTER_COND_HEADER else name
                    conditions.append((kind, key.encode("latin-1"),
                                       None if value == "*" else value.encode("latin-1")))
        except BaseException:
            self._segs.n = segs_mark
            self._pats.n = pats_mark
            del self._pool[pool_mark:]
            del self._pat_text[first_id:]
            del self._pat_names[first_id:]
            raise
        if conditions:
            self._conditions[route_index] = tuple(conditions)
        _router_vec_push(&self._rts, route_id)
        _router_vec_push(&self._rts, <int32_t><uint32_t>mask)
        _router_vec_push(&self._rts, priority)
        _router_vec_push(&self._rts, 1 if conditions else 0)
        self._route_index[route_id] = route_index
        self._route_hosts.append(route_hosts)
        self._route_methods.append(method_names)
        return list(range(first_id, len(self._pat_text)))

    cdef tuple _methods(self, methods):
        # PERF: most routes repeat a few method lists; parse each list once.
        if methods is None or isinstance(methods, str) or len(methods) == 0:
            return _parse_route_methods(methods, self._extra_methods)
        try:
            key = tuple(methods)
            cached = self._method_cache.get(key)
        except TypeError:  # unhashable entries: let the parser word the error
            return _parse_route_methods(methods, self._extra_methods)
        if cached is None:
            cached = self._method_cache[key] = _parse_route_methods(methods,
                                                                    self._extra_methods)
            self._extra_method_bytes = [(name.encode("latin-1"), bit)
                                        for name, bit in self._extra_methods.items()]
        return cached

    cdef int method_bit(self, int method_id, const char* method,
                        Py_ssize_t method_len) noexcept:
        """The router's id for a request's method: `method_id` (M_*) unless it is M_OTHER
        and a route names this method (PURGE, PROPFIND, ...)."""
        cdef bytes name
        cdef int bit
        if method_id != M_OTHER or not self._extra_method_bytes:
            return method_id
        for name, bit in self._extra_method_bytes:
            if len(name) == method_len and memcmp(<const char*>name, method, method_len) == 0:
                return bit
        return M_OTHER

    def method_names(self, unsigned int mask):
        """Method names of a mask (an Allow field), the router's own methods included."""
        return _router_method_names(mask, self._extra_methods)

    cdef int _method_id(self, str method):
        cdef int method_id = METHOD_IDS.get(method, M_OTHER)
        if method_id == M_OTHER:
            method_id = self._extra_methods.get(method, M_OTHER)
        return method_id

    cdef object _add_pattern(self, object pattern, int32_t route_index):
        """Record a valid pattern's segments and return its capture names (a tuple); None,
        recording nothing, when _parse_route_pattern would refuse it."""
        cdef const unsigned char* s
        cdef Py_ssize_t n, start, end, i, name_start
        cdef Py_ssize_t segs_mark = self._segs.n
        cdef int32_t base, n_segs = 0, seg_first = <int32_t>(self._segs.n // _SEG_STRIDE)
        cdef const void* slash
        cdef bint last
        cdef int kind
        # Every valid pattern is ASCII: non-ASCII bytes are not pchar (RFC 3986 3.3).
        if type(pattern) is not str or not (<str>pattern).isascii():
            return None
        raw = (<str>pattern).encode("ascii")
        s = <const unsigned char*><const char*>raw
        n = len(raw)
        if n == 0 or s[0] != b"/":
            return None
        base = <int32_t>len(self._pool)
        names = None
        start = 1
        while True:
            slash = memchr(s + start, b"/", <size_t>(n - start))
            last = slash == NULL
            end = n if last else <const unsigned char*>slash - s
            n_segs += 1
            if n_segs > _ROUTER_MAX_SEGMENTS:
                break
            if end - start >= 2 and s[start] == b"{" and s[end - 1] == b"}":
                kind = _ROUTER_SEG_PARAM
                name_start = start + 1
                if s[name_start] == b"*":
                    kind = _ROUTER_SEG_CATCHALL
                    name_start += 1
                    if not last:
                        break
                if name_start >= end - 1 or not (
                        _ROUTER_BYTE_CLASS[s[name_start]] & _ROUTER_BC_NAME_FIRST):
                    break
                i = name_start + 1
                while i < end - 1 and _ROUTER_BYTE_CLASS[s[i]] & _ROUTER_BC_NAME:
                    i += 1
                if i < end - 1:
                    break
                name = (<str>pattern)[name_start:end - 1]
                if names is None:
                    names = [name]
                elif name in names:
                    break
                else:
                    names.append(name)
                _router_vec_push(&self._segs, kind)
                _router_vec_push(&self._segs, 0)
                _router_vec_push(&self._segs, 0)
            else:
                if (end == start and not last) or end - start > _ROUTER_MAX_SEGMENT_BYTES:
                    break
                i = start
                while i < end:
                    if s[i] == b"%":  # RFC 3986 2.1 pct-encoded = "%" HEXDIG HEXDIG
                        if i + 2 >= end or not (_ROUTER_BYTE_CLASS[s[i + 1]]
                                                & _ROUTER_BYTE_CLASS[s[i + 2]] & _ROUTER_BC_HEX):
                            break
                        i += 3
                    elif _ROUTER_BYTE_CLASS[s[i]] & _ROUTER_BC_PCHAR:
                        i += 1
                    else:
                        break
                if i < end:
                    break
                _router_vec_push(&self._segs, _ROUTER_SEG_LITERAL)
                _router_vec_push(&self._segs, base + <int32_t>start)
                _router_vec_push(&self._segs, <int32_t>(end - start))
            if last:
                if names is not None and len(names) > MAX_ROUTE_PARAMS:
                    break
                self._pool += raw
                _router_vec_push(&self._pats, route_index)
                _router_vec_push(&self._pats, seg_first)
                _router_vec_push(&self._pats, n_segs)
                return () if names is None else tuple(names)
            start = end + 1
        self._segs.n = segs_mark
        return None

    def compile(self):
        """Build the C tables; the route set is frozen afterwards."""
        cdef _RouterTables* t = &self._t
        cdef Py_ssize_t n_routes = self._rts.n // _RT_STRIDE
        cdef Py_ssize_t n_patterns = self._pats.n // _PAT_STRIDE
        cdef Py_ssize_t n_levels, n_pairs = 0, node_cap, edge_cap, n_nodes = 0, n_edges = 0
        cdef Py_ssize_t p, r, li, si, i, k, n_slots
        cdef int32_t node, child, level, seg_first, seg_end, kind_end, length, run_first
        cdef uint32_t h, j, table_mask, size
        cdef int32_t* rts = self._rts.data
        cdef int32_t* pats = self._pats.data
        cdef int32_t* segs = self._segs.data
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
        if self._compiled:
            return
        self._free_tables()  # a compile() that failed half-way may have left tables
        _router_vec_free(&self._route_levels)
        _router_vec_free(&self._pairs)
        # Host levels: one trie per (priority, host key or None); each route's level ids.
        level_ids = {}
        self._level_keys = level_keys = []
        for r in range(n_routes):
            _router_vec_push(&self._route_levels, 0)
        _router_vec_push(&self._route_levels, 0)
        for r in range(n_routes):
            self._route_levels.data[r] = <int32_t>(self._route_levels.n)
            priority = rts[r * _RT_STRIDE + _RT_PRIORITY]
            for key in self._route_hosts[r][0] or (None,):
                level_key = (priority, key)
                level = level_ids.get(level_key, -1)
                if level < 0:
                    level = level_ids[level_key] = len(level_keys)
                    level_keys.append(level_key)
                _router_vec_push(&self._route_levels, level)
        self._route_levels.data[n_routes] = <int32_t>self._route_levels.n
        levels_of = self._route_levels.data
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
            pool = self._pool
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
            data = bytearray(self._pool)
            cond_runs = self._compile_conditions(data)
            for i in range(n_pairs):
                _router_vec_push(&self._pairs, 0)
                _router_vec_push(&self._pairs, 0)
                _router_vec_push(&self._pairs, 0)
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
                    self._pairs.data[bc.order * _PAIR_STRIDE + _PAIR_CAND] = <int32_t>i
                    i += 1
                if kind_end:
                    nodes[node].catchall_first = run_first
                    nodes[node].catchall_count = <int32_t>i - run_first
                else:
                    nodes[node].cand_first = run_first
                    nodes[node].cand_count = <int32_t>i - run_first
                for k in range(run_first, i):
                    self._pairs.data[build_cands[k].order * _PAIR_STRIDE + _PAIR_RUN_FIRST] = (
                        run_first)
                    self._pairs.data[build_cands[k].order * _PAIR_STRIDE + _PAIR_RUN_COUNT] = (
                        <int32_t>i - run_first)
            roots = {level_keys[i]: level_root[i] for i in range(n_levels)}
        finally:
            free(level_root)
            free(edge_parent)
            free(edge_table)
            free(build_edges)
            free(build_cands)
        self._compile_hosts(data, roots)
        self._compiled = True

    cdef dict _compile_conditions(self, bytearray data):
        # One run per conditional route; names and values go to the byte pool.
        cdef _RouterCondition* cond
        cdef Py_ssize_t i = 0, n = 0
        cond_runs = {}
        for conditions in self._conditions.values():
            n += len(conditions)
        self._t.conds = <_RouterCondition*>malloc(max(1, n) * sizeof(_RouterCondition))
        if self._t.conds == NULL:
            raise MemoryError()
        for route_index, conditions in self._conditions.items():
            cond_runs[route_index] = (i, len(conditions))
            for kind, name, value in conditions:
                cond = &self._t.conds[i]
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

    cdef _compile_hosts(self, bytearray data, dict roots):
        # The host hash table, the roots of every (tier, host level) and the byte pool.
        cdef _RouterTables* t = &self._t
        cdef Py_ssize_t i, n_tiers, n_hosts
        cdef uint32_t size = 1
        cdef uint32_t j
        self._tiers = sorted({key[0] for key in roots}, reverse=True)
        self._host_keys = sorted({key[1] for key in roots if key[1] is not None})
        self._host_index = {key: i for i, key in enumerate(self._host_keys)}
        n_tiers = len(self._tiers)
        n_hosts = len(self._host_keys)
        host_offsets = []
        for key in self._host_keys:
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
        # Set last: until here match() sees no tiers and answers 404.
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
        self._check_pattern_id(pattern_id)
        return list(self._pat_names[pattern_id])

    def common_params(self, pattern_ids):
        """Capture names every pattern of `pattern_ids` has, in the first one's order."""
        for pattern_id in pattern_ids:
            self._check_pattern_id(pattern_id)
        if not pattern_ids:
            return ()
        first = self._pat_names[pattern_ids[0]]
        others = [self._pat_names[pattern_id] for pattern_id in pattern_ids[1:]]
        return tuple(name for name in first if all(name in other for other in others))

    def pattern_text(self, int pattern_id):
        self._check_pattern_id(pattern_id)
        return self._pat_text[pattern_id]

    cdef _check_pattern_id(self, int pattern_id):
        # Bounds checks are compiled out, so an unknown id must be refused here.
        if not 0 <= pattern_id < len(self._pat_text):
            raise IndexError(f"unknown pattern id {pattern_id}")

    cdef tuple _segments(self, int pattern_id):
        """((kind, literal bytes), ...) of a pattern, as _parse_route_pattern splits it."""
        cdef int32_t* pat = self._pats.data + pattern_id * _PAT_STRIDE
        cdef int32_t* seg
        cdef Py_ssize_t i
        segments = []
        for i in range(pat[_PAT_SEG_FIRST], pat[_PAT_SEG_FIRST] + pat[_PAT_SEG_COUNT]):
            seg = self._segs.data + i * _SEG_STRIDE
            segments.append((seg[_SEG_KIND], bytes(
                self._pool[seg[_SEG_OFFSET]:seg[_SEG_OFFSET] + seg[_SEG_LENGTH]])))
        return tuple(segments)

    cdef int _route_id_of(self, int pattern_id):
        return self._rts.data[self._pats.data[pattern_id * _PAT_STRIDE + _PAT_ROUTE]
                              * _RT_STRIDE + _RT_ID]

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
                                   self._method_id(method), &fields, &m)
        if result == MATCH_FOUND:
            names = self._pat_names[m.pattern_id]
            params = {
                names[i]: path_bytes[m.param_off[i]:m.param_off[i] + m.param_len[i]].decode(
                    "utf-8", "surrogateescape")
                for i in range(m.n_params)
            }
            return ("found", m.route_id, m.pattern_id, params)
        if result == MATCH_METHOD_NOT_ALLOWED:
            return ("method_not_allowed", self.method_names(m.allowed_methods))
        return ("not_found",)

    def describe(self):
        """One dict per pattern, in pattern id order (for `fastgw routes`)."""
        cdef Py_ssize_t pattern_id
        cdef int32_t r
        rows = []
        for pattern_id in range(len(self._pat_text)):
            r = self._pats.data[pattern_id * _PAT_STRIDE + _PAT_ROUTE]
            method_names = self._route_methods[r]
            rows.append({
                "route_id": self._rts.data[r * _RT_STRIDE + _RT_ID],
                "pattern_id": pattern_id,
                "hosts": list(self._route_hosts[r][1]),
                "pattern": self._pat_text[pattern_id],
                "methods": None if method_names is None else list(method_names),
                "priority": self._rts.data[r * _RT_STRIDE + _RT_PRIORITY],
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

    def _why(self, winner, other, names):
        """Why pattern `winner` ranks before pattern `other` in one trie walk."""
        a = self._segments(winner)
        b = self._segments(other)
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b):
                return f"it ends at segment {i}, before {{*rest}} would take the empty rest"
            if a[i][0] != b[i][0]:
                kinds = ("a literal segment", "{param}", "{*rest}")
                return (f"{kinds[a[i][0]]} beats {kinds[b[i][0]]} at segment {i + 1}")
        route_a = self._route_id_of(winner)
        route_b = self._route_id_of(other)
        if route_a != route_b:
            return (f"the same shape; {names(route_a)} comes before {names(route_b)} in the"
                    " config")
        return "the same route; its earlier path"

    def explain(self, str method, str host, str path, route_names=None):
        """Human-readable trace of the decision for `fastgw routes --explain`.

        `route_names` maps a route id to the route's name (the config's), which the lines
        then use instead of route ids."""
        self._check_compiled()
        host_bytes = _router_host_bytes(host)
        path_bytes = path.encode("utf-8")
        method_id = self._method_id(method)
        bit = 1 << method_id

        def name(route_id):
            if route_names is None:
                return f"route {route_id}"
            return f"route {route_names[route_id]!r}"

        lines = [f"request: {method} host={host.lower() or '(none)'} path={path}"]
        levels = self._levels(host_bytes)
        if not levels:
            lines.append("no route serves this host")
        winner = None
        first_path_level = None
        for priority, key, root in levels:
            label = f"priority {priority}, {_router_host_label(key)}"
            matches = self._path_matches(root, path_bytes)
            if not matches:
                lines.append(f"[{label}] no path pattern matches")
                continue
            lines.append(f"[{label}] {len(matches)} path pattern(s) match,"
                         " in precedence order:")
            if first_path_level is None:
                first_path_level = (label, matches)
            for rank, (route_id, pattern_id, mask, _captures) in enumerate(matches):
                allowed = "any method" if mask == _ROUTER_ANY_METHOD else ",".join(
                    self.method_names(mask))
                verdict = "method ok" if mask & bit else f"{method} not allowed"
                lines.append(f"  {rank + 1}. {name(route_id)} "
                             f"{self._pat_text[pattern_id]!r} ({allowed}): {verdict}")
            for rank, (route_id, pattern_id, mask, _captures) in enumerate(matches):
                if mask & bit:
                    winner = (label, route_id, pattern_id, matches, rank)
                    break
            if winner is not None:
                break
        if winner is not None:
            label, route_id, pattern_id, matches, rank = winner
            lines.append(f"winner: {name(route_id)} {self._pat_text[pattern_id]!r}"
                         f" [{label}]")
            if rank > 0:
                lines.append(f"  the path patterns before it do not allow {method}")
            if rank + 1 < len(matches):
                other = matches[rank + 1]
                lines.append(f"  over {name(other[0])} {self._pat_text[other[1]]!r}: "
                             + self._why(pattern_id, other[1], name))
            if len(self._tiers) > 1:
                lines.append("  (higher priorities are searched first; within one:"
                             " the exact host, then wildcards, then routes for any host)")
        elif first_path_level is not None:
            label, matches = first_path_level
            mask = 0
            for _route_id, _pattern_id, m, _captures in matches:
                mask |= m
            lines.append(f"result: 405 method not allowed; Allow from [{label}]: "
                         + ", ".join(self.method_names(mask)))
        else:
            lines.append("result: 404 no route matches")
        return lines

    def shadowed(self):
        """[(route_id, by_route_id)] for routes that can never be selected (after compile()).

        Route A is reported when each of its (host, pattern) pairs is covered by one route B
        that always wins there for every method of A:
        - same priority: B has the same host key (same host level), the same pattern shape
          (literals and capture kinds, names ignored), a smaller route id and methods covering
          A's; or
        - higher priority: B's hosts cover A's (no hosts, same host, or a wildcard above it),
          B's pattern matches every path A's pattern matches, and B's methods cover A's.
        B is the first such route for A's first pair: same priority before higher, then
        the lowest pattern id among same-shape routes, or the highest priority and earliest
        added among higher ones. Combinations of several routes that together hide A are not
        detected. Only routes that can collide are compared: same-shape routes share A's
        candidate run on its trie node, and higher-priority ones are found by walking the
        higher tiers' tries along A's pattern.
        """
        cdef Py_ssize_t n_routes = self._rts.n // _RT_STRIDE
        cdef Py_ssize_t n_patterns = self._pats.n // _PAT_STRIDE
        cdef Py_ssize_t p, r, li, pair
        cdef int32_t by, shadower
        cdef int32_t* pair_first
        cdef bint shadowed
        self._check_compiled()
        # Pattern ids of each route, and the first pair of each pattern.
        route_patterns = [[] for _ in range(n_routes)]
        starts = [0] * (n_patterns + 1)
        pair = 0
        for p in range(n_patterns):
            r = self._pats.data[p * _PAT_STRIDE + _PAT_ROUTE]
            route_patterns[r].append(p)
            starts[p] = pair
            pair += self._route_levels.data[r + 1] - self._route_levels.data[r]
        result = []
        for route_id, r in sorted(self._route_index.items()):
            shadower = -1
            shadowed = True
            for p in route_patterns[r]:
                pair = starts[p]
                for li in range(self._route_levels.data[r], self._route_levels.data[r + 1]):
                    by = self._shadower(r, p, pair, self._route_levels.data[li])
                    pair += 1
                    if by < 0:
                        shadowed = False
                        break
                    if shadower < 0:
                        shadower = by
                if not shadowed:
                    break
            if shadowed and shadower >= 0:
                result.append((route_id, self._rts.data[shadower * _RT_STRIDE + _RT_ID]))
        return result

    cdef int32_t _shadower(self, Py_ssize_t r, Py_ssize_t p, Py_ssize_t pair,
                           int32_t level) except -2:
        # The route index of the route that always wins over pattern p of route r on one
        # host level, or -1.
        cdef _RouterTables* t = &self._t
        cdef int32_t* rt = self._rts.data + r * _RT_STRIDE
        cdef int32_t* pr = self._pairs.data + pair * _PAIR_STRIDE
        cdef int32_t* pat = self._pats.data + p * _PAT_STRIDE
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
                return self._pats.data[best * _PAT_STRIDE + _PAT_ROUTE]
        if not self._tiers or self._tiers[0] <= rt[_RT_PRIORITY]:
            return -1
        cover.t = t
        cover.pats = self._pats.data
        cover.segs = self._segs.data
        cover.mask = mask
        cover.best = -1
        key = self._level_keys[level][1]
        covering = []  # host indexes of the keys whose hosts include every host of `key`
        if key is not None:
            if key in self._host_index:
                covering.append(self._host_index[key])
            for i in range(1, len(key)):
                if key[i] == 0x2E and key[i:] in self._host_index:
                    covering.append(self._host_index[key[i:]])
        for tier in range(t.n_tiers):
            if self._tiers[tier] <= rt[_RT_PRIORITY]:
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
