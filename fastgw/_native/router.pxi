# router.pxi: host + path + method -> route, decided by C tables built once in compile().
# Router.compile() builds them in router_build.pxi; what the tools ask (lookup, describe,
# explain, shadowed) is answered in router_explain.pxi.
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
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memset


cdef enum:
    # PERF: up to this many static children, comparing lengths then bytes beats hashing.
    _ROUTER_LINEAR_EDGES = 8
    _ROUTER_MAX_SEGMENT_BYTES = 1024
    _ROUTER_MAX_SEGMENTS = 256        # per pattern; bounds the depth of the trie walk
    _ROUTER_MAX_WILDCARD_LABELS = 32  # labels after "*."; bounds the wildcard levels of a host

# A route without `methods` takes any method but TRACE and CONNECT: TRACE echoes the request,
# cookies and credentials included (cross-site tracing), so only a route that names it gets
# it, and the gateway never tunnels CONNECT (the parser answers it 501). Decided here, once
# per route: the match is the same one bit test for every method.
cdef uint32_t _ROUTER_ANY_METHOD = 0xFFFFFFFFu & ~((1u << M_TRACE) | (1u << M_CONNECT))

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
        _router_compile(self)

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

    # Python's view for plan.py, `fastgw routes` and the tests (router_explain.pxi).

    def lookup(self, str method, str host, str path, headers=None, query=None):
        """("found", route_id, pattern_id, {name: value}) | ("not_found",)
        | ("method_not_allowed", [method, ...])

        `headers` ([(name, value)]) and `query` (raw, without "?") feed route conditions."""
        return _router_lookup(self, method, host, path, headers, query)

    def describe(self):
        """One dict per pattern, in pattern id order (for `fastgw routes`)."""
        return _router_describe(self)

    def _levels(self, bytes host):
        """(tier index, priority, host key or None, root) in match() search order."""
        return _router_levels(self, host)

    def _path_matches(self, int32_t root, bytes path):
        """Every candidate matching `path` under `root`, in the order match() visits them."""
        return _router_path_matches(self, root, path)

    def _why(self, winner, other, names):
        """Why pattern `winner` ranks before pattern `other` in one trie walk."""
        return _router_why(self, winner, other, names)

    def explain(self, str method, str host, str path, route_names=None):
        """Human-readable trace of the decision for `fastgw routes --explain`.

        `route_names` maps a route id to the route's name (the config's), which the lines
        then use instead of route ids."""
        return _router_explain(self, method, host, path, route_names)

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
        return _router_shadowed(self)
