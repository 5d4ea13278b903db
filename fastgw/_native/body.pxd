# body.pxd: the response body seam: stages (per route) and filters (per response) that observe or
# transform the body the relay writes. (code: body.pxi)

cdef class BodyStage:
    pass

    # <- this fragment (body_start, from relay_write_head): the filter for this response's body, or
    #    None to leave it alone
    cdef BodyFilter start(self, ClientProtocol conn, Exchange ex, ResponseParser rp)


cdef class BodyFilter:
    cdef BodyFilter next           # where emit() sends bytes: the next filter; None: the client
    cdef bint transforms           # the output differs from the input: set before start returns
    cdef bytes head_fields         # "name: value\r\n" lines added to the response head, or None
    cdef bint used                 # started once: a filter serves one response

    # <- this fragment: `n` body bytes at `p`, valid during this call only
    cdef int data(self, ClientProtocol conn, Exchange ex, const char* p, Py_ssize_t n) except -1
    # <- this fragment (body_finish): the body is over (see the top of body.pxi)
    cdef int end(self, ClientProtocol conn, Exchange ex, bint complete) except -1
    # <- this fragment: pass bytes on (only from data() or end()): to the next filter, or to the
    #    client
    cdef int emit(self, ClientProtocol conn, Exchange ex, const char* p, Py_ssize_t n) except -1


# <- relay: chain the filters of the stages that take this response; 1 when one transforms
cdef int body_start(ClientProtocol conn, Exchange ex, ResponseParser rp, tuple stages) except -1


# <- relay: the head fields the active filters add
cdef int body_put_fields(Exchange ex) except -1


# <- relay
cdef void body_data(ClientProtocol conn, Exchange ex, const char* p, Py_ssize_t n) noexcept


# <- forward, protocol, relay: end() to every filter, in order (so a filter's last bytes pass the
#    ones after it)
cdef void body_finish(ClientProtocol conn, Exchange ex, bint complete) noexcept


# <- this fragment: keep the received fields named `lower` (lowercase) from the client
cdef void body_drop_field(ResponseParser rp, bytes lower) noexcept


cdef class PythonBodyStage(BodyStage):
    pass


cdef class PythonBodyFilter(BodyFilter):
    cdef tuple remove               # lowercase names (bytes) to drop from the head

    # <- this fragment
    cdef int emit_result(self, ClientProtocol conn, Exchange ex, object out) except -1
