# protocol.pxi: the client connection: asyncio callbacks, the connection state machine,
# flow control and timeouts. What a request needs lives in its Exchange (exchange.pxi), and
# the stages that run on it are the fragments that follow (request, route, chain, pick,
# forward, relay, record).
#
# No asyncio Task per request (DESIGN.md principle 2): uvloop calls the protocol methods,
# the request parser is pulled in a loop, and every decision that could be taken at plan
# time (route actions, rewrite templates, limits) already was, in plan.py.

from libc.string cimport memcmp, memmove
from collections import deque as _deque

import orjson as _orjson


cdef bytes _CRLF = b"\r\n"
cdef bytes _LAST_CHUNK = b"0\r\n\r\n"
cdef bytes _CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@cython.auto_pickle(False)
cdef class ClientProtocol:
    """asyncio protocol for one client connection: the connection's state machine, its
    buffers, flow control and timeouts. The request on it is its Exchange."""

    def __init__(self, Engine engine):
        self.engine = engine
        self.plan = engine.plan
        self.out = []

    # --- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        try:
            peer = transport.get_extra_info("peername")
            self.peer_ip = peer[0] if isinstance(peer, tuple) else ""
            self.peer_ip_bytes = self.peer_ip.encode("ascii")
            self.peer_trusted = self.plan.is_trusted(self.peer_ip)
            self.state = CS_PROXY if self.proxy_listener else CS_IDLE
            # A new connection must deliver its first head (after its PROXY header, if it
            # sends one) within client_header.
            self.deadline = _now + self.plan.client_header
            self.engine.connections.add(self)
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    def data_received(self, bytes data):
        cdef Exchange ex
        self.engine.metrics.bytes_in += <uint64_t>PyBytes_GET_SIZE(data)
        if self.state >= CS_TUNNEL:    # PERF: one test covers both rare states
            if self.state == CS_PROXY:
                self.on_proxy_bytes(data)
                return
            ex = self.ex
            self.deadline = _now + ex.read_timeout
            if ex.up is not None:
                ex.up_sent += PyBytes_GET_SIZE(data)
                try:
                    ex.up.transport.write(data)
                except BaseException as exc:
                    self.fail_internal(W_CLIENT, exc)
            return
        if self.buf is None:
            self.buf = data
            self.buf_off = 0
        else:
            # PERF: the try is on this rare branch only; the common one cannot raise.
            try:
                self.buf = self.buf[self.buf_off:] + data
            except BaseException as exc:
                self.fail_internal(W_CLIENT, exc)
                return
            self.buf_off = 0
        self.process()
        self.flush()

    def eof_received(self):
        cdef Exchange ex = self.ex
        if self.state == CS_EXCHANGE and self.waiting():
            # Gone while queued or parked: give up its place in line (logged as 499).
            chain_cancel(self, ex)
            self.close_transport()
            return False
        if self.state == CS_EXCHANGE and ex.request_complete:
            # Half-closed client: still deliver the response, then close.
            self.client_eof = True
            ex.keep_alive = False
            return True
        if self.state == CS_TUNNEL and ex.up is not None:
            try:
                ex.up.transport.write_eof()
            except Exception as exc:
                _internal_error(W_CLIENT, exc, None)
            return True
        return False

    def connection_lost(self, exc):
        cdef Exchange ex = self.ex
        cdef UpstreamConnection up
        record_finish(self, ex)
        self.closed = True
        self.deadline = 0.0
        try:
            self.engine.connections.discard(self)
        except BaseException as error:
            _internal_error(W_CLIENT, error, None)
        self.buf = None
        if ex is None:
            return
        up = ex.up
        ex.up = None
        if ex.body_filter is not None:
            body_finish(self, ex, False)    # the client left mid-body, or a failure closed it
        chain_cancel(self, ex)
        if ex.preq is not None:
            ex.preq.conn = None
            ex.preq = None
        if up is not None:
            up.client = None
            up.abort()

    def pause_writing(self):
        self.writing_paused = True
        self.write_paused_at = _now
        if self.ex is not None and self.ex.up is not None:
            self.ex.up.pause_reading(True)

    def resume_writing(self):
        self.writing_paused = False
        if self.ex is not None and self.ex.up is not None:
            self.ex.up.pause_reading(False)

    # --- reading the client -------------------------------------------------------------

    cdef void process(self) noexcept:
        """Pull parser events until the input runs out or the exchange must wait."""
        cdef Exchange ex = self.ex
        cdef Py_ssize_t used = 0, n
        cdef int ev
        cdef RequestParser parser = self.parser
        if ex is None:
            # The first bytes of the first request: only now does the connection need a
            # parser and an exchange (an idle connection costs neither).
            parser = self.parser = RequestParser(
                self.plan.max_header_bytes, self.plan.max_headers, self.plan.max_target_bytes,
                self.plan.max_body_bytes)
            parser.underscores = self.plan.underscores
            parser.merge_slashes = self.plan.merge_slashes
            parser.semicolons = self.plan.semicolons
            ex = self.ex = _new_exchange(self.plan)
        while self.buf is not None and not self.closed:
            n = PyBytes_GET_SIZE(self.buf) - self.buf_off
            if n == 0 and not parser.head_done:
                # PERF: all consumed; dropping the buffer here keeps reading enabled
                # (pausing and resuming would cost two epoll_ctl calls per request).
                self.buf = None
                break
            if self.state == CS_EXCHANGE:
                if ex.request_complete:
                    break               # pipelined bytes wait for this response
                if ex.up is None and not ex.local_response and ex.body_buffer is None:
                    break               # upstream connection not attached yet
            elif self.state == CS_TUNNEL:
                break
            ev = parser.execute(PyBytes_AS_STRING(self.buf) + self.buf_off, n, &used)
            self.buf_off += used
            if ev == EV_NEED_MORE:
                self.buf = None
                if self.state == CS_IDLE and parser.in_message:
                    self.state = CS_HEAD
                    self.deadline = _now + self.plan.client_header
                break
            elif ev == EV_BODY:
                request_body(self, ex, parser.body_ptr, parser.body_len)
            elif ev == EV_HEAD:
                request_head(self, ex)
            elif ev == EV_DONE:
                request_done(self, ex)
            else:
                request_error(self, ex, parser.error_code)
                return
        forward_flush(self, ex)
        if (self.buf is not None and not self.closed
                and not (self.waiting() and PyBytes_GET_SIZE(self.buf) - self.buf_off
                         <= WAITING_READ_BYTES)):
            self.block_reading(BLOCK_PENDING, True)
        else:
            # A request waiting for a concurrency place or its rate limit token keeps
            # reading (up to a bound), so a client that leaves is noticed and frees it.
            self.block_reading(BLOCK_PENDING, False)

    cdef void on_proxy_bytes(self, bytes data) noexcept:
        """The start of a connection on a proxy_protocol listener.

        A trusted peer (the balancer) must send a valid PROXY header: its source address
        then stands for the peer everywhere (X-Forwarded-For, trust decisions, rate limit
        keys, the access log). An untrusted peer is a direct client: a PROXY header from it
        is refused, anything else is HTTP.
        """
        cdef ProxyHeader header
        cdef Py_ssize_t n, used
        cdef int seen
        try:
            if self.buf is None:
                self.buf = data
            else:
                self.buf = self.buf + data
            self.buf_off = 0
            n = PyBytes_GET_SIZE(self.buf)
            if not self.peer_trusted:
                seen = proxy_signature(<const unsigned char*>PyBytes_AS_STRING(self.buf), n)
                if seen == PROXY_SIG_PARTIAL:
                    return
                if seen == PROXY_SIG_FOUND:
                    self.buf = None
                    self.engine.proxy_failed(self.peer_ip, True)
                    self.close_transport()
                    return
                used = 0
            else:
                used = proxy_parse(<const unsigned char*>PyBytes_AS_STRING(self.buf), n,
                                   &header)
                if used == PROXY_NEED_MORE:
                    return
                if used == PROXY_MALFORMED:
                    self.buf = None
                    self.engine.proxy_failed(self.peer_ip, False)
                    self.close_transport()
                    return
                if header.family:
                    self.peer_ip = proxy_address_text(header.family, header.source)
                    self.peer_ip_bytes = self.peer_ip.encode("ascii")
                    # X-Forwarded-* from the connection are believed only if the client
                    # the balancer names is itself a trusted proxy.
                    self.peer_trusted = self.plan.is_trusted(self.peer_ip)
            self.state = CS_IDLE
            if used == n:
                self.buf = None
                return
            self.buf_off = used
            self.process()
            self.flush()
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    cdef inline bint waiting(self) noexcept:
        """The exchange waits for a concurrency place or a rate limit delay."""
        return self.ex.waiting_on is not None or self.ex.park_handle is not None

    cdef void end_exchange(self) noexcept:
        """The response is complete; wait for the next request or close."""
        cdef Exchange ex = self.ex
        record_finish(self, ex)
        self.state = CS_IDLE
        chain_cancel(self, ex)
        ex.clear()
        # The route's body limit held for that request only.
        self.parser.max_body_bytes = self.plan.max_body_bytes
        # A block for upstream back-pressure belongs to the exchange that is over.
        self.block_reading(BLOCK_UPSTREAM_FULL, False)
        if not ex.keep_alive or self.engine.draining:
            self.flush()
            self.close_transport()
            return
        self.deadline = _now + self.plan.keepalive_idle
        if self.buf is not None:
            self.process()

    # --- writing to the client ----------------------------------------------------------

    cdef int settle(self) except -1:
        """Move a pending response head out of the shared buffer before anyone reuses it."""
        if self.head_pending:
            self.head_pending = False
            self.out.append(_head_buffer.take())
        return 0

    cdef inline void count_sent(self, Py_ssize_t n) noexcept:
        self.sent += n
        self.engine.metrics.bytes_out += <uint64_t>n

    cdef Py_ssize_t pending_out(self) except -1:
        cdef Py_ssize_t n = _head_buffer.length if self.head_pending else 0
        for item in self.out:
            n += PyBytes_GET_SIZE(item)
        return n

    cdef void flush(self) noexcept:
        if not self.head_pending and not self.out:
            return              # PERF: most calls have nothing to write; no try for them
        try:
            self.settle()
            if self.closed:
                self.out.clear()
                return
            self.count_sent(self.pending_out())
            if len(self.out) == 1:
                self.transport.write(self.out[0])
            else:
                self.transport.writelines(self.out)
            self.out.clear()
        except BaseException as exc:
            self.out.clear()
            _internal_error(W_CLIENT, exc,
                            self.ex.request_id if self.state == CS_EXCHANGE else None)
            self.abort_transport()

    # --- failing ------------------------------------------------------------------------

    cdef void fail_internal(self, int where, object exc) noexcept:
        """A bug in the gateway: report it, fail this one connection, never the process.

        A request that has no answer yet gets 500 internal_error; once any of its answer is
        out (or queued), the connection is aborted: never a second status line, never a
        truncated body that looks complete."""
        cdef Exchange ex = self.ex
        cdef bint answer
        if ex is None:
            # Before the first request (connection_made): nothing to answer.
            _internal_error(where, exc, None)
            if not self.closed:
                self.abort_transport()
            return
        if ex.in_chain:
            # Raised by a chain step (run_request_steps has no try of its own).
            where = W_CHAIN
            ex.in_chain = False
        _internal_error(where, exc, ex.request_id if self.state == CS_EXCHANGE else None)
        if ex.up is not None:
            ex.up.client = None
            ex.up.abort()
            ex.up = None
        if self.closed:
            return
        if self.state == CS_EXCHANGE:
            answer = ex.status == 0 and not ex.response_started
        else:
            # A request begun but not yet whole is still a request the client sent.
            answer = self.state == CS_HEAD or (self.state == CS_IDLE and self.parser.in_message)
            if answer:
                ex.request_id = self.engine.new_request_id()
                if not ex.ex_open:
                    ex.begin_headless()
        if not answer:
            self.abort_transport()
            return
        ex.keep_alive = False
        relay_write_error(self, ex, E_INTERNAL, 0)
        self.flush()
        self.close_transport()

    cdef void close_transport(self) noexcept:
        record_finish(self, self.ex)
        if not self.closed:
            self.closed = True
            self.deadline = 0.0
            try:
                self.transport.close()
            except BaseException as exc:
                _internal_error(W_CLIENT, exc, None)

    cdef void abort_transport(self) noexcept:
        record_finish(self, self.ex)
        if not self.closed:
            self.closed = True
            self.deadline = 0.0
            try:
                self.transport.abort()
            except BaseException as exc:
                _internal_error(W_CLIENT, exc, None)

    cdef void block_reading(self, int reason, bint on) noexcept:
        cdef int before = self.read_blocks
        if on:
            self.read_blocks |= reason
        else:
            self.read_blocks &= ~reason
        if self.closed or (before == 0) == (self.read_blocks == 0):
            return
        try:
            if self.read_blocks:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
        except BaseException as exc:
            self.fail_internal(W_CLIENT, exc)

    # --- timeouts -----------------------------------------------------------------------

    cdef int on_timeout(self) except -1:
        cdef Exchange ex = self.ex
        if self.closed:
            return 0
        if self.state == CS_IDLE:
            if self.parser is not None and self.parser.in_message:
                request_error(self, ex, E_CLIENT_HEADER_TIMEOUT)
            else:
                self.close_transport()
        elif self.state == CS_HEAD:
            request_error(self, ex, E_CLIENT_HEADER_TIMEOUT)
        elif self.state == CS_PROXY:
            # No complete PROXY header within client_header (an untrusted peer that sent
            # nothing is only an idle connection).
            if self.peer_trusted or self.buf is not None:
                self.engine.proxy_failed(self.peer_ip, False)
            self.buf = None
            self.close_transport()
        elif self.state == CS_TUNNEL:
            if ex.up is not None:
                ex.up.client = None
                ex.up.close()
                ex.up = None
            self.close_transport()
        elif self.state == CS_EXCHANGE:
            if ex.waiting_on is not None:
                # No concurrency place came free within queue_timeout.
                code = ex.waiting_on.code
                chain_leave_queue(self, ex)
                ex.keep_alive = False
                relay_local_error(self, ex, code, 0)
                if not self.closed:
                    self.flush()
                    self.close_transport()
            elif ex.hook_task is not None or ex.park_handle is not None:
                # An async policy hook did not finish within upstream_read.
                chain_cancel(self, ex)
                if ex.up is not None:
                    forward_error(self, ex, E_POLICY_TIMEOUT)
                else:
                    ex.keep_alive = False
                    relay_local_error(self, ex, E_POLICY_TIMEOUT, 0)
                    if not self.closed:
                        self.flush()
                        self.close_transport()
                self.flush()
            elif self.writing_paused:
                # The client is slow to read; the upstream waits on it, up to client_send.
                if _now - self.write_paused_at >= self.plan.client_send:
                    if ex.up is not None:
                        ex.up.client = None
                        ex.up.abort()
                        ex.up = None
                    self.abort_transport()
                else:
                    self.deadline = self.write_paused_at + self.plan.client_send
            elif self.read_blocks & BLOCK_UPSTREAM_FULL:
                # The upstream stopped taking the request (head or body) for send_timeout.
                forward_error(self, ex, E_UPSTREAM_SEND_TIMEOUT)
                self.flush()
            elif not ex.request_complete:
                request_error(self, ex, E_CLIENT_BODY_TIMEOUT)
            elif ex.up is not None:
                forward_error(self, ex, E_UPSTREAM_TIMEOUT)
                self.flush()
            else:
                self.deadline = _now + ex.read_timeout
        return 0

    def _wake(self, uint64_t serial):
        """A rate limit delay ran out, or a concurrency place came free: carry on."""
        self.ex.park_handle = None
        chain_hook_done(self, self.ex, None, None, False, serial)
