# http1.pxd: the HTTP/1.1 request and response parsers and the fields they leave for the
# rest of the core (code: http1.pxi).
#
# A request meets RequestParser.execute() first: ClientProtocol.process (protocol) feeds it
# the client's bytes and acts on each event; the router, the head serialiser, policies and
# the access log then read the parsed head from the fields below, in place. The upstream's
# answer goes through ResponseParser.execute(), fed by UpstreamConnection.feed (upstream).
# Nothing here touches a Python object on the way.

cdef enum:
    HEAD_COPY_STEP = 2048       # head bytes copied per scan round (bounds copied body bytes)
    HEAD_INITIAL_CAP = 1024
    MAX_CHUNK_SIZE_DIGITS = 16  # leading zeros cannot stretch a chunk-size line forever
    MAX_HOSTNAME_BYTES = 255    # RFC 1035 2.3.4


# <- ClientProtocol.put_key, put_request_field (protocol): a token against a lowercase name
#    (inline in http1.pxi)
cdef bint _h1_name_is(const char* s, const char* lit, Py_ssize_t n) noexcept


cdef class Http1Parser:
    # Limits: RequestParser / ResponseParser.__init__ set them; ClientProtocol (protocol) sets
    # `underscores` from its plan and moves max_body_bytes to the route's and back.
    cdef Py_ssize_t max_header_bytes
    cdef Py_ssize_t max_headers
    cdef int64_t max_body_bytes
    cdef bint is_request
    cdef public int underscores      # UNDERSCORES_*: what a request field name with "_" gets
    # The outcome: ClientProtocol and Engine (protocol), UpstreamConnection (upstream) read
    # these after execute().
    cdef readonly int error_code
    cdef readonly int detail_code        # the syntax-level code behind an upstream error
    cdef readonly bint in_message
    cdef readonly bint head_done
    cdef int state

    # The head as received, and the field lines in it by offset: the router's conditions
    # (through RequestFields), the head serialisers (protocol), Headers and PolicyRequest
    # (policy) and the access log read them in place.
    cdef char* head
    cdef Py_ssize_t head_len
    cdef Py_ssize_t head_cap
    cdef Py_ssize_t scan_pos
    cdef readonly int version_minor

    cdef readonly int n_headers
    cdef Py_ssize_t* hdr_name_off
    cdef Py_ssize_t* hdr_name_len
    cdef Py_ssize_t* hdr_value_off
    cdef Py_ssize_t* hdr_value_len
    cdef uint8_t* hdr_id
    cdef uint8_t* hdr_flags

    # Framing and the body bytes of the last EV_BODY: protocol and upstream relay them.
    cdef readonly int framing
    cdef readonly int64_t content_length
    cdef readonly bint keep_alive
    cdef const char* body_ptr
    cdef Py_ssize_t body_len

    # scanner context
    cdef Py_ssize_t tok_off        # start of the token being scanned
    cdef Py_ssize_t name_off
    cdef Py_ssize_t name_len
    cdef Py_ssize_t cr_pos
    cdef int vpos                  # position inside the HTTP-version / status code
    cdef int major
    cdef int host_count
    cdef int cl_count
    cdef int te_count
    cdef int conn_count
    cdef int host_idx
    cdef bint conn_close
    cdef bint conn_keep_alive
    cdef bint conn_upgrade
    # body context
    cdef int64_t remaining
    cdef int64_t body_total
    cdef int64_t chunk_size
    cdef int chunk_digits
    cdef Py_ssize_t ext_bytes
    cdef Py_ssize_t trailer_bytes

    # The head, in the order a message meets the scanner. The subclasses' execute() calls
    # _head_phase until EV_HEAD, then _body_phase; _scan_start_line, _finish_head and
    # _execute are overridden by both subclasses. The field lines and the chunked body's
    # control lines are scanned by module functions in http1.pxi (_h1_scan_fields,
    # _h1_scan_chunk_control), which the phases call directly.
    # <- execute (both subclasses): copy head bytes in and scan them, until EV_HEAD
    cdef int _head_phase(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept
    # <- _head_phase: room for the head, up to max_header_bytes
    cdef bint _grow(self, Py_ssize_t need) noexcept
    # <- _head_phase: the request line / status line (each subclass has its own)
    cdef int _scan_start_line(self) noexcept
    # <- _head_phase: the rules over the whole head, then the framing (each subclass)
    cdef int _finish_head(self) noexcept
    # <- _finish_head (both subclasses): Connection options and the fields they nominate
    cdef int _apply_connection(self) noexcept
    # <- _finish_head (both subclasses): the one Content-Length
    cdef int _parse_content_length(self) noexcept
    # <- _finish_head (both subclasses): the Transfer-Encoding codings, in order
    cdef int _transfer_codings(self, bint* final_chunked, int* n_chunked,
                               int* n_other) noexcept
    # <- _finish_head (both subclasses): the body state the framing calls for
    cdef void _start_body(self) noexcept
    # <- every scanner rule that refuses a byte: the error state and its code
    cdef int _fail(self, int code) noexcept
    # The body.
    # <- execute (both subclasses): body bytes in place (EV_BODY), then EV_DONE
    cdef int _body_phase(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept
    # <- _body_phase, ResponseParser.feed_eof: the message is complete
    cdef void _message_done(self) noexcept

    # Outside the request path.
    # <- the subclasses' __init__: the head buffer and field arrays for these limits
    cdef _setup(self, Py_ssize_t max_header_bytes, Py_ssize_t max_headers)
    # <- _setup, __dealloc__
    cdef void _free_buffers(self) noexcept
    # <- the subclasses' _reset: the state every message starts from
    cdef void _reset_common(self) noexcept
    # <- feed (Python: tests, tools): execute() over bytes, as a list of events
    cdef list _feed_events(self, bytes data)
    # <- _feed_events: the subclass's execute()
    cdef int _execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept


# Final: protocol's calls to execute() are direct C calls. The subclasses' overrides of
# _scan_start_line, _finish_head and _execute are declared by Http1Parser only: Cython refuses
# to redeclare an inherited method under a final class.
@cython.final
cdef class RequestParser(Http1Parser):
    # The request line, normalised path and host: the router (through protocol), the head
    # serialiser and the access log (protocol), PolicyRequest (policy) read them.
    cdef Py_ssize_t max_target_bytes
    # Path spellings: ClientProtocol (protocol) sets them from its plan; a parser made
    # without one has the config's defaults (merge, reject).
    cdef public bint merge_slashes   # "//" is one "/" (limits.merge_slashes)
    cdef public int semicolons       # SEMICOLONS_*: what ";" in a path segment gets
    cdef readonly int method_id
    cdef Py_ssize_t method_off
    cdef Py_ssize_t method_len
    cdef Py_ssize_t target_off
    cdef Py_ssize_t target_len
    cdef readonly char* path
    cdef Py_ssize_t path_len
    cdef Py_ssize_t path_cap
    cdef readonly bint has_query
    cdef Py_ssize_t query_off
    cdef Py_ssize_t query_len
    cdef readonly char* hostname
    cdef Py_ssize_t hostname_len
    cdef char hostname_buf[MAX_HOSTNAME_BYTES + 1]
    cdef Py_ssize_t host_off
    cdef Py_ssize_t host_len
    cdef readonly bint absolute_form
    cdef readonly bint upgrade_websocket
    cdef readonly bint expect_continue

    # <- ClientProtocol.process (protocol), bench: the next event from the client's bytes
    cdef int execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept
    # <- _scan_start_line: the request-target's form and the normalised path
    cdef int _on_request_line(self) noexcept
    # <- execute (the next message), __init__
    cdef void _reset(self) noexcept


@cython.final
cdef class ResponseParser(Http1Parser):
    # The status line: ClientProtocol's response head (protocol) and ResponseView (policy).
    cdef readonly int status
    cdef Py_ssize_t reason_off
    cdef Py_ssize_t reason_len
    cdef bint request_is_head

    # <- UpstreamConnection.start (upstream): the method the response answers (HEAD: no body)
    cdef void set_request(self, int method_id) noexcept
    # <- UpstreamConnection.feed (upstream): the next event from the upstream's bytes
    cdef int execute(self, const char* data, Py_ssize_t n, Py_ssize_t* consumed) noexcept
    # <- UpstreamConnection.on_lost (upstream): the end of a close-delimited body, or truncated
    cdef int feed_eof(self) noexcept
    # <- execute (the next response), __init__
    cdef void _reset(self) noexcept
