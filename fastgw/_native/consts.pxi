# consts.pxi: every tunable, identifier and error code of the hot path, in one place.
#
# Error codes are small ints so the hot path can carry them in a C field; ERROR_TABLE maps
# each to the HTTP status, the stable machine-readable `code` of the JSON error body and a
# human message. The table is the single source for docs/strictness.md.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

# --- default limits (bytes / counts); config overrides them per gateway ---------------
cdef enum:
    DEFAULT_MAX_HEADER_BYTES = 32768   # whole request head incl. request line (nginx: 8k-32k)
    DEFAULT_MAX_HEADERS = 100          # header fields per message (HAProxy: 101)
    DEFAULT_MAX_TARGET_BYTES = 8192    # request-target (RFC 9112 3: recommends >= 8000)
    MAX_CHUNK_EXT_BYTES = 256          # chunk extensions are never used legitimately; cap hard
    MAX_TRAILER_BYTES = 8192           # trailers are read and dropped, but bounded
    HARD_MAX_HEADERS = 1024            # upper bound for limits.max_headers
    MAX_ROUTE_PARAMS = 16              # {name}/{*rest} captures per path pattern

# --- parser events (returned by execute) -----------------------------------------------
cdef enum ParserEvent:
    EV_NEED_MORE = 0   # every input byte consumed; feed more
    EV_HEAD = 1        # a complete head was parsed; its fields are readable
    EV_BODY = 2        # body_ptr/body_len point at body bytes inside the input just fed
    EV_DONE = 3        # the message is complete
    EV_ERROR = 4       # error_code is set; answer (if possible) and close

# --- message framing ---------------------------------------------------------------------
cdef enum Framing:
    FRAMING_NONE = 0      # no body (requests without CL/TE, 204/304, HEAD responses)
    FRAMING_LENGTH = 1    # Content-Length
    FRAMING_CHUNKED = 2   # Transfer-Encoding: chunked
    FRAMING_CLOSE = 3     # response body delimited by connection close
    FRAMING_TUNNEL = 4    # after 101 Switching Protocols: raw bytes both ways

# --- methods: a bit each so a route's allowed methods are one mask ---------------------
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

METHOD_IDS = {
    "GET": M_GET, "HEAD": M_HEAD, "POST": M_POST, "PUT": M_PUT, "DELETE": M_DELETE,
    "PATCH": M_PATCH, "OPTIONS": M_OPTIONS, "TRACE": M_TRACE, "CONNECT": M_CONNECT,
}
METHOD_NAMES = {v: k for k, v in METHOD_IDS.items()}

# --- header fields the hot path must recognise -----------------------------------------
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
cdef enum:
    HF_DROP = 1        # not forwarded: hop-by-hop, named by Connection, or rewritten by us

# request field names with "_" (CGI servers fold them into the "-" names they trust)
cdef enum:
    UNDERSCORES_ALLOW = 0
    UNDERSCORES_DROP = 1
    UNDERSCORES_REJECT = 2
UNDERSCORE_MODES = {"allow": UNDERSCORES_ALLOW, "drop": UNDERSCORES_DROP,
                    "reject": UNDERSCORES_REJECT}

# --- error codes ------------------------------------------------------------------------
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


# status -> reason phrase, for every status line the gateway writes itself (local answers,
# policies, redirects, interim responses, the admin API). RFC 9110 section 15 phrases (not the
# RFC 2616 ones Python's http.HTTPStatus still has: 413 Content Too Large, 414 URI Too Long,
# 416 Range Not Satisfiable, 422 Unprocessable Content); the rest from the IANA HTTP Status
# Code Registry. A relayed upstream response keeps its own phrase.
STATUS_PHRASES = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    208: "Already Reported", 226: "IM Used",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    416: "Range Not Satisfiable", 417: "Expectation Failed", 421: "Misdirected Request",
    422: "Unprocessable Content", 423: "Locked", 424: "Failed Dependency",
    425: "Too Early", 426: "Upgrade Required", 428: "Precondition Required",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates", 507: "Insufficient Storage", 508: "Loop Detected",
    511: "Network Authentication Required",
}

# code -> (status, stable code, message). The JSON error body is built from this table.
ERROR_TABLE = {
    E_BAD_REQUEST_LINE: (400, "bad_request_line", "malformed request line"),
    E_BAD_METHOD: (400, "bad_method", "invalid method token"),
    E_BAD_TARGET: (400, "bad_target", "invalid request-target"),
    E_BAD_VERSION: (400, "bad_version", "malformed HTTP version"),
    E_VERSION_NOT_SUPPORTED: (505, "version_not_supported", "HTTP version not supported"),
    E_URI_TOO_LONG: (414, "uri_too_long", "request-target exceeds the configured limit"),
    E_METHOD_NOT_IMPLEMENTED: (501, "method_not_implemented",
                               "method not supported by the gateway"),
    E_BARE_LF: (400, "bare_lf", "line ending is LF without CR"),
    E_BARE_CR: (400, "bare_cr", "CR not followed by LF"),
    E_HEADER_NAME_WHITESPACE: (400, "header_name_whitespace",
                               "whitespace between a field name and the colon"),
    E_OBS_FOLD: (400, "obs_fold", "obsolete line folding in a header field"),
    E_LEADING_WHITESPACE: (400, "leading_whitespace", "whitespace before the first header field"),
    E_BAD_HEADER_NAME: (400, "bad_header_name", "empty or invalid header field name"),
    E_BAD_HEADER_VALUE: (400, "bad_header_value", "control character in a header field value"),
    E_HEADER_TOO_LARGE: (431, "header_too_large", "request header exceeds the configured limit"),
    E_TOO_MANY_HEADERS: (431, "too_many_headers", "more header fields than the configured limit"),
    E_MISSING_HOST: (400, "missing_host", "HTTP/1.1 request without Host"),
    E_DUPLICATE_HOST: (400, "duplicate_host", "more than one Host header field"),
    E_BAD_HOST: (400, "bad_host", "invalid Host"),
    E_CL_AND_TE: (400, "content_length_and_transfer_encoding",
                  "both Content-Length and Transfer-Encoding"),
    E_BAD_CONTENT_LENGTH: (400, "bad_content_length", "invalid Content-Length"),
    E_DUPLICATE_CONTENT_LENGTH: (400, "duplicate_content_length",
                                 "more than one Content-Length field"),
    E_BODY_TOO_LARGE: (413, "body_too_large", "request body exceeds the configured limit"),
    E_TE_NOT_CHUNKED: (400, "transfer_encoding_not_chunked",
                       "chunked is not the final transfer coding"),
    E_UNSUPPORTED_TRANSFER_CODING: (501, "unsupported_transfer_coding",
                                    "transfer coding not implemented"),
    E_TE_ON_HTTP10: (400, "transfer_encoding_on_http10",
                     "Transfer-Encoding on an HTTP/1.0 request"),
    E_BAD_CHUNK_SIZE: (400, "bad_chunk_size", "invalid chunk size"),
    E_BAD_CHUNK_TERMINATOR: (400, "bad_chunk_terminator", "chunk data not followed by CRLF"),
    E_CHUNK_EXTENSION_TOO_LONG: (400, "chunk_extension_too_long", "chunk extension too long"),
    E_BAD_TRAILER: (400, "bad_trailer", "invalid trailer section"),
    E_CONNECTION_NOMINATES_FRAMING: (400, "connection_nominates_framing",
                                     "Connection names Host, Content-Length or Transfer-Encoding"),
    E_EXPECTATION_FAILED: (417, "expectation_failed", "only Expect: 100-continue is supported"),
    E_ENCODED_SEPARATOR: (400, "encoded_separator", "path contains an encoded /, \\ or NUL"),
    E_BAD_PERCENT_ENCODING: (400, "bad_percent_encoding", "invalid percent-encoding in the path"),
    E_BACKSLASH_IN_PATH: (400, "backslash_in_path", "backslash in the path"),
    E_FRAGMENT_IN_TARGET: (400, "fragment_in_target", "fragment in the request-target"),
    E_PATH_ABOVE_ROOT: (400, "path_above_root", "dot segments climb above the root"),
    E_ROUTE_NOT_FOUND: (404, "route_not_found", "no route matches the request"),
    E_METHOD_NOT_ALLOWED: (405, "method_not_allowed", "method not allowed on this route"),
    E_ROUTE_UNAVAILABLE: (503, "route_unavailable",
                          "route disabled: one of its policies failed to start"),
    E_CLIENT_HEADER_TIMEOUT: (408, "client_header_timeout",
                              "request head not received in time"),
    E_CLIENT_BODY_TIMEOUT: (408, "client_body_timeout", "request body stalled"),
    E_UPSTREAM_CONNECT_FAILED: (502, "upstream_connect_failed",
                                "could not connect to the upstream"),
    E_UPSTREAM_RESET: (502, "upstream_reset", "upstream closed the connection before responding"),
    E_UPSTREAM_BAD_STATUS_LINE: (502, "upstream_bad_status_line",
                                 "upstream sent an invalid status line"),
    E_UPSTREAM_BAD_HEADER: (502, "upstream_bad_header", "upstream sent an invalid header"),
    E_UPSTREAM_BAD_FRAMING: (502, "upstream_bad_framing", "upstream response framing is invalid"),
    E_UPSTREAM_HEADER_TOO_LARGE: (502, "upstream_header_too_large",
                                  "upstream response head too large"),
    E_UPSTREAM_BAD_CHUNK: (502, "upstream_bad_chunk", "upstream sent an invalid chunk"),
    E_UPSTREAM_TRUNCATED: (502, "upstream_truncated", "upstream response was truncated"),
    E_UPSTREAM_TIMEOUT: (504, "upstream_timeout", "upstream did not respond in time"),
    E_UPSTREAM_CONNECT_TIMEOUT: (504, "upstream_connect_timeout",
                                 "upstream connection not established in time"),
    E_NO_UPSTREAM_TARGET: (503, "no_upstream_target", "no upstream target available"),
    E_UPSTREAM_SEND_TIMEOUT: (504, "upstream_send_timeout",
                              "upstream stopped taking the request"),
    E_INTERNAL: (500, "internal_error", "internal gateway error"),
    E_POLICY_ERROR: (500, "policy_error", "a policy failed while handling the request"),
    E_POLICY_TIMEOUT: (504, "policy_timeout", "a policy did not finish in time"),
    E_RATE_LIMITED: (429, "rate_limited", "rate limit exceeded"),
    E_RATE_LIMIT_UNAVAILABLE: (503, "rate_limit_unavailable",
                               "the rate limit could not be checked"),
    E_CONCURRENCY_LIMITED: (503, "concurrency_limited", "too many requests in flight"),
    E_CONCURRENCY_LIMITED_429: (429, "concurrency_limited", "too many requests in flight"),
    E_UNDERSCORE_IN_HEADER_NAME: (400, "underscore_in_header_name",
                                  "header field names with '_' are refused here"),
}
