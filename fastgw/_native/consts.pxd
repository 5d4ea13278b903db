# consts.pxd: the identifiers and limits every fragment shares (code: consts.pxi).
#
# Error codes are small ints so the hot path can carry them in a C field; ERROR_TABLE in
# consts.pxi maps each to the HTTP status, the stable machine-readable `code` of the JSON
# error body and a human message.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

# --- default limits (bytes / counts); config overrides them per gateway ---------------
# <- http1: the parsers' defaults and hard caps; router: the captures a RouteMatch holds
cdef enum:
    DEFAULT_MAX_HEADER_BYTES = 32768   # whole request head incl. request line (nginx: 8k-32k)
    DEFAULT_MAX_HEADERS = 100          # header fields per message (HAProxy: 101)
    DEFAULT_MAX_TARGET_BYTES = 8192    # request-target (RFC 9112 3: recommends >= 8000)
    MAX_CHUNK_EXT_BYTES = 256          # chunk extensions are never used legitimately; cap hard
    MAX_TRAILER_BYTES = 8192           # trailers are read and dropped, but bounded
    HARD_MAX_HEADERS = 1024            # upper bound for limits.max_headers
    MAX_ROUTE_PARAMS = 16              # {name}/{*rest} captures per path pattern

# --- parser events (returned by execute) -----------------------------------------------
# <- http1's execute() returns one; ClientProtocol.process (protocol), UpstreamConnection.feed
#    (upstream) and bench act on it
cdef enum ParserEvent:
    EV_NEED_MORE = 0   # every input byte consumed; feed more
    EV_HEAD = 1        # a complete head was parsed; its fields are readable
    EV_BODY = 2        # body_ptr/body_len point at body bytes inside the input just fed
    EV_DONE = 3        # the message is complete
    EV_ERROR = 4       # error_code is set; answer (if possible) and close

# --- message framing ---------------------------------------------------------------------
# <- http1's _finish_head sets Http1Parser.framing; protocol and upstream frame bodies by it
cdef enum Framing:
    FRAMING_NONE = 0      # no body (requests without CL/TE, 204/304, HEAD responses)
    FRAMING_LENGTH = 1    # Content-Length
    FRAMING_CHUNKED = 2   # Transfer-Encoding: chunked
    FRAMING_CLOSE = 3     # response body delimited by connection close
    FRAMING_TUNNEL = 4    # after 101 Switching Protocols: raw bytes both ways

# --- methods: a bit each so a route's allowed methods are one mask ---------------------
# <- http1 sets RequestParser.method_id; router masks, observe's metric rows, protocol
cdef enum Method:
    M_OTHER = 0
    M_GET = 1
    M_HEAD = 2
    M_POST = 3
    M_PUT = 4
    M_DELETE = 5
    M_PATCH = 6
    M_OPTIONS = 7
    M_TRACE = 8
    M_CONNECT = 9

# --- header fields the hot path must recognise -----------------------------------------
# <- http1 sets Http1Parser.hdr_id per field; protocol reads it (the upstream head,
#    X-Forwarded-*, the request id, the trace)
cdef enum HeaderId:
    H_OTHER = 0
    H_HOST = 1
    H_CONTENT_LENGTH = 2
    H_TRANSFER_ENCODING = 3
    H_CONNECTION = 4
    H_KEEP_ALIVE = 5
    H_TE = 6
    H_TRAILER = 7
    H_PROXY_CONNECTION = 8
    H_UPGRADE = 9
    H_EXPECT = 10
    H_X_FORWARDED_FOR = 11
    H_X_FORWARDED_PROTO = 12
    H_X_FORWARDED_HOST = 13
    H_X_REQUEST_ID = 14
    H_PROXY_AUTHORIZATION = 15  # hop-by-hop in practice (RFC 9110 11.7.1)
    H_PROXY_AUTHENTICATE = 16
    H_TRACEPARENT = 17          # W3C Trace Context; replaced when tracing is on
    H_TRACESTATE = 18

# per-header flags set by the parsers
# <- http1 sets Http1Parser.hdr_flags; protocol and policy skip HF_DROP fields
cdef enum:
    HF_DROP = 1        # not forwarded: hop-by-hop, named by Connection, or rewritten by us

# request field names with "_" (CGI servers fold them into the "-" names they trust)
# <- CorePlan (protocol) picks one through UNDERSCORE_MODES (consts.pxi); http1 applies it
cdef enum:
    UNDERSCORES_ALLOW = 0
    UNDERSCORES_DROP = 1
    UNDERSCORES_REJECT = 2

# ";" in a request path segment (Tomcat and Spring read "/admin;x=1" as "/admin")
# <- CorePlan (protocol) picks one through SEMICOLON_MODES (consts.pxi); http1 applies it
cdef enum:
    SEMICOLONS_REJECT = 0
    SEMICOLONS_ALLOW = 1

# --- error codes ------------------------------------------------------------------------
# <- every fragment: Http1Parser.error_code, local answers; ERROR_TABLE (consts.pxi) maps
#    each to its status, stable code and message
cdef enum ErrorCode:
    E_OK = 0
    # request line
    E_BAD_REQUEST_LINE = 1
    E_BAD_METHOD = 2
    E_BAD_TARGET = 3
    E_BAD_VERSION = 4
    E_VERSION_NOT_SUPPORTED = 5
    E_URI_TOO_LONG = 6
    E_METHOD_NOT_IMPLEMENTED = 7
    # line endings and header syntax
    E_BARE_LF = 10
    E_BARE_CR = 11
    E_HEADER_NAME_WHITESPACE = 12
    E_OBS_FOLD = 13
    E_LEADING_WHITESPACE = 14
    E_BAD_HEADER_NAME = 15
    E_BAD_HEADER_VALUE = 16
    E_HEADER_TOO_LARGE = 17
    E_TOO_MANY_HEADERS = 18
    # host
    E_MISSING_HOST = 20
    E_DUPLICATE_HOST = 21
    E_BAD_HOST = 22
    # framing
    E_CL_AND_TE = 30
    E_BAD_CONTENT_LENGTH = 31
    E_DUPLICATE_CONTENT_LENGTH = 32
    E_BODY_TOO_LARGE = 33
    E_TE_NOT_CHUNKED = 34
    E_UNSUPPORTED_TRANSFER_CODING = 35
    E_TE_ON_HTTP10 = 36
    E_BAD_CHUNK_SIZE = 37
    E_BAD_CHUNK_TERMINATOR = 38
    E_CHUNK_EXTENSION_TOO_LONG = 39
    E_BAD_TRAILER = 40
    E_CONNECTION_NOMINATES_FRAMING = 41
    E_EXPECTATION_FAILED = 42
    # path
    E_ENCODED_SEPARATOR = 50
    E_BAD_PERCENT_ENCODING = 51
    E_BACKSLASH_IN_PATH = 52
    E_FRAGMENT_IN_TARGET = 53
    E_PATH_ABOVE_ROOT = 54
    # routing
    E_ROUTE_NOT_FOUND = 60
    E_METHOD_NOT_ALLOWED = 61
    E_ROUTE_UNAVAILABLE = 62
    # client timing
    E_CLIENT_HEADER_TIMEOUT = 70
    E_CLIENT_BODY_TIMEOUT = 71
    # upstream
    E_UPSTREAM_CONNECT_FAILED = 80
    E_UPSTREAM_RESET = 81
    E_UPSTREAM_BAD_STATUS_LINE = 82
    E_UPSTREAM_BAD_HEADER = 83
    E_UPSTREAM_BAD_FRAMING = 84
    E_UPSTREAM_HEADER_TOO_LARGE = 85
    E_UPSTREAM_BAD_CHUNK = 86
    E_UPSTREAM_TRUNCATED = 87
    E_UPSTREAM_TIMEOUT = 88
    E_UPSTREAM_CONNECT_TIMEOUT = 89
    E_NO_UPSTREAM_TARGET = 90
    E_UPSTREAM_SEND_TIMEOUT = 91
    # gateway
    E_INTERNAL = 99
    E_POLICY_ERROR = 100
    E_POLICY_TIMEOUT = 101
    E_RATE_LIMITED = 102
    E_RATE_LIMIT_UNAVAILABLE = 103
    E_CONCURRENCY_LIMITED = 104
    E_CONCURRENCY_LIMITED_429 = 105
    E_UNDERSCORE_IN_HEADER_NAME = 106
    E_IP_FORBIDDEN = 107
    # identity and access (fastgw/policy/ auth policies, acl, cors, request_validation)
    E_CREDENTIALS_MISSING = 108
    E_CREDENTIALS_INVALID = 109
    E_TOKEN_EXPIRED = 110
    E_TOKEN_NOT_YET_VALID = 111
    E_TOKEN_AUDIENCE = 112
    E_TOKEN_ISSUER = 113
    E_FORBIDDEN = 114
    E_CORS_ORIGIN_FORBIDDEN = 115
    E_VALIDATION_FAILED = 116
    E_UNSUPPORTED_MEDIA_TYPE = 117
    E_AUTH_UNAVAILABLE = 118
    # path spellings (200 and above: kept apart from the gateway's block above)
    E_SEMICOLON_IN_PATH = 200
    E_DOT_SEGMENT_PARAMETERS = 201
    E_BAD_UTF8_IN_PATH = 202
