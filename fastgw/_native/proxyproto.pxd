# proxyproto.pxd: the PROXY protocol header (HAProxy spec, versions 1 and 2) a connection on
# a `proxy_protocol` listener may open with (code: proxyproto.pxi).
#
# ClientProtocol.on_proxy_bytes (protocol) calls the functions below on the bytes received
# so far, in its CS_PROXY state; parse_proxy_header and proxy_header_signature (Python, for
# tests and tools) call them too.

cdef enum:
    # Spec 2.1: "a receiver ... may stop reading after 107 bytes", CRLF included.
    PROXY_V1_MAX_BYTES = 107
    # The fixed part of a v2 header, then the address block and TLVs (length field).
    PROXY_V2_FIXED_BYTES = 16
    # Our cap on a whole v2 header: the largest address block (UNIX, 216 bytes) plus room
    # for the TLVs balancers send (AWS, Azure and GCP ids, ALPN, authority, SSL info).
    PROXY_V2_MAX_BYTES = 1024
    PROXY_ADDRESS_TEXT = 48           # INET6_ADDRSTRLEN (46), rounded up

    PROXY_NEED_MORE = 0               # a valid prefix; wait for more bytes
    PROXY_MALFORMED = -1              # not a header, or one we refuse: close

    PROXY_SIG_NONE = 0                # the bytes cannot start a PROXY header
    PROXY_SIG_PARTIAL = 1             # a strict prefix of a signature: wait for more
    PROXY_SIG_FOUND = 2               # a v1 or v2 signature


# What proxy_parse() read: the addresses replace the connection's peer when `family` is set.
cdef struct ProxyHeader:
    int version                       # 1 or 2
    int family                        # AF_INET / AF_INET6; 0: keep the connection's peer
    unsigned char source[16]
    unsigned char destination[16]
    int source_port
    int destination_port


# <- ClientProtocol.on_proxy_bytes (protocol): an untrusted peer's first bytes, PROXY_SIG_*
cdef int proxy_signature(const unsigned char* p, Py_ssize_t n) noexcept
# <- ClientProtocol.on_proxy_bytes (protocol): a trusted peer's header, its length or
#    PROXY_NEED_MORE / PROXY_MALFORMED
cdef Py_ssize_t proxy_parse(const unsigned char* p, Py_ssize_t n, ProxyHeader* h) noexcept
# <- ClientProtocol.on_proxy_bytes (protocol): the source address, the peer from then on
cdef str proxy_address_text(int family, const unsigned char* address)
