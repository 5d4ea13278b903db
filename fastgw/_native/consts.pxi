# consts.pxi: every tunable, identifier and error code of the hot path, in one place: the
# C constants are declared in consts.pxd, their Python-side tables are here.
#
# Error codes are small ints so the hot path can carry them in a C field; ERROR_TABLE maps
# each to the HTTP status, the stable machine-readable `code` of the JSON error body and a
# human message. The table is the single source for docs/strictness.md.

METHOD_IDS = {
    "GET": M_GET, "HEAD": M_HEAD, "POST": M_POST, "PUT": M_PUT, "DELETE": M_DELETE,
    "PATCH": M_PATCH, "OPTIONS": M_OPTIONS, "TRACE": M_TRACE, "CONNECT": M_CONNECT,
}
METHOD_NAMES = {v: k for k, v in METHOD_IDS.items()}

UNDERSCORE_MODES = {"allow": UNDERSCORES_ALLOW, "drop": UNDERSCORES_DROP,
                    "reject": UNDERSCORES_REJECT}
SEMICOLON_MODES = {"reject": SEMICOLONS_REJECT, "allow": SEMICOLONS_ALLOW}


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
    E_IP_FORBIDDEN: (403, "ip_forbidden", "the client address is not allowed here"),
    E_CREDENTIALS_MISSING: (401, "credentials_missing", "no credentials were presented"),
    E_CREDENTIALS_INVALID: (401, "credentials_invalid", "the credentials are not valid"),
    E_TOKEN_EXPIRED: (401, "token_expired", "the token has expired"),
    E_TOKEN_NOT_YET_VALID: (401, "token_not_yet_valid", "the token is not valid yet"),
    E_TOKEN_AUDIENCE: (401, "token_audience", "the token is not meant for this audience"),
    E_TOKEN_ISSUER: (401, "token_issuer", "the token was issued by an issuer not trusted here"),
    E_FORBIDDEN: (403, "forbidden", "the caller may not access this resource"),
    E_CORS_ORIGIN_FORBIDDEN: (403, "cors_origin_forbidden", "the origin is not allowed here"),
    E_VALIDATION_FAILED: (400, "validation_failed", "the request failed validation"),
    E_UNSUPPORTED_MEDIA_TYPE: (415, "unsupported_media_type",
                               "the request body's content type is not accepted here"),
    E_AUTH_UNAVAILABLE: (503, "auth_unavailable",
                         "the credentials could not be checked now; try again later"),
    E_SEMICOLON_IN_PATH: (400, "semicolon_in_path", "';' in the path is refused here"),
    E_DOT_SEGMENT_PARAMETERS: (400, "dot_segment_parameters",
                               "a '.' or '..' segment with ';' parameters in the path"),
    E_BAD_UTF8_IN_PATH: (400, "bad_utf8_in_path",
                         "percent-encoded bytes in the path are not valid UTF-8"),
}

# The stable codes an authentication policy may fail with (PolicyRequest.auth_failed), by
# code string; AUTH_FAILURES[code] is the core's E_* value.
AUTH_FAILURES = {
    ERROR_TABLE[code][1]: code for code in (
        E_CREDENTIALS_MISSING, E_CREDENTIALS_INVALID, E_TOKEN_EXPIRED, E_TOKEN_NOT_YET_VALID,
        E_TOKEN_AUDIENCE, E_TOKEN_ISSUER, E_FORBIDDEN, E_AUTH_UNAVAILABLE)
}
