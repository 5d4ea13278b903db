# body.pxi: the response body seam: stages a route runs over the bodies it relays, to
# observe them (a cache store keeps a copy) or to transform them (compression).
#
# A route's stages are on its RouteAction (`body_stages`, made at plan time, shared by every
# exchange on the route). At each final response head, before the fields are written, the
# relay asks each stage in turn whether it takes this response (BodyStage.start); the
# filters the stages answer with are chained on the Exchange (`body_filter`, the first) and
# hold what one response needs. Body bytes then go through the chain: a filter passes what
# it has on with emit(), to the next filter, and the last one's bytes reach the client,
# framed by the relay. A route without stages pays one pointer test per head, body chunk and
# end (ex.action.body_stages, ex.body_filter).
#
# Every filter that started hears end() exactly once: complete=True after the whole body
# went through data(), as the upstream's framing delimited it; complete=False when the
# response was cut short (the upstream reset or truncated it mid-body, the client left, an
# internal error): nothing more reaches the client then, and a cache must not keep it.
#
# A filter that transforms (its output differs from its input) costs the response its
# length: the relay drops content-length and frames the body chunked for an HTTP/1.1 client
# or by closing the connection for HTTP/1.0. A filter that only observes must pass its
# input on unchanged, so the upstream's framing (and a small body sharing the head's
# write) stays. A response without a body (to HEAD, 204, 304) starts its filters too, so
# that their head fields are those a GET would get, but has no data(); what a filter emits
# for it is dropped.


@cython.auto_pickle(False)
cdef class BodyStage:
    """What a route does with response bodies: one object per route and kind, made at plan
    time and shared by every exchange on the route (a response's state is its filter's)."""

    cdef BodyFilter start(self, ClientProtocol conn, Exchange ex, ResponseParser rp):
        """The filter for this response's body, or None to leave it alone.

        The head is in `rp`, valid during this call only: copy what is needed. The fields
        are not written yet: setting HF_DROP in rp.hdr_flags keeps one from the client."""
        return None


@cython.auto_pickle(False)
cdef class BodyFilter:
    """One response body going through one stage."""

    cdef int data(self, ClientProtocol conn, Exchange ex, const char* p, Py_ssize_t n) except -1:
        """`n` body bytes at `p`, valid during this call only. An observer looks at them and
        passes them on; a transform passes on what it makes of them, now or later."""
        return self.emit(conn, ex, p, n)

    cdef int end(self, ClientProtocol conn, Exchange ex, bint complete) except -1:
        """The body is over (see the top of body.pxi). A transform emits what it still holds
        when `complete`; then its last bytes come before the end of the body."""
        return 0

    cdef int emit(self, ClientProtocol conn, Exchange ex, const char* p, Py_ssize_t n) except -1:
        """Pass bytes on (only from data() or end()): to the next filter, or to the client."""
        if self.next is not None:
            return self.next.data(conn, ex, p, n)
        if (n == 0 or conn.closed or ex.body_filter is None
                or ex.out_framing == OUT_NONE):
            return 0                # cut short, or a response without a body
        relay_put_body(conn, ex, p, n)
        return 0


cdef int body_start(ClientProtocol conn, Exchange ex, ResponseParser rp, tuple stages) except -1:
    """Chain the filters of the stages that take this response; 1 when one transforms.

    Each filter joins the chain as soon as it is made, so that one whose stage comes before
    a stage that raised still hears end(complete=False)."""
    cdef BodyStage stage
    cdef BodyFilter f, last = None
    cdef int transforms = 0
    for stage in stages:
        f = stage.start(conn, ex, rp)
        if f is None:
            continue
        if f.used:
            raise RuntimeError(f"{type(stage).__name__} returned a BodyFilter that already "
                               f"served a response; each response needs a new one")
        f.used = True
        f.next = None
        if last is None:
            ex.body_filter = f
        else:
            last.next = f
        last = f
        if f.transforms:
            transforms = 1
    return transforms


cdef int body_put_fields(Exchange ex) except -1:
    """The head fields the active filters add."""
    cdef BodyFilter f = ex.body_filter
    while f is not None:
        if f.head_fields is not None:
            _head_buffer.put_bytes(f.head_fields)
        f = f.next
    return 0


cdef void body_data(ClientProtocol conn, Exchange ex, const char* p, Py_ssize_t n) noexcept:
    try:
        ex.body_filter.data(conn, ex, p, n)
    except BaseException as exc:
        # A bug in a stage: the connection fails, and every filter hears complete=False
        # when it is lost.
        conn.fail_internal(W_UPSTREAM, exc)


cdef void body_finish(ClientProtocol conn, Exchange ex, bint complete) noexcept:
    """end() to every filter, in order (so a filter's last bytes pass the ones after it).

    Cut short, nothing a filter emits reaches the client. A filter that raises fails the
    connection; the ones after it hear complete=False."""
    cdef BodyFilter f = ex.body_filter
    cdef object error = None
    if not complete:
        ex.body_filter = None
    while f is not None:
        try:
            f.end(conn, ex, complete)
        except BaseException as exc:
            if error is None:
                error = exc
            else:
                _internal_error(W_UPSTREAM, exc, ex.request_id)
            complete = False
            ex.body_filter = None
        f = f.next
    ex.body_filter = None
    if error is not None:
        conn.fail_internal(W_UPSTREAM, error)


cdef void body_drop_field(ResponseParser rp, bytes lower) noexcept:
    """Keep the received fields named `lower` (lowercase) from the client."""
    cdef int i
    for i in range(rp.n_headers):
        if _name_is(rp.head + rp.hdr_name_off[i], rp.hdr_name_len[i], lower):
            rp.hdr_flags[i] |= HF_DROP


# --- stages written in Python ---------------------------------------------------------------


@cython.auto_pickle(False)
cdef class PythonBodyStage(BodyStage):
    """A body stage written in Python, for tests and experiments (the built-in stages are
    compiled): subclass it and override open(). Its filters are PythonBodyFilters."""

    def open(self, int status, Headers headers, bint has_body):
        """A new PythonBodyFilter for this response, or None to leave it alone.

        `headers` are the upstream's fields as the client will get them; `has_body` is
        False for a response to HEAD, a 204 or a 304."""
        return None

    cdef BodyFilter start(self, ClientProtocol conn, Exchange ex, ResponseParser rp):
        cdef PythonBodyFilter f
        result = self.open(rp.status, Headers(_field_list(rp, True)),
                           rp.framing != FRAMING_NONE)
        if result is None:
            return None
        if not isinstance(result, PythonBodyFilter):
            raise TypeError(f"{type(self).__name__}.open() must return a PythonBodyFilter "
                            f"or None, not {type(result).__name__}")
        f = <PythonBodyFilter>result
        if f.remove is not None:
            for name in f.remove:
                body_drop_field(rp, <bytes>name)
        return f


@cython.auto_pickle(False)
cdef class PythonBodyFilter(BodyFilter):
    """One response body through a PythonBodyStage: override on_data() and on_end().

    `transforms`: on_data() and on_end() return the bytes to send on (None: nothing yet)
    and the response loses its length; otherwise they only observe, their results are
    ignored and the body goes on as it came. `fields` are (name, value) pairs added to the
    head, `remove` names of the upstream's fields the client does not get."""

    def __init__(self, *, bint transforms=False, fields=(), remove=()):
        lines = []
        for name, value in fields:
            check_field(name, value)
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        for name in remove:
            check_field(name)
        self.transforms = transforms
        self.head_fields = b"".join(lines) if lines else None
        self.remove = tuple(name.lower().encode("latin-1") for name in remove)

    def on_data(self, bytes chunk):
        """Body bytes, in order, as the upstream sent them."""
        return None

    def on_end(self, bint complete):
        """The body is over: complete, or cut short (then nothing more is sent)."""
        return None

    cdef int data(self, ClientProtocol conn, Exchange ex, const char* p, Py_ssize_t n) except -1:
        out = self.on_data(PyBytes_FromStringAndSize(p, n))
        if not self.transforms:
            return self.emit(conn, ex, p, n)
        return self.emit_result(conn, ex, out)

    cdef int end(self, ClientProtocol conn, Exchange ex, bint complete) except -1:
        out = self.on_end(complete)
        if not self.transforms:
            return 0
        return self.emit_result(conn, ex, out)

    cdef int emit_result(self, ClientProtocol conn, Exchange ex, object out) except -1:
        if out is None:
            return 0
        if type(out) is not bytes:
            raise TypeError(f"{type(self).__name__} must return bytes or None, "
                            f"not {type(out).__name__}")
        return self.emit(conn, ex, PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out))
