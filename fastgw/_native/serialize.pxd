# serialize.pxd: the buffer every head fastgw writes is built in (code: serialize.pxi).
#
# The head serialisers of ClientProtocol (protocol) write the upstream request head, the
# client's response head and local answers into the module-wide `_head_buffer`
# (serialize.pxi); the access log (observe), the RateLimit fields (ratelimit) and policy's
# encoders write into buffers of their own, the same way.

cdef class HeadBuffer:
    # Written through the methods below; protocol's serialisers and ratelimit's field writer
    # also reset `length`, read a key in place or edit `data` where they wrote it.
    cdef char* data
    cdef Py_ssize_t length
    cdef Py_ssize_t capacity

    # <- protocol (the head serialisers), observe, ratelimit, policy: append bytes
    cdef inline int put(self, const char* src, Py_ssize_t n) except -1
    # <- protocol (the head serialisers), observe, ratelimit: append a bytes object
    cdef inline int put_bytes(self, bytes src) except -1
    # <- protocol (Content-Length, status codes), observe, ratelimit: a decimal number
    cdef int put_int(self, int64_t value) except -1
    # <- chunk_header, ClientProtocol.on_response_body (protocol): a chunk size
    cdef int put_hex(self, Py_ssize_t value) except -1
    # <- put: room for `need` more bytes
    cdef int grow(self, Py_ssize_t need) except -1
    # <- protocol, observe (AccessLog.flush), ratelimit, policy: the content as bytes, emptied
    cdef inline bytes take(self)


# <- ClientProtocol.on_response_head, write_error, answer_policy (protocol), status_line_for
#    (Python: plan, admin): the status line the gateway writes for a status
cdef bytes status_line(int status)
# <- ClientProtocol (protocol): a chunk-size line, when re-framing a body as chunked
cdef bytes chunk_header(Py_ssize_t size)
