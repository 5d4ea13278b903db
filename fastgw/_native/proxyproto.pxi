# proxyproto.pxi: the PROXY protocol header (HAProxy spec, versions 1 and 2) that an L4 load
# balancer puts before the first byte of a connection to say who the client is.
#
# Only listeners configured with `proxy_protocol: true` read it, and only from peers in
# trusted_proxies (ClientProtocol, protocol.pxi). The parser works on the bytes received so
# far, in place, and allocates nothing: it answers "need more", "malformed" or the length of
# a complete header with the addresses it carried.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp, memcpy


cdef extern from "<sys/socket.h>" nogil:
    int AF_INET
    int AF_INET6

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)


# Spec 2.2: the 12 bytes every v2 header starts with (no valid HTTP request starts so).
cdef const char* _PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
cdef const char* _PROXY_V1_SIG = b"PROXY "


cdef int proxy_signature(const unsigned char* p, Py_ssize_t n) noexcept:
    """Whether `p[:n]` starts like a PROXY header (any version)."""
    cdef Py_ssize_t i
    cdef bint v1 = True, v2 = True
    for i in range(n if n < 12 else 12):
        if i < 6 and p[i] != <unsigned char>_PROXY_V1_SIG[i]:
            v1 = False
        if p[i] != <unsigned char>_PROXY_V2_SIG[i]:
            v2 = False
    if (v1 and n >= 6) or (v2 and n >= 12):
        return PROXY_SIG_FOUND
    if v1 or v2:
        return PROXY_SIG_PARTIAL
    return PROXY_SIG_NONE


cdef inline int _proxy_port(const unsigned char* p, Py_ssize_t n) noexcept:
    """A v1 port: 1 to 5 digits, no leading zero, at most 65535; -1 otherwise."""
    cdef Py_ssize_t i
    cdef int value = 0
    if n < 1 or n > 5 or (p[0] == b"0" and n > 1):
        return -1
    for i in range(n):
        if p[i] < b"0" or p[i] > b"9":
            return -1
        value = value * 10 + (p[i] - c'0')
    return value if value <= 65535 else -1


cdef inline bint _proxy_address(const unsigned char* p, Py_ssize_t n, int family,
                                unsigned char* out) noexcept:
    """A v1 address in its family's text form, strictly (inet_pton: no leading zeros)."""
    cdef char text[PROXY_ADDRESS_TEXT]
    if n < 1 or n >= PROXY_ADDRESS_TEXT:
        return False
    memcpy(text, p, n)
    text[n] = 0
    return inet_pton(family, text, out) == 1


cdef Py_ssize_t _proxy_parse_v1(const unsigned char* p, Py_ssize_t n,
                                ProxyHeader* h) noexcept:
    # Spec 2.1: "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF,
    # or "PROXY UNKNOWN" followed by anything up to CRLF (the peer address stands).
    cdef Py_ssize_t end = -1, i, start, field
    cdef Py_ssize_t limit = n if n < PROXY_V1_MAX_BYTES else PROXY_V1_MAX_BYTES
    cdef Py_ssize_t bounds[8]
    cdef int family, port
    for i in range(6, limit):
        if p[i] == b"\r":
            if i + 1 == n:
                break                 # the LF may be in the next read
            if p[i + 1] != b"\n":
                return PROXY_MALFORMED
            end = i
            break
        if p[i] == b"\n" or p[i] == 0:
            return PROXY_MALFORMED
    if end < 0:
        return PROXY_MALFORMED if n >= PROXY_V1_MAX_BYTES else PROXY_NEED_MORE
    if end + 2 > PROXY_V1_MAX_BYTES:
        return PROXY_MALFORMED
    h.version = 1
    h.family = 0
    if end - 6 >= 7 and memcmp(p + 6, b"UNKNOWN", 7) == 0 and (end == 13 or p[13] == b" "):
        return end + 2
    if end - 6 < 4 or memcmp(p + 6, b"TCP", 3) != 0 or p[10] != b" ":
        return PROXY_MALFORMED
    if p[9] == b"4":
        family = AF_INET
    elif p[9] == b"6":
        family = AF_INET6
    else:
        return PROXY_MALFORMED
    # Four fields separated by exactly one space each.
    field = 0
    start = 11
    for i in range(11, end + 1):
        if i == end or p[i] == b" ":
            if field == 4 or i == start:
                return PROXY_MALFORMED
            bounds[2 * field] = start
            bounds[2 * field + 1] = i
            field += 1
            start = i + 1
    if field != 4:
        return PROXY_MALFORMED
    if not _proxy_address(p + bounds[0], bounds[1] - bounds[0], family, h.source):
        return PROXY_MALFORMED
    if not _proxy_address(p + bounds[2], bounds[3] - bounds[2], family, h.destination):
        return PROXY_MALFORMED
    port = _proxy_port(p + bounds[4], bounds[5] - bounds[4])
    if port < 0:
        return PROXY_MALFORMED
    h.source_port = port
    port = _proxy_port(p + bounds[6], bounds[7] - bounds[6])
    if port < 0:
        return PROXY_MALFORMED
    h.destination_port = port
    h.family = family
    return end + 2


cdef Py_ssize_t _proxy_parse_v2(const unsigned char* p, Py_ssize_t n,
                                ProxyHeader* h) noexcept:
    cdef Py_ssize_t length, total, off, address_bytes
    cdef int command, family
    if n < PROXY_V2_FIXED_BYTES:
        return PROXY_NEED_MORE
    # Spec 2.2: the high nibble is the version (2), the low one the command.
    if p[12] >> 4 != 2:
        return PROXY_MALFORMED
    command = p[12] & 0x0F
    if command > 1:
        return PROXY_MALFORMED
    length = (<Py_ssize_t>p[14] << 8) | p[15]
    total = PROXY_V2_FIXED_BYTES + length
    if total > PROXY_V2_MAX_BYTES:
        return PROXY_MALFORMED
    if n < total:
        return PROXY_NEED_MORE
    h.version = 2
    h.family = 0
    if command == 0:
        # LOCAL: the balancer's own connection (health checks); addresses are ignored.
        return total
    family = p[13]
    if family == 0x11:                # TCP over IPv4
        address_bytes = 12
    elif family == 0x21:              # TCP over IPv6
        address_bytes = 36
    elif family == 0x00:              # UNSPEC: the peer address stands
        return total
    elif family == 0x31 or family == 0x32:
        address_bytes = 216           # UNIX stream / datagram: no IP, the peer stands
    else:
        # UDP makes no sense on a stream listener; other values are invalid (spec 2.2).
        return PROXY_MALFORMED
    if length < address_bytes:
        return PROXY_MALFORMED
    off = PROXY_V2_FIXED_BYTES
    if family == 0x11:
        memcpy(h.source, p + off, 4)
        memcpy(h.destination, p + off + 4, 4)
        h.source_port = (p[off + 8] << 8) | p[off + 9]
        h.destination_port = (p[off + 10] << 8) | p[off + 11]
    elif family == 0x21:
        memcpy(h.source, p + off, 16)
        memcpy(h.destination, p + off + 16, 16)
        h.source_port = (p[off + 32] << 8) | p[off + 33]
        h.destination_port = (p[off + 34] << 8) | p[off + 35]
    # TLVs (spec 2.2.7): type, 16-bit length, value; they must tile the rest exactly.
    # Their contents are not used (a CRC32C TLV is not verified).
    off += address_bytes
    while off < total:
        if total - off < 3:
            return PROXY_MALFORMED
        off += 3 + ((<Py_ssize_t>p[off + 1] << 8) | p[off + 2])
        if off > total:
            return PROXY_MALFORMED
    if family == 0x11:
        h.family = AF_INET
    elif family == 0x21:
        h.family = AF_INET6
    return total


cdef Py_ssize_t proxy_parse(const unsigned char* p, Py_ssize_t n, ProxyHeader* h) noexcept:
    """A complete header's length, PROXY_NEED_MORE or PROXY_MALFORMED (h filled on success)."""
    cdef Py_ssize_t i
    for i in range(n if n < 12 else 12):
        if p[i] != <unsigned char>_PROXY_V2_SIG[i]:
            break
    else:
        return _proxy_parse_v2(p, n, h) if n >= 12 else PROXY_NEED_MORE
    for i in range(n if n < 6 else 6):
        if p[i] != <unsigned char>_PROXY_V1_SIG[i]:
            return PROXY_MALFORMED
    if n < 6:
        return PROXY_NEED_MORE
    return _proxy_parse_v1(p, n, h)


cdef str proxy_address_text(int family, const unsigned char* address):
    cdef char text[PROXY_ADDRESS_TEXT]
    if inet_ntop(family, address, text, PROXY_ADDRESS_TEXT) == NULL:
        return ""
    return text.decode("ascii")


def parse_proxy_header(bytes data):
    """Parse a PROXY protocol header at the start of `data` (for tests and tools).

    None while `data` is a valid prefix; ValueError when it is malformed; otherwise a dict:
    version, length (bytes of the header), and source / destination as (ip, port), or None
    when the header says to keep the connection's own address (v1 UNKNOWN, v2 LOCAL,
    UNSPEC or UNIX).
    """
    cdef ProxyHeader h
    cdef Py_ssize_t r = proxy_parse(<const unsigned char*>PyBytes_AS_STRING(data),
                                    PyBytes_GET_SIZE(data), &h)
    if r == PROXY_NEED_MORE:
        return None
    if r == PROXY_MALFORMED:
        raise ValueError("malformed PROXY protocol header")
    result = {"version": h.version, "length": r, "source": None, "destination": None}
    if h.family:
        result["source"] = (proxy_address_text(h.family, h.source), h.source_port)
        result["destination"] = (proxy_address_text(h.family, h.destination),
                                 h.destination_port)
    return result


def proxy_header_signature(bytes data):
    """"found", "partial" (a strict prefix of a signature) or "none" for the start of `data`."""
    cdef int r = proxy_signature(<const unsigned char*>PyBytes_AS_STRING(data),
                                 PyBytes_GET_SIZE(data))
    return ("none", "partial", "found")[r]
