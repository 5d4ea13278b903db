# serialize.pxi: the heads fastgw writes, built into one reusable C buffer.
#
# Every head that leaves the gateway (upstream request, client response, local error) is
# re-serialised from parsed fields: canonical CRLF, one framing header, hop-by-hop fields
# removed (DESIGN.md principle 3). The buffer is module-wide: the event loop is single
# threaded and each head is turned into one bytes object before control returns to it.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy


cdef class HeadBuffer:
    """A growable byte buffer; `take()` returns its content as bytes and empties it."""

    def __cinit__(self):
        self.capacity = 4096
        self.length = 0
        self.data = <char*>realloc(NULL, self.capacity)
        if self.data == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.data)

    cdef int grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = self.capacity
        cdef char* new_data
        while cap < self.length + need:
            cap *= 2
        new_data = <char*>realloc(self.data, cap)
        if new_data == NULL:
            raise MemoryError()
        self.data = new_data
        self.capacity = cap
        return 0

    cdef inline int put(self, const char* src, Py_ssize_t n) except -1:
        if self.length + n > self.capacity:
            self.grow(n)
        memcpy(self.data + self.length, src, n)
        self.length += n
        return 0

    cdef inline int put_bytes(self, bytes src) except -1:
        return self.put(PyBytes_AS_STRING(src), PyBytes_GET_SIZE(src))

    cdef int put_int(self, int64_t value) except -1:
        cdef char digits[24]
        cdef int i = 24
        if value == 0:
            return self.put("0", 1)
        while value > 0 and i > 0:
            i -= 1
            digits[i] = <char>(48 + value % 10)
            value //= 10
        return self.put(digits + i, 24 - i)

    cdef int put_hex(self, Py_ssize_t value) except -1:
        cdef char digits[20]
        cdef int i = 20
        if value == 0:
            return self.put("0", 1)
        while value > 0 and i > 0:
            i -= 1
            digits[i] = b"0123456789abcdef"[value & 15]
            value >>= 4
        return self.put(digits + i, 20 - i)

    cdef inline bytes take(self):
        cdef bytes out = PyBytes_FromStringAndSize(self.data, self.length)
        self.length = 0
        return out


cdef HeadBuffer _head_buffer = HeadBuffer()

# Status lines for the statuses the gateway answers with, built once from STATUS_PHRASES.
cdef dict _STATUS_LINES = {
    _status: b"HTTP/1.1 %d %s\r\n" % (_status, _phrase.encode("ascii"))
    for _status, _phrase in STATUS_PHRASES.items()
}


cdef bytes status_line(int status):
    cdef object line = _STATUS_LINES.get(status)
    if line is None:
        # RFC 9112 4: the reason-phrase is optional; a status without one keeps the SP.
        line = b"HTTP/1.1 %d \r\n" % status
    return <bytes>line


def status_line_for(int status):
    """The status line the gateway writes for `status` (also used by plan and admin)."""
    return status_line(status)


cdef bytes chunk_header(Py_ssize_t size):
    _head_buffer.put_hex(size)
    _head_buffer.put("\r\n", 2)
    return _head_buffer.take()
