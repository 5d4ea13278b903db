# upstream.pxi: upstream targets, their pools of idle keep-alive connections, how a pool
# chooses a target for an exchange (TargetSelector), and the protocol that speaks to one
# upstream connection on behalf of one client exchange.
#
# A target is shared by every Plan that names the same host:port, so a reload keeps the
# warm connections, its health flag and its in-flight count. Connecting is the only place
# that creates a coroutine: a pooled connection is taken and used synchronously.

import asyncio as _asyncio


cdef class UpstreamTarget:
    """One host:port with a LIFO pool of idle keep-alive connections."""

    def __init__(self, str host, int port):
        self.host = host
        self.port = port
        if port == 80:
            self.host_header = host.encode("idna")
        elif ":" in host:
            self.host_header = b"[%s]:%d" % (host.encode("ascii"), port)
        else:
            self.host_header = b"%s:%d" % (host.encode("idna"), port)
        self.label = (b"[%s]:%d" if ":" in host else b"%s:%d") % (host.encode("idna"), port)
        self.log_field = b',"target":"' + self.label + b'"'
        self.idle = []
        self.max_idle = 64
        self.idle_timeout = 60.0
        self.healthy = True

    def set_healthy(self, bint healthy):
        """Mark the target up or down for the selector of every pool that names it (what a
        health check calls). An exchange that holds the target keeps it."""
        self.healthy = healthy

    cdef UpstreamConnection acquire(self):
        cdef UpstreamConnection conn
        while self.idle:
            conn = <UpstreamConnection>self.idle.pop()
            if conn.alive:
                conn.reused = True
                return conn
        return None

    cdef void release(self, UpstreamConnection conn) noexcept:
        if not conn.alive:
            return
        if len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.client = None
        conn.pause_reading(False)    # an idle connection must notice the upstream closing
        conn.idle_since = _now
        self.idle.append(conn)

    cdef void forget(self, UpstreamConnection conn) noexcept:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    cdef void sweep(self, double now) noexcept:
        """Close idle connections older than idle_timeout (oldest are first in the list)."""
        cdef UpstreamConnection conn
        while self.idle:
            conn = <UpstreamConnection>self.idle[0]
            if conn.alive and now - conn.idle_since < self.idle_timeout:
                break
            self.idle.pop(0)
            conn.close()

    def close_idle(self):
        cdef UpstreamConnection conn
        while self.idle:
            conn = <UpstreamConnection>self.idle.pop()
            conn.close()

    @property
    def idle_count(self):
        return len(self.idle)


async def _connect_upstream(UpstreamTarget target, ClientProtocol client, object loop,
                            double timeout):
    """Open one connection to `target` within `timeout` seconds (the client's route's) and
    hand it to `client` (or to the pool)."""
    cdef UpstreamConnection conn
    try:
        _, conn = await _asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(target), target.host, target.port),
            timeout,
        )
    except _asyncio.TimeoutError:
        target.failures += 1
        forward_connect_failed(client, client.ex, E_UPSTREAM_CONNECT_TIMEOUT)
        return
    except (OSError, ValueError):
        target.failures += 1
        forward_connect_failed(client, client.ex, E_UPSTREAM_CONNECT_FAILED)
        return
    except Exception as exc:
        # Not the upstream's doing: a bug on our side of the connect (CancelledError, a
        # BaseException, still ends the task at shutdown).
        client.fail_internal(W_UPSTREAM, exc)
        return
    target.failures = 0
    forward_connected(client, client.ex, conn)


@cython.auto_pickle(False)
cdef class TargetSelector:
    """How a pool chooses the target of an exchange: the one seam balancers plug into.

    The core calls `pick(pool, conn, ex)`, a C method: a built-in selector overrides it, so
    the request path runs no Python. What a selector reads the core keeps up to date: each
    target's `healthy` flag and its `in_flight` count (exchanges given the target and not
    yet ended, however they end). A selector serves one pool and may keep state for it.

    A selector written in Python subclasses this class and defines `select(pool, request)`:
    this class's `pick` calls it with a SelectionRequest and checks that the answer is one of
    the pool's targets. Passing over targets that are down is the selector's job.
    """

    cdef UpstreamTarget pick(self, UpstreamPool pool, ClientProtocol conn, Exchange ex):
        cdef SelectionRequest request = SelectionRequest.__new__(SelectionRequest)
        request.conn = conn
        request.ex = ex
        try:
            chosen = self.select(pool, request)
        finally:
            request.conn = None
            request.ex = None
        for target in pool.targets:
            if target is chosen:
                return <UpstreamTarget>chosen
        raise ValueError(f"{type(self).__name__}.select() returned {chosen!r}, "
                         f"not a target of upstream {pool.name!r}")

    def select(self, UpstreamPool pool, request):
        """The target of `pool` for `request` (a SelectionRequest, None outside a request)."""
        raise NotImplementedError(f"{type(self).__name__} defines no select()")


@cython.final
@cython.auto_pickle(False)
cdef class SmoothWeightedRoundRobin(TargetSelector):
    """Smooth weighted round robin (nginx's algorithm) over the targets that are up: an even
    spread by weight, no randomness. A target marked down takes no turn and its weight
    leaves the total. When every target is down it chooses among all of them as if they
    were up: failing open sends the request somewhere that may answer, rather than failing
    it in the gateway (Envoy's panic mode does so; nginx fails that one request with 502
    and marks every peer live again)."""

    cdef UpstreamTarget pick(self, UpstreamPool pool, ClientProtocol conn, Exchange ex):
        cdef int best
        if pool.count == 1:
            return <UpstreamTarget>pool.targets[0]
        best = self.turn(pool, True)
        if best < 0:
            best = self.turn(pool, False)
        return <UpstreamTarget>pool.targets[best]

    cdef int turn(self, UpstreamPool pool, bint up_only) noexcept:
        """One round: every candidate gains its weight, the largest wins and pays the total
        (the first index on a tie). -1 when no target is a candidate."""
        cdef int i, best = -1, total = 0
        for i in range(pool.count):
            if up_only and not (<UpstreamTarget>pool.targets[i]).healthy:
                continue
            self.current[i] += pool.weights[i]
            total += pool.weights[i]
            if best < 0 or self.current[i] > self.current[best]:
                best = i
        if best >= 0:
            self.current[best] -= total
        return best

    def select(self, UpstreamPool pool, request=None):
        """The next target in the sequence (the request is not read)."""
        return self.pick(pool, None, None)


@cython.final
@cython.auto_pickle(False)
cdef class SelectionRequest:
    """The request a selector written in Python chooses a target for: read-only, and only
    during that select() call."""

    def __init__(self):
        raise TypeError("SelectionRequest objects are made by the gateway")

    cdef RequestParser parser(self):
        if self.conn is None:
            raise RuntimeError("a SelectionRequest is readable only during select()")
        return self.conn.parser

    @property
    def method(self):
        cdef RequestParser p = self.parser()
        return PyBytes_FromStringAndSize(p.head + p.method_off, p.method_len).decode("ascii")

    @property
    def path(self):
        """The normalised path the route matched (before strip_prefix or rewrite)."""
        cdef RequestParser p = self.parser()
        return PyBytes_FromStringAndSize(p.path, p.path_len).decode("latin-1")

    @property
    def client_ip(self):
        """The client's address, as rate limits and X-Forwarded-For see it."""
        self.parser()
        return request_client_ip(self.conn, self.ex).decode("latin-1")

    def header(self, str name):
        """The first request field of that name (any case), or None."""
        cdef RequestParser p = self.parser()
        cdef bytes lower = name.lower().encode("latin-1")
        cdef int i
        for i in range(p.n_headers):
            if _name_is(p.head + p.hdr_name_off[i], p.hdr_name_len[i], lower):
                return PyBytes_FromStringAndSize(p.head + p.hdr_value_off[i],
                                                 p.hdr_value_len[i]).decode("latin-1")
        return None


@cython.final
cdef class UpstreamPool:
    """The targets of one named upstream, and the selector that chooses among them."""

    def __init__(self, str name, list targets, list weights):
        if not targets or len(targets) > 64:
            raise ValueError("an upstream needs 1 to 64 targets")
        self.name = name
        self.metric_slot = -1
        self.log_field = b',"upstream":' + _orjson.dumps(name)
        self.targets = tuple(targets)
        self.count = len(targets)
        for i in range(self.count):
            self.weights[i] = weights[i]
        self.set_selector(SmoothWeightedRoundRobin())

    def set_selector(self, TargetSelector selector not None):
        """Choose targets with `selector` from the next exchange on. A selector serves one
        pool; a reload makes new pools, each with smooth weighted round robin."""
        if selector.bound:
            raise ValueError("this selector serves a pool already")
        selector.bound = True
        self.selector = selector

    @property
    def target_list(self):
        return list(self.targets)


cdef class UpstreamConnection:
    """asyncio protocol for one upstream connection; serves one exchange at a time."""

    def __init__(self, UpstreamTarget target):
        self.target = target
        self.parser = ResponseParser()
        self.alive = False

    def connection_made(self, transport):
        self.transport = transport
        self.alive = True
        self.target.open_connections += 1
        self.target.connects += 1

    cdef void start(self, ClientProtocol client, int method_id) noexcept:
        self.client = client
        self.got_bytes = False
        self.parser.set_request(method_id)

    cdef void close(self) noexcept:
        if self.alive:
            self.alive = False
            try:
                self.transport.close()
            except BaseException as exc:
                _internal_error(W_UPSTREAM, exc, None)

    cdef void abort(self) noexcept:
        if self.alive:
            self.alive = False
            try:
                self.transport.abort()
            except BaseException as exc:
                _internal_error(W_UPSTREAM, exc, None)

    def data_received(self, bytes data):
        if self.tunnel:
            if self.client is not None:
                self.client.deadline = _now + self.client.ex.read_timeout
                self.client.count_sent(PyBytes_GET_SIZE(data))
                try:
                    self.client.transport.write(data)
                except BaseException as exc:
                    self.client.fail_internal(W_UPSTREAM, exc)
            return
        if self.client is None:
            # An idle connection must stay silent; anything else means it is unusable.
            self.close()
            return
        self.got_bytes = True
        forward_touch(self.client, self.client.ex)
        self.feed(data, 0)

    cdef void release_hold(self) noexcept:
        """The response head went out after an async hook: parse what arrived meanwhile."""
        cdef bytes data = self.held_data
        self.held = False
        self.held_data = None
        if self.client is not None:
            self.pause_reading(self.client.writing_paused)
        if data is not None and self.client is not None:
            self.feed(data, self.held_off)
        if self.lost_while_held:
            self.lost_while_held = False
            self.on_lost()

    cdef void feed(self, bytes data, Py_ssize_t off) noexcept:
        cdef ClientProtocol client = self.client
        cdef Py_ssize_t used = 0, n = PyBytes_GET_SIZE(data)
        cdef const char* base = PyBytes_AS_STRING(data)
        cdef int ev
        while True:
            ev = self.parser.execute(base + off, n - off, &used)
            off += used
            if ev == EV_NEED_MORE:
                break
            elif ev == EV_BODY:
                relay_body(client, client.ex, self.parser.body_ptr, self.parser.body_len)
            elif ev == EV_HEAD:
                if self.parser.framing == FRAMING_TUNNEL:
                    self.tunnel = True
                    relay_head(client, client.ex, self.parser)
                    client.flush()          # the 101 head before any tunnelled byte
                    if off < n:
                        client.count_sent(n - off)
                        try:
                            client.transport.write(data[off:])
                        except BaseException as exc:
                            client.fail_internal(W_UPSTREAM, exc)
                    break
                relay_head(client, client.ex, self.parser)
                if client.ex.response_hold and self.client is client:
                    # PERF: no copy; the rest of this read waits with the connection paused.
                    self.held = True
                    self.held_data = data
                    self.held_off = off
                    self.pause_reading(True)
                    break
            elif ev == EV_DONE:
                # Bytes after a complete response that nobody asked for: never reuse.
                self.finish_exchange(client, off == n)
                break
            else:
                self.abort()
                forward_error(client, client.ex, self.parser.error_code)
                break
            if self.client is not client:
                break
        client.flush()

    cdef void finish_exchange(self, ClientProtocol client, bint clean) noexcept:
        cdef bint reusable = clean and self.parser.keep_alive and client.ex.request_complete
        if reusable and client.ex.request_framing != FRAMING_NONE:
            # The upstream may answer before it took the whole body: such a connection
            # still has our bytes to write and cannot carry another request.
            try:
                reusable = self.transport.get_write_buffer_size() == 0
            except BaseException as exc:
                _internal_error(W_UPSTREAM, exc, None)
                reusable = False
        self.client = None
        if reusable:
            self.target.release(self)
        else:
            self.close()
        relay_done(client, client.ex)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.alive = False
        self.target.open_connections -= 1
        self.target.forget(self)
        if self.held:
            self.lost_while_held = True      # finish the held bytes first
            return
        self.on_lost()

    cdef void on_lost(self) noexcept:
        cdef ClientProtocol client = self.client
        cdef int ev
        self.client = None
        if client is None:
            return
        if self.tunnel:
            relay_tunnel_closed(client, client.ex)
            return
        if not self.got_bytes:
            forward_lost(client, client.ex, self.reused)
            return
        ev = self.parser.feed_eof()
        if ev == EV_DONE:
            relay_done(client, client.ex)
        else:
            forward_error(client, client.ex,
                          E_UPSTREAM_TRUNCATED if ev == EV_ERROR else E_UPSTREAM_RESET)
        client.flush()

    def pause_writing(self):
        if self.client is not None:
            forward_full(self.client, self.client.ex, True)

    def resume_writing(self):
        if self.client is not None:
            forward_full(self.client, self.client.ex, False)

    cdef void pause_reading(self, bint paused) noexcept:
        if not self.alive or paused == self.reading_paused or (self.held and not paused):
            return
        self.reading_paused = paused
        try:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
        except BaseException as exc:
            _internal_error(W_UPSTREAM, exc, None)
