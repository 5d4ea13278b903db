# http1.pxi: the HTTP/1.1 request and response parsers (RFC 9110, RFC 9112) and the
# request path normalisation (RFC 3986 5.2.4).
#
# Both parsers are pull parsers: execute() consumes bytes and returns one ParserEvent at a
# time. Heads are copied into a parser-owned buffer and scanned by a resumable byte state
# machine, so any split of the input (down to one byte per call) yields the same events and
# the same error code; every rule is checked at the byte that breaks it, never on a timeout.
# Bodies are never copied: EV_BODY points into the caller's buffer. Nothing in execute()
# touches a Python object. The full list of rejected forms is docs/strictness.md.

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport INT64_MAX
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcpy


cdef extern from *:
    """
    /* One bit per character class (RFC 9110 5.6.2 tchar, 5.5 field-vchar, RFC 3986). */
    enum {
        FASTGW_CC_TCHAR = 1,      /* token character */
        FASTGW_CC_VALUE = 2,      /* field value byte: HTAB, SP, VCHAR, obs-text */
        FASTGW_CC_TARGET = 4,     /* request-target byte: VCHAR except '#' */
        FASTGW_CC_HEX = 8,        /* HEXDIG */
        FASTGW_CC_UNRESERVED = 16,/* ALPHA DIGIT - . _ ~ */
        FASTGW_CC_PATHSPEC = 32,  /* '%' '.' ';' '\\': the path needs the slow normaliser */
        FASTGW_CC_QDTEXT = 64,    /* quoted-string text (RFC 9110 5.6.4) */
        FASTGW_CC_SLASH = 128     /* '/': with merge_slashes, "//" needs the slow normaliser */
    };
    static const unsigned char fastgw_http1_cc[256] = {
         0,  0,  0,  0,  0,  0,  0,  0,  0, 66,  0,  0,  0,  0,  0,  0,
         0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
        66, 71,  6, 67, 71,103, 71, 71, 70, 70, 71, 71, 70, 87,119,198,
        95, 95, 95, 95, 95, 95, 95, 95, 95, 95, 70,102, 70, 70, 70, 70,
        70, 95, 95, 95, 95, 95, 95, 87, 87, 87, 87, 87, 87, 87, 87, 87,
        87, 87, 87, 87, 87, 87, 87, 87, 87, 87, 87, 70, 38, 70, 71, 87,
        71, 95, 95, 95, 95, 95, 95, 87, 87, 87, 87, 87, 87, 87, 87, 87,
        87, 87, 87, 87, 87, 87, 87, 87, 87, 87, 87, 70, 71, 70, 87,  0,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    };
    /* Index of the lowest byte whose high bit is set in a SWAR mask (m != 0); 0 where the
       byte order makes that unknown, so callers fall back to their byte loop. */
    static inline Py_ssize_t fastgw_first_flagged_byte(uint64_t m) {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return (Py_ssize_t)(__builtin_ctzll(m) >> 3);
    #else
        (void)m;
        return 0;
    #endif
    }
    """
    const unsigned char fastgw_http1_cc[256]
    Py_ssize_t fastgw_first_flagged_byte(uint64_t m) nogil
    enum:
        FASTGW_CC_TCHAR
        FASTGW_CC_VALUE
        FASTGW_CC_TARGET
        FASTGW_CC_HEX
        FASTGW_CC_UNRESERVED
        FASTGW_CC_PATHSPEC
        FASTGW_CC_QDTEXT
        FASTGW_CC_SLASH


# --- scanner states ----------------------------------------------------------------------
cdef enum:
    # request line (RFC 9112 3)
    H1_LEADING = 0       # before the request line: empty lines are ignored (RFC 9112 2.2)
    H1_LEADING_LF = 1
    H1_METHOD = 2
    H1_TARGET_START = 3
    H1_TARGET = 4
    H1_VERSION = 5
    # status line (RFC 9112 4)
    H1_S_VERSION = 6
    H1_S_STATUS = 7
    H1_S_REASON = 8
    H1_LINE_LF = 9       # CR seen at the end of the start line
    # field lines (RFC 9112 5)
    H1_FIELD_START = 10
    H1_NAME = 11
    H1_VALUE_OWS = 12
    H1_VALUE = 13
    H1_VALUE_LF = 14
    H1_HEAD_END_LF = 15
    # body
    H1_LENGTH = 20
    H1_CLOSE = 21
    H1_TUNNEL = 22
    H1_CHUNK_SIZE = 23
    H1_EXT_BWS = 24
    H1_EXT_NAME_START = 25
    H1_EXT_NAME = 26
    H1_EXT_AFTER_NAME = 27
    H1_EXT_VAL_START = 28
    H1_EXT_VAL_TOKEN = 29
    H1_EXT_QUOTED = 30
    H1_EXT_QUOTED_ESC = 31
    H1_EXT_AFTER_QUOTED = 32
    H1_CHUNK_LINE_LF = 33
    H1_CHUNK_DATA = 34
    H1_CHUNK_DATA_CR = 35
    H1_CHUNK_DATA_LF = 36
    H1_TRAILER_START = 37
    H1_TRAILER_NAME = 38
    H1_TRAILER_VALUE = 39
    H1_TRAILER_VALUE_LF = 40
    H1_TRAILER_END_LF = 41
    # message boundaries
    H1_DONE_PENDING = 50  # message complete, EV_DONE not yet returned
    H1_DONE = 51          # EV_DONE returned; the next execute() with data starts a message
    H1_INTERIM = 52       # a 1xx head was returned; the next bytes are the next head
    H1_ERROR = 60

cdef enum:
    H1_SCAN_ERROR = -1
    H1_SCAN_MORE = 0
    H1_SCAN_LINE = 1        # start line complete
    H1_SCAN_END = 2         # head (or chunked body) complete
    H1_SCAN_DATA = 3        # chunk data follows

cdef int64_t MAX_BODY_UNLIMITED = INT64_MAX
cdef const char* H1_HTTP_PREFIX = b"HTTP/"  # HTTP-name is case-sensitive (RFC 9112 2.3)


# PERF: SWAR scans of the two long runs of a head (field values, the request-target), eight
# bytes per step. Each test is exact for "some byte of w is in the class"; the byte loop
# after it finds which one.
cdef uint64_t H1_ONES = 0x0101010101010101ULL
cdef uint64_t H1_HIGHS = 0x8080808080808080ULL


cdef inline uint64_t _h1_has_less(uint64_t w, uint64_t n) noexcept:
    # some byte < n (n <= 128)
    return (w - H1_ONES * n) & ~w & H1_HIGHS


cdef inline uint64_t _h1_has_byte(uint64_t w, uint64_t b) noexcept:
    cdef uint64_t x = w ^ (H1_ONES * b)
    return (x - H1_ONES) & ~x & H1_HIGHS


cdef inline uint64_t _h1_value_word_stops(uint64_t w) noexcept:
    # flags CTLs and DEL (HTAB too: the byte loop lets it through)
    return _h1_has_less(w, 0x20) | _h1_has_byte(w, 0x7F)


cdef inline uint64_t _h1_target_word_stops(uint64_t w) noexcept:
    # flags every byte but VCHAR, and '#'
    return (_h1_has_less(w, 0x21) | _h1_has_byte(w, 0x7F) | _h1_has_byte(w, 0x23)
            | (w & H1_HIGHS))


# --- small helpers -----------------------------------------------------------------------
cdef inline int _h1_hexval(unsigned char c) noexcept:
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20
    if 97 <= c <= 102:
        return c - 87
    return -1


cdef inline unsigned char _h1_lower(unsigned char c) noexcept:
    if 65 <= c <= 90:
        return c + 32
    return c


cdef inline bint _h1_eq_lower(const char* s, const char* lit, Py_ssize_t n) noexcept:
    # s (any case) equals the lowercase literal lit
    cdef Py_ssize_t i
    for i in range(n):
        if _h1_lower(<unsigned char>s[i]) != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint _h1_eq_nocase(const char* a, const char* b, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if _h1_lower(<unsigned char>a[i]) != _h1_lower(<unsigned char>b[i]):
            return False
    return True


cdef inline bint _h1_name_is(const char* s, const char* lit, Py_ssize_t n) noexcept:
    # PERF: s is a token and lit is lowercase letters and '-': OR-ing 0x20 lowercases s
    # and maps no other tchar onto a letter or '-'.
    cdef Py_ssize_t i
    for i in range(n):
        if (<unsigned char>s[i] | 0x20) != <unsigned char>lit[i]:
            return False
    return True


cdef int _h1_header_id(const char* s, Py_ssize_t n) noexcept:
    # PERF: dispatch on length first; most fields match no candidate after one compare.
    cdef unsigned char c0 = <unsigned char>s[0] | 0x20
    if n == 2:
        if _h1_name_is(s, b"te", 2):
            return H_TE
    elif n == 4:
        if _h1_name_is(s, b"host", 4):
            return H_HOST
    elif n == 6:
        if _h1_name_is(s, b"expect", 6):
            return H_EXPECT
    elif n == 7:
        if c0 == b"u" and _h1_name_is(s, b"upgrade", 7):
            return H_UPGRADE
        if c0 == b"t" and _h1_name_is(s, b"trailer", 7):
            return H_TRAILER
    elif n == 10:
        if c0 == b"c" and _h1_name_is(s, b"connection", 10):
            return H_CONNECTION
        if c0 == b"k" and _h1_name_is(s, b"keep-alive", 10):
            return H_KEEP_ALIVE
        if c0 == b"t" and _h1_name_is(s, b"tracestate", 10):
            return H_TRACESTATE
    elif n == 11:
        if c0 == b"t" and _h1_name_is(s, b"traceparent", 11):
            return H_TRACEPARENT
    elif n == 12:
        if _h1_name_is(s, b"x-request-id", 12):
            return H_X_REQUEST_ID
    elif n == 14:
        if _h1_name_is(s, b"content-length", 14):
            return H_CONTENT_LENGTH
    elif n == 15:
        if _h1_name_is(s, b"x-forwarded-for", 15):
            return H_X_FORWARDED_FOR
    elif n == 16:
        if c0 == b"x" and _h1_name_is(s, b"x-forwarded-host", 16):
            return H_X_FORWARDED_HOST
        if c0 == b"p" and _h1_name_is(s, b"proxy-connection", 16):
            return H_PROXY_CONNECTION
    elif n == 17:
        if c0 == b"t" and _h1_name_is(s, b"transfer-encoding", 17):
            return H_TRANSFER_ENCODING
        if c0 == b"x" and _h1_name_is(s, b"x-forwarded-proto", 17):
            return H_X_FORWARDED_PROTO
    elif n == 18:
        if _h1_name_is(s, b"proxy-authenticate", 18):
            return H_PROXY_AUTHENTICATE
    elif n == 19:
        if _h1_name_is(s, b"proxy-authorization", 19):
            return H_PROXY_AUTHORIZATION
    return H_OTHER


cdef int _h1_method_id(const char* s, Py_ssize_t n) noexcept:
    # methods are case-sensitive (RFC 9110 9.1)
    if n == 3:
        if s[0] == b"G" and s[1] == b"E" and s[2] == b"T":
            return M_GET
        if s[0] == b"P" and s[1] == b"U" and s[2] == b"T":
            return M_PUT
    elif n == 4:
        if s[0] == b"P" and s[1] == b"O" and s[2] == b"S" and s[3] == b"T":
            return M_POST
        if s[0] == b"H" and s[1] == b"E" and s[2] == b"A" and s[3] == b"D":
            return M_HEAD
    elif n == 5:
        if s[0] == b"P" and s[1] == b"A" and s[2] == b"T" and s[3] == b"C" and s[4] == b"H":
            return M_PATCH
        if s[0] == b"T" and s[1] == b"R" and s[2] == b"A" and s[3] == b"C" and s[4] == b"E":
            return M_TRACE
    elif n == 6:
        if s[0] == b"D" and _h1_eq_bytes(s, b"DELETE", 6):
            return M_DELETE
    elif n == 7:
        if s[0] == b"O" and _h1_eq_bytes(s, b"OPTIONS", 7):
            return M_OPTIONS
        if s[0] == b"C" and _h1_eq_bytes(s, b"CONNECT", 7):
            return M_CONNECT
    return M_OTHER


cdef inline bint _h1_eq_bytes(const char* a, const char* b, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if a[i] != b[i]:
            return False
    return True


cdef inline void _h1_trim_ows(const char* s, Py_ssize_t* start, Py_ssize_t* end) noexcept:
    # OWS = *( SP / HTAB ) around list elements (RFC 9110 5.6.1)
    while start[0] < end[0] and (s[start[0]] == b" " or s[start[0]] == b"\t"):
        start[0] += 1
    while end[0] > start[0] and (s[end[0] - 1] == b" " or s[end[0] - 1] == b"\t"):
        end[0] -= 1


cdef inline Py_ssize_t _h1_next_element(const char* s, Py_ssize_t pos, Py_ssize_t n,
                                        Py_ssize_t* el_start, Py_ssize_t* el_end) noexcept:
    # One element of a comma-separated list (RFC 9110 5.6.1), OWS trimmed.
    # Returns the position after the element's comma (or n).
    cdef Py_ssize_t e = pos
    while e < n and s[e] != b",":
        e += 1
    el_start[0] = pos
    el_end[0] = e
    _h1_trim_ows(s, el_start, el_end)
    return e + 1 if e < n else n


cdef int _h1_check_host(const char* s, Py_ssize_t n, char* out, Py_ssize_t* out_len) noexcept:
    # Host / authority (RFC 9110 7.2, RFC 3986 3.2.2): reg-name limited to unreserved bytes
    # (no sub-delims, no percent-encoding), or an IPv4 address, or "[" IPv6 "]"; optional
    # ":" port of 1 to 5 digits. Writes the lowercased host without port to out
    # (MAX_HOSTNAME_BYTES + 1 bytes, NUL-terminated). Returns E_OK or E_BAD_HOST.
    cdef Py_ssize_t i = 0, host_end, port_start
    cdef unsigned char c
    cdef int port = 0
    if n == 0:
        return E_BAD_HOST
    if s[0] == b"[":
        i = 1
        while i < n and s[i] != b"]":
            c = <unsigned char>s[i]
            if not ((fastgw_http1_cc[c] & FASTGW_CC_HEX) or c == b":" or c == b"."):
                return E_BAD_HOST
            i += 1
        if i == n or i == 1:
            return E_BAD_HOST
        i += 1
    else:
        while i < n and s[i] != b":":
            if not (fastgw_http1_cc[<unsigned char>s[i]] & FASTGW_CC_UNRESERVED):
                return E_BAD_HOST
            i += 1
        if i == 0:
            return E_BAD_HOST
    host_end = i
    if host_end > MAX_HOSTNAME_BYTES:
        return E_BAD_HOST
    if i < n:
        if s[i] != b":":
            return E_BAD_HOST
        port_start = i + 1
        if n - port_start < 1 or n - port_start > 5:
            return E_BAD_HOST
        for i in range(port_start, n):
            c = <unsigned char>s[i]
            if c < 48 or c > 57:
                return E_BAD_HOST
            port = port * 10 + (c - 48)
        if port > 65535:
            return E_BAD_HOST
    if out != NULL:
        for i in range(host_end):
            out[i] = <char>_h1_lower(<unsigned char>s[i])
        out[host_end] = 0
        out_len[0] = host_end
    return E_OK


cdef int _h1_normalise_path(const char* src, Py_ssize_t n, char* out, Py_ssize_t* out_len,
                            bint merge_slashes, int semicolons) noexcept:
    # Normalise an origin-form absolute-path (RFC 9112 3.2.1) into out (>= n + 2 bytes), so
    # that no other spelling of a path reaches a backend as the same resource while the
    # router saw another one (docs/strictness.md "Path"):
    # - %XX of an unreserved byte is decoded, other escapes are kept with uppercase hex
    #   (RFC 3986 2.1, 2.3, 6.2.2.2); %2F %5C %00 are refused: a decoded separator or NUL
    #   would give the path a second meaning downstream; escapes are decoded once, so
    #   "%252e" stays a literal "%25" then "2e";
    # - escaped bytes >= 0x80 must form UTF-8 (RFC 3629 4): overlong forms ("%C0%AE" is a
    #   '.' to a lenient decoder), surrogates, stray or missing continuation bytes are refused;
    # - raw backslash is refused (some backends treat it as '/');
    # - with merge_slashes, "//" is one '/' (nginx merge_slashes);
    # - ';' (also %3B) is refused unless semicolons is SEMICOLONS_ALLOW; either way a "." or
    #   ".." segment with parameters ("..;x", Tomcat's traversal) is refused;
    # - "." and ".." segments, also when percent-encoded, are removed (RFC 3986 5.2.4);
    #   ".." above the root is refused.
    # src starts with '/'. out is NUL-terminated. Returns E_OK or an E_* code.
    cdef Py_ssize_t i = 0, o = 0, seg, params
    cdef unsigned char c, flags
    cdef int hi, lo, v
    cdef int utf8_need = 0, utf8_lo = 0x80, utf8_hi = 0xBF
    cdef bint trailing = False
    # PERF: most paths contain no '%', '.', ';', '\' or "//": one table pass, then a memcpy.
    # One loop per mode, each testing a constant mask; a '/' stops the merging one only to
    # look at the next byte (src[n] is readable: the target ends at ' ' or '?').
    if merge_slashes:
        while i < n:
            flags = fastgw_http1_cc[<unsigned char>src[i]]
            if flags & (FASTGW_CC_PATHSPEC | FASTGW_CC_SLASH) and (
                    flags & FASTGW_CC_PATHSPEC or src[i + 1] == b"/"):
                break
            i += 1
    else:
        while i < n and not (fastgw_http1_cc[<unsigned char>src[i]] & FASTGW_CC_PATHSPEC):
            i += 1
    if i == n:
        memcpy(out, src, n)
        out[n] = 0
        out_len[0] = n
        return E_OK
    i = 0
    while i < n:
        # src[i] == '/': copy one segment
        if merge_slashes and i + 1 < n and src[i + 1] == b"/":
            i += 1
            continue
        out[o] = b"/"
        o += 1
        seg = o
        params = -1
        i += 1
        while i < n and src[i] != b"/":
            c = <unsigned char>src[i]
            if not (fastgw_http1_cc[c] & FASTGW_CC_PATHSPEC):
                out[o] = <char>c
                o += 1
                i += 1
                continue
            if c == b"%":
                if i + 2 >= n:
                    return E_BAD_PERCENT_ENCODING
                hi = _h1_hexval(<unsigned char>src[i + 1])
                lo = _h1_hexval(<unsigned char>src[i + 2])
                if hi < 0 or lo < 0:
                    return E_BAD_PERCENT_ENCODING
                v = hi * 16 + lo
                if v == 0x2F or v == 0x5C or v == 0:
                    return E_ENCODED_SEPARATOR
                if utf8_need:
                    if v < utf8_lo or v > utf8_hi:
                        return E_BAD_UTF8_IN_PATH
                    utf8_need -= 1
                    utf8_lo = 0x80
                    utf8_hi = 0xBF
                elif v >= 0x80:
                    # a lead byte (RFC 3629 4): the bounds of its first continuation byte
                    # exclude overlong forms, surrogates and code points above U+10FFFF
                    if 0xC2 <= v <= 0xDF:
                        utf8_need = 1
                    elif 0xE0 <= v <= 0xEF:
                        utf8_need = 2
                        if v == 0xE0:
                            utf8_lo = 0xA0
                        elif v == 0xED:
                            utf8_hi = 0x9F
                    elif 0xF0 <= v <= 0xF4:
                        utf8_need = 3
                        if v == 0xF0:
                            utf8_lo = 0x90
                        elif v == 0xF4:
                            utf8_hi = 0x8F
                    else:
                        return E_BAD_UTF8_IN_PATH
                if fastgw_http1_cc[v] & FASTGW_CC_UNRESERVED:
                    out[o] = <char>v
                    o += 1
                else:
                    if v == 0x3B:
                        if semicolons == SEMICOLONS_REJECT:
                            return E_SEMICOLON_IN_PATH
                        if params < 0:
                            params = o
                    out[o] = b"%"
                    out[o + 1] = <char>(src[i + 1] - 32 if 97 <= src[i + 1] <= 102 else src[i + 1])
                    out[o + 2] = <char>(src[i + 2] - 32 if 97 <= src[i + 2] <= 102 else src[i + 2])
                    o += 3
                i += 3
                # a continuation byte is escaped too (a raw byte >= 0x80 is bad_target), so
                # a sequence that is not finished must go on with the next byte
                if utf8_need and (i >= n or src[i] != b"%"):
                    return E_BAD_UTF8_IN_PATH
                continue
            if c == b"\\":
                return E_BACKSLASH_IN_PATH
            if c == b";":
                # Tomcat and Spring strip ";params" from a segment before matching
                if semicolons == SEMICOLONS_REJECT:
                    return E_SEMICOLON_IN_PATH
                if params < 0:
                    params = o
            out[o] = <char>c
            o += 1
            i += 1
        if params >= 0:
            if out[seg] == b"." and (params - seg == 1
                                     or (params - seg == 2 and out[seg + 1] == b".")):
                return E_DOT_SEGMENT_PARAMETERS
            trailing = False
        elif o - seg == 1 and out[seg] == b".":
            o = seg - 1
            trailing = True
        elif o - seg == 2 and out[seg] == b"." and out[seg + 1] == b".":
            o = seg - 1
            if o == 0:
                return E_PATH_ABOVE_ROOT
            while out[o - 1] != b"/":
                o -= 1
            o -= 1
            trailing = True
        else:
            trailing = False
    if trailing or o == 0:
        out[o] = b"/"
        o += 1
    out[o] = 0
    out_len[0] = o
    return E_OK


# --- the scanners of Http1Parser's phases --------------------------------------------------
# Module functions on the parser, called from _head_phase and _body_phase; between calls
# their state is the parser's (state, scan_pos and the scanner context fields).
# PERF: as module functions they are direct C calls (a method of the non-final Http1Parser
# goes through its vtable), which the C compiler may inline into the phase.

cdef inline int _h1_on_field(Http1Parser parser, int i) noexcept:
    # Classify field i and apply the per-field rules that need no other field.
    cdef const char* name = parser.head + parser.hdr_name_off[i]
    cdef int hid = _h1_header_id(name, parser.hdr_name_len[i])
    cdef uint8_t flags = 0
    parser.hdr_id[i] = <uint8_t>hid
    if hid == H_HOST:
        parser.host_count += 1
        if parser.host_count > 1:
            # RFC 9112 3.2: more than one Host field line -> 400
            return parser._fail(E_DUPLICATE_HOST)
        parser.host_idx = i
        flags = HF_DROP
    elif hid == H_CONTENT_LENGTH:
        parser.cl_count += 1
        flags = HF_DROP
    elif hid == H_TRANSFER_ENCODING:
        parser.te_count += 1
        flags = HF_DROP
    elif hid == H_CONNECTION:
        parser.conn_count += 1
        flags = HF_DROP
    elif (hid == H_KEEP_ALIVE or hid == H_TE or hid == H_TRAILER
          or hid == H_PROXY_CONNECTION or hid == H_UPGRADE):
        # hop-by-hop (RFC 9110 7.6.1)
        flags = HF_DROP
    elif hid == H_EXPECT and parser.is_request:
        flags = HF_DROP
    elif (hid == H_OTHER and parser.underscores
          and memchr(name, b"_", parser.hdr_name_len[i]) != NULL):
        # X_Forwarded_For reaches a CGI backend as X-Forwarded-For, past the checks
        # made on the real one: nginx drops such fields by default.
        if parser.underscores == UNDERSCORES_REJECT:
            return parser._fail(E_UNDERSCORE_IN_HEADER_NAME)
        flags = HF_DROP
    parser.hdr_flags[i] = flags
    return H1_SCAN_MORE


cdef int _h1_scan_fields(Http1Parser parser) noexcept:
    # Field lines and the empty line ending the head (RFC 9112 2.1, 5).
    # PERF: the states follow each other in the order of a field line, so a line that is
    # all in the buffer runs through the blocks below without going back to the loop.
    cdef const unsigned char* buf = <const unsigned char*>parser.head
    cdef Py_ssize_t p = parser.scan_pos
    cdef Py_ssize_t end = parser.head_len
    cdef Py_ssize_t v_end, tok
    cdef unsigned char c
    cdef int st = parser.state
    cdef int i
    cdef uint64_t w
    while p < end:
        if st == H1_FIELD_START:
            c = buf[p]
            if c == 13:
                st = H1_HEAD_END_LF
                p += 1
                continue
            if c == 10:
                return parser._fail(E_BARE_LF)
            if c == 32 or c == 9:
                if parser.n_headers == 0:
                    # RFC 9112 2.2: whitespace between start-line and first field
                    return parser._fail(E_LEADING_WHITESPACE)
                # RFC 9112 5.2: obs-fold is rejected
                return parser._fail(E_OBS_FOLD)
            if parser.n_headers >= parser.max_headers:
                return parser._fail(E_TOO_MANY_HEADERS)
            parser.tok_off = p
            st = H1_NAME
        if st == H1_NAME:
            # PERF: four bytes per test; the byte loop finds the end
            while p + 4 <= end and (fastgw_http1_cc[buf[p]] & fastgw_http1_cc[buf[p + 1]]
                                    & fastgw_http1_cc[buf[p + 2]]
                                    & fastgw_http1_cc[buf[p + 3]] & FASTGW_CC_TCHAR):
                p += 4
            while p < end and (fastgw_http1_cc[buf[p]] & FASTGW_CC_TCHAR):
                p += 1
            if p == end:
                break
            c = buf[p]
            if c != b":":
                if c == 32 or c == 9:
                    # RFC 9112 5.1: no whitespace between field name and colon -> 400
                    return parser._fail(E_HEADER_NAME_WHITESPACE)
                if c == 10:
                    return parser._fail(E_BARE_LF)
                return parser._fail(E_BAD_HEADER_NAME)
            if p == parser.tok_off:
                return parser._fail(E_BAD_HEADER_NAME)
            parser.name_off = parser.tok_off
            parser.name_len = p - parser.tok_off
            p += 1
            st = H1_VALUE_OWS
        if st == H1_VALUE_OWS:
            while p < end and (buf[p] == 32 or buf[p] == 9):
                p += 1
            if p == end:
                break
            parser.tok_off = p
            st = H1_VALUE
        if st == H1_VALUE:
            # PERF: the hot loop: value bytes until CR
            while p + 8 <= end:
                memcpy(&w, buf + p, 8)
                w = _h1_value_word_stops(w)
                if w:
                    p += fastgw_first_flagged_byte(w)
                    break
                p += 8
            while p < end and (fastgw_http1_cc[buf[p]] & FASTGW_CC_VALUE):
                p += 1
            if p == end:
                break
            c = buf[p]
            if c != 13:
                if c == 10:
                    return parser._fail(E_BARE_LF)
                # RFC 9110 5.5: CR, LF, NUL and other CTLs are invalid in field values
                return parser._fail(E_BAD_HEADER_VALUE)
            parser.cr_pos = p
            p += 1
            st = H1_VALUE_LF
            if p == end:
                break
        if st == H1_VALUE_LF:
            if buf[p] != 10:
                # RFC 9112 2.2: a CR not followed by LF is invalid
                return parser._fail(E_BARE_CR)
            p += 1
            i = parser.n_headers
            tok = parser.tok_off
            v_end = parser.cr_pos
            while v_end > tok and (buf[v_end - 1] == 32 or buf[v_end - 1] == 9):
                v_end -= 1
            parser.hdr_name_off[i] = parser.name_off
            parser.hdr_name_len[i] = parser.name_len
            parser.hdr_value_off[i] = tok
            parser.hdr_value_len[i] = v_end - tok
            parser.n_headers = i + 1
            if _h1_on_field(parser, i) == H1_SCAN_ERROR:
                return H1_SCAN_ERROR
            st = H1_FIELD_START
            continue
        if st == H1_HEAD_END_LF:
            if buf[p] != 10:
                return parser._fail(E_BARE_CR)
            p += 1
            parser.scan_pos = p
            parser.state = st
            return H1_SCAN_END
        return parser._fail(E_INTERNAL)
    parser.scan_pos = p
    parser.state = st
    return H1_SCAN_MORE


cdef int _h1_scan_chunk_control(Http1Parser parser, const unsigned char* d, Py_ssize_t* pos,
                                Py_ssize_t n) noexcept:
    # Chunk-size lines, chunk-data terminators and the trailer section (RFC 9112 7.1).
    # Consumes bytes in place from d[pos[0]:n]; returns H1_SCAN_DATA when chunk data
    # follows, H1_SCAN_END after the last CRLF, H1_SCAN_MORE or H1_SCAN_ERROR.
    cdef Py_ssize_t p = pos[0]
    cdef int st = parser.state
    cdef unsigned char c
    cdef int hv
    cdef int r = H1_SCAN_MORE
    while p < n:
        c = d[p]
        if st == H1_CHUNK_SIZE:
            hv = _h1_hexval(c)
            if hv >= 0:
                if parser.chunk_digits == MAX_CHUNK_SIZE_DIGITS or \
                        parser.chunk_size > (INT64_MAX >> 4):
                    r = parser._fail(E_BAD_CHUNK_SIZE)
                    break
                parser.chunk_size = parser.chunk_size * 16 + hv
                parser.chunk_digits += 1
                if parser.chunk_size > parser.max_body_bytes - parser.body_total:
                    # RFC 9110 15.5.14: the body will exceed the limit -> 413
                    r = parser._fail(E_BODY_TOO_LARGE)
                    break
                p += 1
                continue
            if parser.chunk_digits == 0:
                # chunk-size = 1*HEXDIG: no sign, no leading whitespace
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
            if c == 13:
                st = H1_CHUNK_LINE_LF
            elif c == b";":
                st = H1_EXT_NAME_START
            elif c == 32 or c == 9:
                st = H1_EXT_BWS
            elif c == 10:
                r = parser._fail(E_BARE_LF)
                break
            else:
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
            if st != H1_CHUNK_LINE_LF:
                parser.ext_bytes += 1
            p += 1
            continue
        if st == H1_CHUNK_LINE_LF:
            if c != 10:
                r = parser._fail(E_BARE_CR)
                break
            p += 1
            if parser.chunk_size == 0:
                st = H1_TRAILER_START
                continue
            parser.remaining = parser.chunk_size
            parser.body_total += parser.chunk_size
            parser.chunk_size = 0
            parser.chunk_digits = 0
            st = H1_CHUNK_DATA
            r = H1_SCAN_DATA
            break
        if st == H1_CHUNK_DATA_CR:
            if c != 13:
                r = parser._fail(E_BAD_CHUNK_TERMINATOR)
                break
            st = H1_CHUNK_DATA_LF
            p += 1
            continue
        if st == H1_CHUNK_DATA_LF:
            if c != 10:
                r = parser._fail(E_BAD_CHUNK_TERMINATOR)
                break
            st = H1_CHUNK_SIZE
            p += 1
            continue
        if st >= H1_TRAILER_START:
            # trailer section: field lines validated like the head, then dropped
            parser.trailer_bytes += 1
            if parser.trailer_bytes > MAX_TRAILER_BYTES:
                r = parser._fail(E_BAD_TRAILER)
                break
            if st == H1_TRAILER_VALUE:
                if fastgw_http1_cc[c] & FASTGW_CC_VALUE:
                    p += 1
                    continue
                if c == 13:
                    st = H1_TRAILER_VALUE_LF
                elif c == 10:
                    r = parser._fail(E_BARE_LF)
                    break
                else:
                    r = parser._fail(E_BAD_TRAILER)
                    break
            elif st == H1_TRAILER_NAME:
                if c == b":":
                    st = H1_TRAILER_VALUE
                elif c == 10:
                    r = parser._fail(E_BARE_LF)
                    break
                elif not (fastgw_http1_cc[c] & FASTGW_CC_TCHAR):
                    r = parser._fail(E_BAD_TRAILER)
                    break
            elif st == H1_TRAILER_START:
                if c == 13:
                    st = H1_TRAILER_END_LF
                elif c == 10:
                    r = parser._fail(E_BARE_LF)
                    break
                elif fastgw_http1_cc[c] & FASTGW_CC_TCHAR:
                    st = H1_TRAILER_NAME
                else:
                    r = parser._fail(E_BAD_TRAILER)
                    break
            elif st == H1_TRAILER_VALUE_LF:
                if c != 10:
                    r = parser._fail(E_BARE_CR)
                    break
                st = H1_TRAILER_START
            else:
                # H1_TRAILER_END_LF
                if c != 10:
                    r = parser._fail(E_BARE_CR)
                    break
                p += 1
                r = H1_SCAN_END
                break
            p += 1
            continue
        # chunk extensions (RFC 9112 7.1.1), bounded per message
        parser.ext_bytes += 1
        if parser.ext_bytes > MAX_CHUNK_EXT_BYTES:
            r = parser._fail(E_CHUNK_EXTENSION_TOO_LONG)
            break
        if c == 10:
            r = parser._fail(E_BARE_LF)
            break
        if st == H1_EXT_BWS:
            if c == b";":
                st = H1_EXT_NAME_START
            elif c != 32 and c != 9:
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
        elif st == H1_EXT_NAME_START:
            if fastgw_http1_cc[c] & FASTGW_CC_TCHAR:
                st = H1_EXT_NAME
            elif c != 32 and c != 9:
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
        elif st == H1_EXT_NAME or st == H1_EXT_AFTER_NAME:
            if st == H1_EXT_NAME and (fastgw_http1_cc[c] & FASTGW_CC_TCHAR):
                pass
            elif c == 32 or c == 9:
                st = H1_EXT_AFTER_NAME
            elif c == b"=":
                st = H1_EXT_VAL_START
            elif c == b";":
                st = H1_EXT_NAME_START
            elif c == 13 and st == H1_EXT_NAME:
                st = H1_CHUNK_LINE_LF
            else:
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
        elif st == H1_EXT_VAL_START:
            if c == b'"':
                st = H1_EXT_QUOTED
            elif fastgw_http1_cc[c] & FASTGW_CC_TCHAR:
                st = H1_EXT_VAL_TOKEN
            elif c != 32 and c != 9:
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
        elif st == H1_EXT_VAL_TOKEN or st == H1_EXT_AFTER_QUOTED:
            if st == H1_EXT_VAL_TOKEN and (fastgw_http1_cc[c] & FASTGW_CC_TCHAR):
                pass
            elif c == 13:
                st = H1_CHUNK_LINE_LF
            elif c == b";":
                st = H1_EXT_NAME_START
            elif c == 32 or c == 9:
                st = H1_EXT_BWS
            else:
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
        elif st == H1_EXT_QUOTED:
            if c == b'"':
                st = H1_EXT_AFTER_QUOTED
            elif c == b"\\":
                st = H1_EXT_QUOTED_ESC
            elif not (fastgw_http1_cc[c] & FASTGW_CC_QDTEXT):
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
        elif st == H1_EXT_QUOTED_ESC:
            # quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            if not (fastgw_http1_cc[c] & FASTGW_CC_VALUE):
                r = parser._fail(E_BAD_CHUNK_SIZE)
                break
            st = H1_EXT_QUOTED
        else:
            r = parser._fail(E_INTERNAL)
            break
        p += 1
    pos[0] = p
    if r != H1_SCAN_ERROR:
        parser.state = st
    return r


# --- shared machinery ----------------------------------------------------------------------
cdef class Http1Parser:
    """Head buffer, field-line scanner and body framing shared by both parsers."""

    def __cinit__(self, *args, **kwargs):
        self.head = NULL
        self.hdr_name_off = NULL
        self.hdr_name_len = NULL
        self.hdr_value_off = NULL
        self.hdr_value_len = NULL
        self.hdr_id = NULL
        self.hdr_flags = NULL

    def __dealloc__(self):
        self._free_buffers()

    cdef void _free_buffers(self) noexcept:
        free(self.head)
        free(self.hdr_name_off)
        free(self.hdr_name_len)
        free(self.hdr_value_off)
        free(self.hdr_value_len)
        free(self.hdr_id)
        free(self.hdr_flags)
        self.head = NULL
        self.hdr_name_off = NULL
        self.hdr_name_len = NULL
        self.hdr_value_off = NULL
        self.hdr_value_len = NULL
        self.hdr_id = NULL
        self.hdr_flags = NULL

    cdef _setup(self, Py_ssize_t max_header_bytes, Py_ssize_t max_headers):
        if max_header_bytes < 16:
            raise ValueError("max_header_bytes must be at least 16")
        if max_headers < 1 or max_headers > HARD_MAX_HEADERS:
            raise ValueError(f"max_headers must be between 1 and {HARD_MAX_HEADERS}")
        self._free_buffers()
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.head_cap = min(<Py_ssize_t>HEAD_INITIAL_CAP, max_header_bytes)
        self.head = <char*>malloc(self.head_cap)
        self.hdr_name_off = <Py_ssize_t*>malloc(max_headers * sizeof(Py_ssize_t))
        self.hdr_name_len = <Py_ssize_t*>malloc(max_headers * sizeof(Py_ssize_t))
        self.hdr_value_off = <Py_ssize_t*>malloc(max_headers * sizeof(Py_ssize_t))
        self.hdr_value_len = <Py_ssize_t*>malloc(max_headers * sizeof(Py_ssize_t))
        self.hdr_id = <uint8_t*>malloc(max_headers)
        self.hdr_flags = <uint8_t*>malloc(max_headers)
        if (self.head == NULL or self.hdr_name_off == NULL or self.hdr_name_len == NULL
                or self.hdr_value_off == NULL or self.hdr_value_len == NULL
                or self.hdr_id == NULL or self.hdr_flags == NULL):
            self._free_buffers()
            raise MemoryError()
        self.error_code = E_OK
        self.detail_code = E_OK

    cdef void _reset_common(self) noexcept:
        self.head_len = 0
        self.scan_pos = 0
        self.in_message = False
        self.head_done = False
        self.n_headers = 0
        self.version_minor = 1
        self.framing = FRAMING_NONE
        self.content_length = -1
        self.keep_alive = False
        self.body_ptr = NULL
        self.body_len = 0
        self.vpos = 0
        self.host_count = 0
        self.cl_count = 0
        self.te_count = 0
        self.conn_count = 0
        self.host_idx = -1
        self.conn_close = False
        self.conn_keep_alive = False
        self.conn_upgrade = False
        self.remaining = 0
        self.body_total = 0
        self.chunk_size = 0
        self.chunk_digits = 0
        self.ext_bytes = 0
        self.trailer_bytes = 0

    cdef int _fail(self, int code) noexcept:
        # Enter the error state. The response parser reports upstream codes (RFC 9112 does
        # not distinguish the sides; the gateway answers 502 for all of them).
        self.detail_code = code
        if not self.is_request and code < E_UPSTREAM_CONNECT_FAILED:
            if self.head_done:
                code = E_UPSTREAM_BAD_CHUNK
            elif code == E_HEADER_TOO_LARGE or code == E_TOO_MANY_HEADERS:
                code = E_UPSTREAM_HEADER_TOO_LARGE
            elif E_CL_AND_TE <= code <= E_CONNECTION_NOMINATES_FRAMING:
                code = E_UPSTREAM_BAD_FRAMING
            else:
                code = E_UPSTREAM_BAD_HEADER
        self.error_code = code
        self.state = H1_ERROR
        return H1_SCAN_ERROR

    cdef bint _grow(self, Py_ssize_t need) noexcept:
        cdef Py_ssize_t cap = self.head_cap
        cdef char* p
        while cap < need:
            cap *= 2
        if cap > self.max_header_bytes:
            cap = self.max_header_bytes
        p = <char*>realloc(self.head, cap)
        if p == NULL:
            return False
        self.head = p
        self.head_cap = cap
        return True

    cdef int _scan_start_line(self) noexcept:
        return self._fail(E_INTERNAL)

    cdef int _finish_head(self) noexcept:
        return self._fail(E_INTERNAL)

    cdef int _head_phase(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept:
        cdef Py_ssize_t i = 0, take, extra
        cdef int r
        while True:
            take = n - i
            if take > self.max_header_bytes - self.head_len:
                take = self.max_header_bytes - self.head_len
            if take > HEAD_COPY_STEP:
                take = HEAD_COPY_STEP
            if take == 0:
                consumed[0] = i
                if i == n:
                    return EV_NEED_MORE
                # RFC 9110 15.5.20 / RFC 6585 5: head beyond the limit -> 431
                self._fail(E_HEADER_TOO_LARGE)
                return EV_ERROR
            if self.head_len + take > self.head_cap and not self._grow(self.head_len + take):
                consumed[0] = i
                self._fail(E_INTERNAL)
                return EV_ERROR
            memcpy(self.head + self.head_len, data + i, take)
            self.head_len += take
            i += take
            self.in_message = True
            if self.state < H1_FIELD_START:
                r = self._scan_start_line()
                if r == H1_SCAN_ERROR:
                    consumed[0] = i
                    return EV_ERROR
                if r == H1_SCAN_MORE:
                    continue
            r = _h1_scan_fields(self)
            if r == H1_SCAN_ERROR:
                consumed[0] = i
                return EV_ERROR
            if r == H1_SCAN_END:
                extra = self.head_len - self.scan_pos
                self.head_len = self.scan_pos
                consumed[0] = i - extra
                if self._finish_head() == H1_SCAN_ERROR:
                    return EV_ERROR
                self.head_done = True
                return EV_HEAD

    # --- header-derived semantics shared by both sides ------------------------------------

    cdef int _apply_connection(self) noexcept:
        # Connection options (RFC 9110 7.6.1): close / keep-alive / upgrade, and every other
        # option names a field that is hop-by-hop for this message.
        cdef int i, j
        cdef Py_ssize_t pos, n, s, e, tl
        cdef const char* v
        for i in range(self.n_headers):
            if self.hdr_id[i] != H_CONNECTION:
                continue
            v = self.head + self.hdr_value_off[i]
            n = self.hdr_value_len[i]
            pos = 0
            while pos < n:
                pos = _h1_next_element(v, pos, n, &s, &e)
                tl = e - s
                if tl == 0:
                    continue
                if tl == 5 and _h1_eq_lower(v + s, b"close", 5):
                    self.conn_close = True
                elif tl == 10 and _h1_eq_lower(v + s, b"keep-alive", 10):
                    self.conn_keep_alive = True
                elif tl == 7 and _h1_eq_lower(v + s, b"upgrade", 7):
                    self.conn_upgrade = True
                elif ((tl == 4 and _h1_eq_lower(v + s, b"host", 4))
                      or (tl == 14 and _h1_eq_lower(v + s, b"content-length", 14))
                      or (tl == 17 and _h1_eq_lower(v + s, b"transfer-encoding", 17))):
                    # a hop-by-hop Host or framing field would give the next hop a
                    # different message than ours
                    return self._fail(E_CONNECTION_NOMINATES_FRAMING)
                else:
                    for j in range(self.n_headers):
                        if (self.hdr_name_len[j] == tl and
                                _h1_eq_nocase(self.head + self.hdr_name_off[j], v + s, tl)):
                            self.hdr_flags[j] |= HF_DROP
        return H1_SCAN_MORE

    cdef int _parse_content_length(self) noexcept:
        # RFC 9110 8.6: Content-Length = 1*DIGIT. A recipient MAY take a list or repeated
        # field of one value as that value, but nginx refuses both and a backend that reads
        # "5, 5" another way is a desync: we accept one field holding one number, nothing else.
        cdef Py_ssize_t n, k
        cdef const char* v
        cdef int64_t value = 0, d
        cdef int i
        if self.cl_count > 1:
            return self._fail(E_DUPLICATE_CONTENT_LENGTH)
        i = 0
        while self.hdr_id[i] != H_CONTENT_LENGTH:
            i += 1
        v = self.head + self.hdr_value_off[i]
        n = self.hdr_value_len[i]
        if n == 0:
            return self._fail(E_BAD_CONTENT_LENGTH)
        for k in range(n):
            d = <unsigned char>v[k] - 48
            if d < 0 or d > 9 or value > (INT64_MAX - d) // 10:
                return self._fail(E_BAD_CONTENT_LENGTH)
            value = value * 10 + d
        self.content_length = value
        return H1_SCAN_MORE

    cdef int _transfer_codings(self, bint* final_chunked, int* n_chunked,
                               int* n_other) noexcept:
        # Walk all Transfer-Encoding codings in order (RFC 9112 6.1); empty list elements
        # are ignored (RFC 9110 5.6.1). A coding with parameters is not "chunked".
        cdef int i
        cdef Py_ssize_t pos, n, s, e
        cdef const char* v
        final_chunked[0] = False
        n_chunked[0] = 0
        n_other[0] = 0
        for i in range(self.n_headers):
            if self.hdr_id[i] != H_TRANSFER_ENCODING:
                continue
            v = self.head + self.hdr_value_off[i]
            n = self.hdr_value_len[i]
            pos = 0
            while pos < n:
                pos = _h1_next_element(v, pos, n, &s, &e)
                if s == e:
                    continue
                if e - s == 7 and _h1_eq_lower(v + s, b"chunked", 7):
                    n_chunked[0] += 1
                    final_chunked[0] = True
                else:
                    n_other[0] += 1
                    final_chunked[0] = False
        return 0

    # --- bodies ------------------------------------------------------------------------

    cdef int _body_phase(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept:
        cdef Py_ssize_t i = 0
        cdef int64_t take
        cdef int r
        cdef int st
        while True:
            st = self.state
            if st == H1_LENGTH or st == H1_CHUNK_DATA:
                if i == n:
                    consumed[0] = n
                    return EV_NEED_MORE
                take = n - i
                if take > self.remaining:
                    take = self.remaining
                self.body_ptr = data + i
                self.body_len = <Py_ssize_t>take
                self.remaining -= take
                consumed[0] = i + <Py_ssize_t>take
                if self.remaining == 0:
                    self.state = H1_DONE_PENDING if st == H1_LENGTH else H1_CHUNK_DATA_CR
                return EV_BODY
            if st == H1_DONE_PENDING:
                self._message_done()
                consumed[0] = i
                return EV_DONE
            if st == H1_CLOSE or st == H1_TUNNEL:
                consumed[0] = n
                if i == n:
                    return EV_NEED_MORE
                self.body_ptr = data + i
                self.body_len = n - i
                return EV_BODY
            r = _h1_scan_chunk_control(self, <const unsigned char*>data, &i, n)
            if r == H1_SCAN_ERROR:
                consumed[0] = i
                return EV_ERROR
            if r == H1_SCAN_END:
                self._message_done()
                consumed[0] = i
                return EV_DONE
            if r == H1_SCAN_MORE:
                consumed[0] = n
                return EV_NEED_MORE

    cdef void _message_done(self) noexcept:
        self.state = H1_DONE
        self.in_message = False
        self.head_done = False

    cdef void _start_body(self) noexcept:
        if self.framing == FRAMING_LENGTH:
            self.remaining = self.content_length
            self.state = H1_LENGTH if self.content_length > 0 else H1_DONE_PENDING
        elif self.framing == FRAMING_CHUNKED:
            self.state = H1_CHUNK_SIZE
        elif self.framing == FRAMING_CLOSE:
            self.state = H1_CLOSE
        elif self.framing == FRAMING_TUNNEL:
            self.state = H1_TUNNEL
        else:
            self.state = H1_DONE_PENDING

    # --- Python-level helpers (tests and tools; not on the hot path) ------------------------

    def headers(self):
        """All field lines of the last head as received: [(name, value), ...]."""
        cdef int i
        return [
            (self.head[self.hdr_name_off[i]:self.hdr_name_off[i] + self.hdr_name_len[i]],
             self.head[self.hdr_value_off[i]:self.hdr_value_off[i] + self.hdr_value_len[i]])
            for i in range(self.n_headers)
        ]

    def forwarded_headers(self):
        """The field lines without HF_DROP, in order."""
        cdef int i
        return [
            (self.head[self.hdr_name_off[i]:self.hdr_name_off[i] + self.hdr_name_len[i]],
             self.head[self.hdr_value_off[i]:self.hdr_value_off[i] + self.hdr_value_len[i]])
            for i in range(self.n_headers) if not (self.hdr_flags[i] & HF_DROP)
        ]

    def header_ids(self):
        """HeaderId of every field line of the last head."""
        return [self.hdr_id[i] for i in range(self.n_headers)]

    @property
    def error(self):
        """Stable code of the error, or None."""
        if self.error_code == E_OK:
            return None
        return ERROR_TABLE[self.error_code][1]

    @property
    def version(self):
        return b"1.1" if self.version_minor == 1 else b"1.0"

    cdef list _feed_events(self, bytes data):
        cdef const char* buf = data
        cdef Py_ssize_t n = len(data), off = 0, consumed = 0
        cdef int ev
        events = []
        while True:
            ev = self._execute(buf + off, n - off, &consumed)
            off += consumed
            if ev == EV_NEED_MORE:
                break
            if ev == EV_HEAD:
                events.append(("head",))
            elif ev == EV_BODY:
                events.append(("body", PyBytes_FromStringAndSize(self.body_ptr, self.body_len)))
            elif ev == EV_DONE:
                events.append(("done",))
                if off == n:
                    break
            else:
                events.append(("error", ERROR_TABLE[self.error_code][1]))
                break
        return events

    cdef int _execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept:
        return EV_ERROR


# --- requests ------------------------------------------------------------------------------
@cython.final
cdef class RequestParser(Http1Parser):
    """HTTP/1.1 request parser (RFC 9112), strict: see docs/strictness.md.

    execute() returns EV_NEED_MORE, EV_HEAD (consumed stops after the empty line), EV_BODY
    (body_ptr/body_len point into the caller's bytes), EV_DONE or EV_ERROR (error_code set;
    the parser stays failed). After EV_DONE the head stays readable until execute() receives
    the next bytes, which start the next message. content_length is -1 without a valid
    Content-Length; path and hostname are NUL-terminated parser-owned buffers.
    """

    def __cinit__(self, *args, **kwargs):
        self.path = NULL
        self.hostname = self.hostname_buf
        self.hostname_buf[0] = 0

    def __dealloc__(self):
        free(self.path)

    def __init__(self, Py_ssize_t max_header_bytes=DEFAULT_MAX_HEADER_BYTES,
                 Py_ssize_t max_headers=DEFAULT_MAX_HEADERS,
                 Py_ssize_t max_target_bytes=DEFAULT_MAX_TARGET_BYTES,
                 int64_t max_body_bytes=10485760):
        if max_target_bytes < 1:
            raise ValueError("max_target_bytes must be positive")
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self._setup(max_header_bytes, max_headers)
        self.is_request = True
        self.max_target_bytes = max_target_bytes
        self.max_body_bytes = max_body_bytes
        self.merge_slashes = True
        self.semicolons = SEMICOLONS_REJECT
        free(self.path)
        self.path_cap = 256
        self.path = <char*>malloc(self.path_cap)
        if self.path == NULL:
            raise MemoryError()
        self._reset()

    cdef void _reset(self) noexcept:
        self._reset_common()
        self.state = H1_LEADING
        self.method_id = M_OTHER
        self.method_off = 0
        self.method_len = 0
        self.target_off = 0
        self.target_len = 0
        self.path[0] = 0
        self.path_len = 0
        self.has_query = False
        self.query_off = 0
        self.query_len = 0
        self.hostname_buf[0] = 0
        self.hostname_len = 0
        self.host_off = 0
        self.host_len = 0
        self.absolute_form = False
        self.upgrade_websocket = False
        self.expect_continue = False

    cdef int execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept:
        cdef int st = self.state
        if st == H1_ERROR:
            consumed[0] = 0
            return EV_ERROR
        if st == H1_DONE:
            if n == 0:
                consumed[0] = 0
                return EV_NEED_MORE
            self._reset()
            st = H1_LEADING
        if st < H1_LENGTH:
            return self._head_phase(data, n, consumed)
        return self._body_phase(data, n, consumed)

    cdef int _execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept:
        return self.execute(data, n, consumed)

    cdef int _scan_start_line(self) noexcept:
        # request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 3)
        cdef const unsigned char* buf = <const unsigned char*>self.head
        cdef Py_ssize_t p = self.scan_pos
        cdef Py_ssize_t end = self.head_len
        cdef Py_ssize_t stop, lim
        cdef unsigned char c
        cdef uint64_t w
        cdef int st = self.state
        while p < end:
            if st == H1_TARGET:
                lim = self.target_off + self.max_target_bytes
                stop = end if end < lim else lim
                while p + 8 <= stop:
                    memcpy(&w, buf + p, 8)
                    w = _h1_target_word_stops(w)
                    if w:
                        p += fastgw_first_flagged_byte(w)
                        break
                    p += 8
                while p < stop and (fastgw_http1_cc[buf[p]] & FASTGW_CC_TARGET):
                    p += 1
                if p == end:
                    break
                c = buf[p]
                if p == lim and (fastgw_http1_cc[c] & FASTGW_CC_TARGET):
                    # RFC 9112 3: target longer than we accept -> 414
                    return self._fail(E_URI_TOO_LONG)
                if c == 32:
                    self.target_len = p - self.target_off
                    p += 1
                    self.vpos = 0
                    st = H1_VERSION
                    continue
                if c == b"#":
                    # RFC 9112 3.2: the target never carries a fragment
                    return self._fail(E_FRAGMENT_IN_TARGET)
                if c == 10:
                    return self._fail(E_BARE_LF)
                if c == 13:
                    # no HTTP-version: HTTP/0.9 simple request
                    return self._fail(E_BAD_REQUEST_LINE)
                return self._fail(E_BAD_TARGET)
            if st == H1_METHOD:
                while p < end and (fastgw_http1_cc[buf[p]] & FASTGW_CC_TCHAR):
                    p += 1
                if p == end:
                    break
                c = buf[p]
                if c == 32 and p > self.method_off:
                    self.method_len = p - self.method_off
                    self.method_id = _h1_method_id(self.head + self.method_off, self.method_len)
                    if self.method_id == M_CONNECT:
                        # tunnels are not proxied by the gateway -> 501
                        return self._fail(E_METHOD_NOT_IMPLEMENTED)
                    p += 1
                    st = H1_TARGET_START
                    continue
                if c == 10:
                    return self._fail(E_BARE_LF)
                if c == 32 or c == 9 or c == 13:
                    return self._fail(E_BAD_REQUEST_LINE)
                # RFC 9110 9.1: method = token
                return self._fail(E_BAD_METHOD)
            c = buf[p]
            if st == H1_VERSION:
                # HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3), case-sensitive
                if (self.vpos == 0 and p + 9 <= end and buf[p + 8] == 13
                        and _h1_eq_bytes(<const char*>buf + p, b"HTTP/1.", 7)
                        and (buf[p + 7] == b"1" or buf[p + 7] == b"0")):
                    # PERF: the usual version in one step; anything else goes byte by byte
                    self.major = 1
                    self.version_minor = buf[p + 7] - 48
                    p += 9
                    st = H1_LINE_LF
                    continue
                if c == 10:
                    return self._fail(E_BARE_LF)
                if self.vpos < 5:
                    if c != <unsigned char>H1_HTTP_PREFIX[self.vpos]:
                        return self._fail(E_BAD_VERSION)
                elif self.vpos == 5 or self.vpos == 7:
                    if c < 48 or c > 57:
                        return self._fail(E_BAD_VERSION)
                    if self.vpos == 5:
                        self.major = c - 48
                    else:
                        self.version_minor = c - 48
                elif self.vpos == 6:
                    if c != b".":
                        return self._fail(E_BAD_VERSION)
                else:
                    if c != 13:
                        return self._fail(E_BAD_VERSION)
                    if self.major != 1 or self.version_minor > 1:
                        # RFC 9110 15.6.6: includes the HTTP/2 preface "PRI * HTTP/2.0"
                        return self._fail(E_VERSION_NOT_SUPPORTED)
                    st = H1_LINE_LF
                self.vpos += 1
                p += 1
                continue
            if st == H1_LEADING:
                if c == 13:
                    st = H1_LEADING_LF
                    p += 1
                    continue
                if c == 10:
                    return self._fail(E_BARE_LF)
                self.method_off = p
                st = H1_METHOD
                continue
            if st == H1_LEADING_LF:
                if c != 10:
                    return self._fail(E_BARE_CR)
                st = H1_LEADING
                p += 1
                continue
            if st == H1_TARGET_START:
                if c == 10:
                    return self._fail(E_BARE_LF)
                if c == 32 or c == 9 or c == 13:
                    # exactly one SP between the parts (RFC 9112 3)
                    return self._fail(E_BAD_REQUEST_LINE)
                self.target_off = p
                st = H1_TARGET
                continue
            if st == H1_LINE_LF:
                if c != 10:
                    return self._fail(E_BARE_CR)
                p += 1
                self.scan_pos = p
                self.state = H1_FIELD_START
                if self._on_request_line() == H1_SCAN_ERROR:
                    return H1_SCAN_ERROR
                return H1_SCAN_LINE
            return self._fail(E_INTERNAL)
        self.scan_pos = p
        self.state = st
        return H1_SCAN_MORE

    cdef int _on_request_line(self) noexcept:
        # Request-target forms (RFC 9112 3.2) and the normalised path.
        cdef const char* t = self.head + self.target_off
        cdef Py_ssize_t tl = self.target_len
        cdef Py_ssize_t a, auth_end, path_start, path_end
        cdef const char* q
        cdef int r
        if t[0] == b"/":
            path_start = 0
        elif t[0] == b"*":
            # asterisk-form only for OPTIONS (RFC 9112 3.2.4)
            if tl != 1 or self.method_id != M_OPTIONS:
                return self._fail(E_BAD_TARGET)
            self.path[0] = b"*"
            self.path[1] = 0
            self.path_len = 1
            return H1_SCAN_MORE
        else:
            # absolute-form (RFC 9112 3.2.2): http or https, any case
            if tl > 7 and _h1_eq_lower(t, b"http://", 7):
                a = 7
            elif tl > 8 and _h1_eq_lower(t, b"https://", 8):
                a = 8
            else:
                return self._fail(E_BAD_TARGET)
            auth_end = a
            while auth_end < tl and t[auth_end] != b"/" and t[auth_end] != b"?":
                if t[auth_end] == b"@":
                    # userinfo is deprecated and invalid in http(s) URIs (RFC 9110 4.2.4)
                    return self._fail(E_BAD_TARGET)
                auth_end += 1
            r = _h1_check_host(t + a, auth_end - a, self.hostname_buf, &self.hostname_len)
            if r != E_OK:
                return self._fail(r)
            self.absolute_form = True
            self.host_off = self.target_off + a
            self.host_len = auth_end - a
            path_start = auth_end
        q = <const char*>memchr(t + path_start, b"?", tl - path_start)
        if q != NULL:
            path_end = q - t
            self.has_query = True
            self.query_off = self.target_off + path_end + 1
            self.query_len = tl - path_end - 1
        else:
            path_end = tl
        if path_end - path_start + 2 > self.path_cap:
            free(self.path)
            self.path_cap = path_end - path_start + 2
            self.path = <char*>malloc(self.path_cap)
            if self.path == NULL:
                self.path_cap = 0
                return self._fail(E_INTERNAL)
        if path_end == path_start:
            # "http://host" or "http://host?q": the path is "/" (RFC 9112 3.2.2)
            self.path[0] = b"/"
            self.path[1] = 0
            self.path_len = 1
            return H1_SCAN_MORE
        r = _h1_normalise_path(t + path_start, path_end - path_start, self.path, &self.path_len,
                               self.merge_slashes, self.semicolons)
        if r != E_OK:
            self.path[0] = 0
            self.path_len = 0
            return self._fail(r)
        return H1_SCAN_MORE

    cdef int _finish_head(self) noexcept:
        cdef int i, r
        cdef bint final_chunked
        cdef int n_chunked, n_other
        cdef Py_ssize_t pos, n, s, e
        cdef const char* v
        # Host (RFC 9112 3.2): exactly one on HTTP/1.1, valid; an absolute-form authority
        # decides the host and the Host value forwarded.
        if self.host_count == 0:
            if self.version_minor == 1:
                return self._fail(E_MISSING_HOST)
        else:
            i = self.host_idx
            r = _h1_check_host(self.head + self.hdr_value_off[i], self.hdr_value_len[i],
                               NULL if self.absolute_form else self.hostname_buf,
                               &self.hostname_len)
            if r != E_OK:
                return self._fail(r)
            if not self.absolute_form:
                self.host_off = self.hdr_value_off[i]
                self.host_len = self.hdr_value_len[i]
        if self.conn_count and self._apply_connection() == H1_SCAN_ERROR:
            return H1_SCAN_ERROR
        # framing (RFC 9112 6.1, 6.3)
        if self.te_count:
            if self.version_minor == 0:
                # RFC 9112 6.1: HTTP/1.0 with Transfer-Encoding has faulty framing
                return self._fail(E_TE_ON_HTTP10)
            if self.cl_count:
                # RFC 9112 6.1: both are a smuggling vector; we reject instead of dropping CL
                return self._fail(E_CL_AND_TE)
            self._transfer_codings(&final_chunked, &n_chunked, &n_other)
            if not final_chunked or n_chunked > 1:
                # RFC 9112 6.3 item 4 (final coding not chunked) and 7.1 (chunked once)
                return self._fail(E_TE_NOT_CHUNKED)
            if n_other:
                # RFC 9112 6.1: a coding we do not implement -> 501
                return self._fail(E_UNSUPPORTED_TRANSFER_CODING)
            self.framing = FRAMING_CHUNKED
        elif self.cl_count:
            if self._parse_content_length() == H1_SCAN_ERROR:
                return H1_SCAN_ERROR
            if self.content_length > self.max_body_bytes:
                return self._fail(E_BODY_TOO_LARGE)
            self.framing = FRAMING_LENGTH
        # persistence (RFC 9112 9.3)
        if self.version_minor == 1:
            self.keep_alive = not self.conn_close
        else:
            self.keep_alive = self.conn_keep_alive and not self.conn_close
        for i in range(self.n_headers):
            if self.hdr_id[i] == H_EXPECT:
                # RFC 9110 10.1.1: only 100-continue is defined; ignored on HTTP/1.0
                v = self.head + self.hdr_value_off[i]
                if not (self.hdr_value_len[i] == 12 and _h1_eq_lower(v, b"100-continue", 12)):
                    return self._fail(E_EXPECTATION_FAILED)
                self.expect_continue = self.version_minor == 1
            elif self.hdr_id[i] == H_UPGRADE and self.conn_upgrade and self.version_minor == 1:
                # RFC 9110 7.8: Upgrade needs "Connection: upgrade"; ignored on HTTP/1.0.
                # Only websocket is ever tunnelled; "h2c" is dropped with the field.
                v = self.head + self.hdr_value_off[i]
                n = self.hdr_value_len[i]
                pos = 0
                while pos < n:
                    pos = _h1_next_element(v, pos, n, &s, &e)
                    if e - s == 9 and _h1_eq_lower(v + s, b"websocket", 9):
                        self.upgrade_websocket = True
        self._start_body()
        return H1_SCAN_END

    # --- Python-level API ------------------------------------------------------------

    def feed(self, data):
        """Run execute() over data; returns [("head",), ("body", b".."), ("done",), ...]."""
        return self._feed_events(bytes(data))

    @property
    def method(self):
        return self.head[self.method_off:self.method_off + self.method_len]

    @property
    def target(self):
        return self.head[self.target_off:self.target_off + self.target_len]

    @property
    def query(self):
        if not self.has_query:
            return None
        return self.head[self.query_off:self.query_off + self.query_len]

    @property
    def host(self):
        return self.head[self.host_off:self.host_off + self.host_len]


# --- responses -----------------------------------------------------------------------------
@cython.final
cdef class ResponseParser(Http1Parser):
    """HTTP/1.1 response parser for upstream responses (RFC 9112); errors map to 502.

    Same event contract as RequestParser. Call set_request() before each response. A 1xx
    other than 101 gives EV_HEAD and the final head follows; 101 gives EV_HEAD with
    FRAMING_TUNNEL. feed_eof() ends a close-delimited body or reports upstream_truncated.
    detail_code keeps the syntax-level code behind an upstream_* error, for logs.
    """

    def __init__(self, Py_ssize_t max_header_bytes=DEFAULT_MAX_HEADER_BYTES,
                 Py_ssize_t max_headers=DEFAULT_MAX_HEADERS):
        self._setup(max_header_bytes, max_headers)
        self.is_request = False
        self.max_body_bytes = MAX_BODY_UNLIMITED
        self.request_is_head = False
        self._reset()

    cdef void _reset(self) noexcept:
        self._reset_common()
        self.state = H1_S_VERSION
        self.status = 0
        self.reason_off = 0
        self.reason_len = 0

    cdef void set_request(self, int method_id) noexcept:
        self.request_is_head = method_id == M_HEAD

    cdef int execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept:
        cdef int st = self.state
        if st == H1_ERROR:
            consumed[0] = 0
            return EV_ERROR
        if st == H1_DONE or st == H1_INTERIM:
            if n == 0:
                consumed[0] = 0
                return EV_NEED_MORE
            self._reset()
            if st == H1_INTERIM:
                # the final response to the same request is still due
                self.in_message = True
            st = H1_S_VERSION
        if st < H1_LENGTH:
            return self._head_phase(data, n, consumed)
        return self._body_phase(data, n, consumed)

    cdef int _execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept:
        return self.execute(data, n, consumed)

    cdef int feed_eof(self) noexcept:
        cdef int st = self.state
        if st == H1_ERROR:
            return EV_ERROR
        if st == H1_CLOSE or st == H1_TUNNEL or st == H1_DONE_PENDING:
            # RFC 9112 6.3 item 8: a close-delimited body ends with the connection
            self._message_done()
            return EV_DONE
        if st == H1_DONE or (st == H1_S_VERSION and not self.in_message):
            return EV_NEED_MORE
        # RFC 9112 8: an incomplete message must not be presented as complete
        self.detail_code = E_UPSTREAM_TRUNCATED
        self.error_code = E_UPSTREAM_TRUNCATED
        self.state = H1_ERROR
        return EV_ERROR

    cdef int _scan_start_line(self) noexcept:
        # status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 4);
        # "HTTP/1.1 200" without the second SP is accepted as an empty reason.
        cdef const unsigned char* buf = <const unsigned char*>self.head
        cdef Py_ssize_t p = self.scan_pos
        cdef Py_ssize_t end = self.head_len
        cdef unsigned char c
        cdef int st = self.state
        while p < end:
            if st == H1_S_REASON:
                while p < end and (fastgw_http1_cc[buf[p]] & FASTGW_CC_VALUE):
                    p += 1
                if p == end:
                    break
                if buf[p] != 13:
                    return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                self.reason_len = p - self.reason_off
                st = H1_LINE_LF
                p += 1
                continue
            c = buf[p]
            if st == H1_S_VERSION:
                if (self.vpos == 0 and p + 9 <= end and buf[p + 8] == 32
                        and _h1_eq_bytes(<const char*>buf + p, b"HTTP/1.", 7)
                        and (buf[p + 7] == b"1" or buf[p + 7] == b"0")):
                    # PERF: the usual version in one step; anything else goes byte by byte
                    self.version_minor = buf[p + 7] - 48
                    p += 9
                    st = H1_S_STATUS
                    continue
                if self.vpos < 5:
                    if c != <unsigned char>H1_HTTP_PREFIX[self.vpos]:
                        return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                elif self.vpos == 5:
                    if c != b"1":
                        return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                elif self.vpos == 6:
                    if c != b".":
                        return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                elif self.vpos == 7:
                    if c != b"0" and c != b"1":
                        return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                    self.version_minor = c - 48
                else:
                    if c != 32:
                        return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                    st = H1_S_STATUS
                    self.vpos = -1
                self.vpos += 1
                p += 1
                continue
            if st == H1_S_STATUS:
                if self.vpos < 3:
                    if c < 48 or c > 57 or (self.vpos == 0 and (c < 49 or c > 53)):
                        # status-code = 3DIGIT, 100..599 (RFC 9110 15)
                        return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                    self.status = self.status * 10 + (c - 48)
                elif c == 32:
                    self.reason_off = p + 1
                    st = H1_S_REASON
                elif c == 13:
                    self.reason_off = p
                    st = H1_LINE_LF
                else:
                    return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                self.vpos += 1
                p += 1
                continue
            if st == H1_LINE_LF:
                if c != 10:
                    return self._fail(E_UPSTREAM_BAD_STATUS_LINE)
                p += 1
                self.scan_pos = p
                self.state = H1_FIELD_START
                return H1_SCAN_LINE
            return self._fail(E_INTERNAL)
        self.scan_pos = p
        self.state = st
        return H1_SCAN_MORE

    cdef int _finish_head(self) noexcept:
        cdef bint final_chunked
        cdef int n_chunked, n_other
        cdef bint no_body
        if self.conn_count and self._apply_connection() == H1_SCAN_ERROR:
            return H1_SCAN_ERROR
        if self.cl_count and self.te_count:
            # RFC 9112 6.1: CL and TE together is a smuggling signal; discard the connection
            return self._fail(E_UPSTREAM_BAD_FRAMING)
        if self.te_count and self.version_minor == 0:
            # RFC 9112 6.1: HTTP/1.0 with Transfer-Encoding has faulty framing
            return self._fail(E_UPSTREAM_BAD_FRAMING)
        if self.cl_count and self._parse_content_length() == H1_SCAN_ERROR:
            return H1_SCAN_ERROR
        if self.te_count:
            self._transfer_codings(&final_chunked, &n_chunked, &n_other)
            if final_chunked and n_chunked > 1:
                # RFC 9112 7.1: chunked applied twice; refused also where no body follows
                return self._fail(E_UPSTREAM_BAD_FRAMING)
        # RFC 9112 6.3: which responses carry a body, and how it is delimited
        no_body = (self.request_is_head or self.status < 200 or self.status == 204
                   or self.status == 304)
        if self.status == 101:
            self.framing = FRAMING_TUNNEL
        elif no_body:
            self.framing = FRAMING_NONE
        elif self.te_count:
            self.framing = FRAMING_CHUNKED if final_chunked else FRAMING_CLOSE
        elif self.cl_count:
            self.framing = FRAMING_LENGTH
        else:
            self.framing = FRAMING_CLOSE
        self.keep_alive = (self.version_minor == 1 and not self.conn_close
                           and self.framing != FRAMING_CLOSE
                           and self.framing != FRAMING_TUNNEL)
        if self.status < 200 and self.status != 101:
            # 1xx interim response: the final head follows on the same message
            self.state = H1_INTERIM
            return H1_SCAN_END
        self._start_body()
        return H1_SCAN_END

    # --- Python-level API ------------------------------------------------------------

    def set_request_method(self, int method_id):
        """Python twin of set_request()."""
        self.set_request(method_id)

    def feed(self, data):
        """Run execute() over data; returns [("head",), ("body", b".."), ("done",), ...]."""
        return self._feed_events(bytes(data))

    def feed_eof_py(self):
        """Python twin of feed_eof(): "need_more", "done" or "error"."""
        cdef int ev = self.feed_eof()
        if ev == EV_DONE:
            return "done"
        if ev == EV_ERROR:
            return "error"
        return "need_more"

    @property
    def reason(self):
        return self.head[self.reason_off:self.reason_off + self.reason_len]
