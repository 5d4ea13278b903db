# chain.pxi: the policy chain stage: the route's request steps (compiled built-ins and
# Python hooks), their local answers, rate and concurrency limits, and response hooks.


cdef bint chain_start(ClientProtocol conn, Exchange ex, RequestParser p) except *:
    """The route has a chain: run its request steps now, or once the body a policy reads
    is whole. True when the request goes on upstream now."""
    cdef CoreChain chain = ex.chain
    cdef int outcome
    if chain.python_hooks:
        ex.preq = _new_policy_request(conn)
        if chain.body_limit and p.framing == FRAMING_NONE:
            ex.preq.body = b""
    if chain.body_limit and p.framing != FRAMING_NONE:
        if p.framing == FRAMING_LENGTH and p.content_length > chain.body_limit:
            relay_local_error(conn, ex, E_BODY_TOO_LARGE, 0)
            return False
        # A policy reads the body: take it whole first, run the chain at its end.
        ex.body_buffer = bytearray()
        if p.expect_continue:
            conn.out.append(_CONTINUE)
            ex.continue_sent = True
        conn.deadline = _now + conn.plan.client_body_idle
        return False
    outcome = chain_run(conn, ex, 0)
    ex.in_chain = False
    return outcome == HOOK_STEP_DONE


cdef int chain_run(ClientProtocol conn, Exchange ex, Py_ssize_t start) except -1:
    """Run the chain's request steps from `start`. A step that raises is a bug in the
    gateway (a policy's own failure is answered as policy_error inside)."""
    cdef tuple steps = ex.chain.steps
    cdef Py_ssize_t i
    cdef int kind, outcome
    cdef bint finished = False
    # PERF: no try block on this path (every request of a route with a chain runs
    # it): an exception reaches the caller's, which reports it as the chain's.
    ex.in_chain = True
    for i in range(start, len(steps)):
        kind, payload = steps[i]
        if kind == STEP_LEASE:
            if chain_lease_check(conn, ex, <LeaseStep>payload):
                continue
            # No leased token to spend: the policy's own (async) check decides.
            kind = STEP_PY_ASYNC
            payload = (<LeaseStep>payload).slow
        if kind == STEP_PY_SYNC:
            try:
                result = payload(ex.preq)
            except BaseException as exc:
                chain_failed(conn, ex, exc)
                return HOOK_STEP_ANSWERED
            if result is not None:
                chain_answer_policy(conn, ex, result)
                return HOOK_STEP_ANSWERED
        elif kind == STEP_PY_ASYNC:
            # PERF: drive the coroutine ourselves; a hook that never really waits
            # finishes here without an asyncio Task.
            try:
                coro = payload(ex.preq)
                blocked_on = _coroutine_step(coro, &finished)
            except BaseException as exc:
                chain_failed(conn, ex, exc)
                return HOOK_STEP_ANSWERED
            if finished:
                if blocked_on is not None:
                    chain_answer_policy(conn, ex, blocked_on)
                    return HOOK_STEP_ANSWERED
                continue
            ex.hook_index = i + 1
            ex.hook_task = conn.engine.loop.create_task(
                _resume_hook(conn, coro, blocked_on, False, ex.exchange_serial))
            # A hook that hangs is cut off like an upstream that does not answer.
            conn.deadline = _now + ex.read_timeout
            return HOOK_STEP_SUSPENDED
        elif kind == STEP_RATE_LIMIT:
            outcome = chain_rate_check(conn, ex, <RateLimiter>payload, i)
            if outcome != HOOK_STEP_DONE:
                return outcome
        elif kind == STEP_CONCURRENCY:
            outcome = chain_concurrency_check(conn, ex, <ConcurrencyLimiter>payload, i)
            if outcome != HOOK_STEP_DONE:
                return outcome
        elif kind == STEP_RESPOND:
            chain_answer_prebuilt(conn, ex, payload)
            return HOOK_STEP_ANSWERED
        else:
            chain_answer_redirect(conn, ex, (<dict>payload)[ex.match.pattern_id])
            return HOOK_STEP_ANSWERED
    return HOOK_STEP_DONE


cdef void chain_hook_done(ClientProtocol conn, Exchange ex, object exc, object result, bint response,
                       uint64_t serial) noexcept:
    """An async hook that had to wait is finished: carry on where the chain stopped."""
    cdef int outcome
    if conn.closed or conn.state != CS_EXCHANGE or serial != ex.exchange_serial:
        return                      # the exchange it belonged to ended without it
    ex.hook_task = None
    try:
        if response:
            ex.response_hold = False
            if exc is not None:
                chain_log_failure(conn, ex, exc)
                forward_error(conn, ex, E_POLICY_ERROR)
            elif chain_response_hooks(conn, ex, ex.hook_index) and ex.up is not None:
                relay_write_head(conn, ex, ex.up.parser)
                ex.up.release_hold()
            conn.flush()
            return
        if exc is not None:
            chain_failed(conn, ex, exc)
        elif result is not None:
            chain_answer_policy(conn, ex, result)
        else:
            outcome = chain_run(conn, ex, ex.hook_index)
            ex.in_chain = False
            if outcome == HOOK_STEP_DONE:
                forward_request(conn, ex)
        conn.process()
        conn.flush()
    except BaseException as exc:
        conn.fail_internal(W_HOOK, exc)


cdef void chain_cancel(ClientProtocol conn, Exchange ex) noexcept:
    cdef object task = ex.hook_task
    cdef object handle = ex.park_handle
    ex.hook_task = None
    ex.park_handle = None
    ex.response_hold = False
    chain_leave_queue(conn, ex)
    if handle is None and task is None:
        return              # PERF: every exchange ends here; most had nothing to cancel
    try:
        if handle is not None:
            handle.cancel()
        if task is not None:
            task.cancel()
    except BaseException as exc:
        _internal_error(W_HOOK, exc, None)


cdef void chain_log_failure(ClientProtocol conn, Exchange ex, object exc):
    _policy_log.error("policy failed on route %r, request %s", ex.action.name,
                      ex.request_id.decode("ascii"), exc_info=exc)


cdef void chain_failed(ClientProtocol conn, Exchange ex, object exc):
    chain_log_failure(conn, ex, exc)
    relay_local_error(conn, ex, E_POLICY_ERROR, 0)


cdef void chain_answer_policy(ClientProtocol conn, Exchange ex, object response) except *:
    """A hook returned a Response: send it instead of going upstream."""
    cdef HeadBuffer b = _head_buffer
    try:
        status = response.status
        body = response.body
        fields = tuple(response.headers)
        if type(body) is not bytes or type(status) is not int or not 200 <= status <= 599:
            raise TypeError(f"a hook must return fastgw.policy.Response or None, "
                            f"got {response!r}")
        for name, value in fields:
            # Checked again here: a Response's attributes can be changed after it
            # was made, and these bytes go to the wire as they are.
            if type(name) is not bytes or type(value) is not bytes:
                raise TypeError("Response.headers must be (bytes, bytes) pairs")
            check_field(name.decode("latin-1"), value.decode("latin-1"))
    except BaseException as exc:
        chain_failed(conn, ex, exc)
        return
    relay_start_local(conn, ex)
    b.put_bytes(status_line(status))
    # Response validated its fields when it was made (names, values, no framing).
    for name, value in fields:
        b.put_bytes(<bytes>name)
        b.put_bytes(b": ")
        b.put_bytes(<bytes>value)
        b.put_bytes(_CRLF)
    relay_finish_local(conn, ex, <bytes>body, status)


cdef void chain_answer_prebuilt(ClientProtocol conn, Exchange ex, tuple payload) except *:
    """direct_response: status line and fields were serialised at plan time."""
    relay_start_local(conn, ex)
    _head_buffer.put_bytes(<bytes>payload[0])
    relay_finish_local(conn, ex, <bytes>payload[1], payload[2])


cdef void chain_answer_redirect(ClientProtocol conn, Exchange ex, tuple payload) except *:
    cdef HeadBuffer b = _head_buffer
    cdef RequestParser p = conn.parser
    relay_start_local(conn, ex)
    b.put_bytes(<bytes>payload[0])
    b.put_bytes(b"location: ")
    forward_put_template(conn, ex, <tuple>payload[1], True)
    if payload[2] is not None and p.has_query:
        b.put_bytes(<bytes>payload[2])
        b.put(p.head + p.query_off, p.query_len)
    b.put_bytes(_CRLF)
    relay_finish_local(conn, ex, b"", payload[3])


cdef bint chain_response_hooks(ClientProtocol conn, Exchange ex, Py_ssize_t start) except *:
    """Run response hooks from `start`; False when one suspended or failed."""
    cdef tuple hooks = ex.chain.response_hooks
    cdef Py_ssize_t i
    cdef bint finished = False
    if ex.preq is None:
        ex.preq = _new_policy_request(conn)
    for i in range(start, len(hooks)):
        hook, is_async = hooks[i]
        try:
            if not is_async:
                hook(ex.preq, ex.rview)
                continue
            coro = hook(ex.preq, ex.rview)
            blocked_on = _coroutine_step(coro, &finished)
            if finished:
                continue
        except BaseException as exc:
            chain_log_failure(conn, ex, exc)
            forward_error(conn, ex, E_POLICY_ERROR)
            return False
        ex.hook_index = i + 1
        ex.response_hold = True
        ex.hook_task = conn.engine.loop.create_task(
            _resume_hook(conn, coro, blocked_on, True, ex.exchange_serial))
        conn.deadline = _now + ex.read_timeout
        return False
    return True


cdef int chain_build_key(ClientProtocol conn, Exchange ex, tuple key_kinds, int fallback) except -1:
    """A limiter's key for this request, built in _key_buffer: the key sources joined
    by NUL, each missing one replaced by the fallback."""
    cdef HeadBuffer kb = _key_buffer
    cdef Py_ssize_t i
    kb.length = 0
    for i in range(len(key_kinds)):
        kind, arg = key_kinds[i]
        if i:
            kb.put("\0", 1)
        if not chain_put_key(conn, ex, kb, kind, arg):
            chain_put_key(conn, ex, kb, fallback, None)
    return 0


cdef int chain_rate_check(ClientProtocol conn, Exchange ex, RateLimiter limiter, Py_ssize_t step) except -1:
    """A `rate_limit` step: decide, remember the fields every response of this exchange
    carries; answer 429 when a limit says no, or wait when its `delay` allows."""
    cdef RateDecision d
    chain_build_key(conn, ex, limiter.key_kinds, limiter.fallback)
    limiter.decide(_key_buffer.data, _key_buffer.length, ex.t_start, limiter.cost, &d)
    ex.rl_result = RL_ALLOWED if d.allowed else RL_LIMITED
    if limiter.headers != RL_HEADERS_NONE or not d.allowed:
        fields = _rate_limit_fields(limiter.headers, &d)
        ex.extra_head = fields if ex.extra_head is None else ex.extra_head + fields
    if not d.allowed:
        relay_local_error(conn, ex, E_RATE_LIMITED, 0)
        return HOOK_STEP_ANSWERED
    if d.wait_ns > 0:
        ex.hook_index = step + 1
        ex.park_handle = conn.engine.loop.call_later(
            d.wait_ns / 1e9, conn._wake, ex.exchange_serial)
        conn.deadline = _now + d.wait_ns / 1e9 + ex.read_timeout
        return HOOK_STEP_SUSPENDED
    return HOOK_STEP_DONE


cdef bint chain_lease_check(ClientProtocol conn, Exchange ex, LeaseStep step) except *:
    """Batched Redis limiting, the common case: spend a leased token without Python (a
    refill starts when half the lease is gone). False: the policy must decide."""
    cdef Lease lease
    cdef RateDecision d
    cdef double now = ex.t_start / 1e9     # CLOCK_MONOTONIC, as time.monotonic()
    chain_build_key(conn, ex, step.key_kinds, step.fallback)
    key = _key_buffer.take()
    found = step.leases.get(key)
    if found is None:
        return False
    lease = <Lease>found
    if lease.tokens < step.cost or now >= lease.expires:
        return False
    lease.tokens -= step.cost
    if lease.tokens * 2 < lease.want and lease.fetch is None:
        step.refill(key, lease)
    ex.rl_result = RL_ALLOWED
    if step.headers != RL_HEADERS_NONE:
        d.allowed = True
        d.limit = lease.limit
        d.remaining = lease.remaining + lease.tokens
        d.reset_s = _ceil_s(<int64_t>((lease.reset_at - now) * 1e9))
        d.retry_after_s = 0
        d.wait_ns = 0
        fields = _rate_limit_fields(step.headers, &d)
        ex.extra_head = fields if ex.extra_head is None else ex.extra_head + fields
    return True


cdef int chain_concurrency_check(ClientProtocol conn, Exchange ex, ConcurrencyLimiter limiter, Py_ssize_t step) except -1:
    """A `concurrency_limit` step: take a place, queue for one, or answer 503/429."""
    chain_build_key(conn, ex, limiter.key_kinds, limiter.fallback)
    key = _key_buffer.take()
    count = limiter.counts.get(key, 0)
    if count < limiter.max_inflight:
        limiter.counts[key] = count + 1
        if ex.held is None:
            ex.held = []
        ex.held.append((limiter, key))
        return HOOK_STEP_DONE
    queue = limiter.queues.get(key)
    if limiter.queue_max and (queue is None or len(queue) < limiter.queue_max):
        if queue is None:
            queue = limiter.queues[key] = _deque()
        queue.append((conn, ex.exchange_serial))
        ex.waiting_on = limiter
        ex.waiting_key = key
        ex.hook_index = step + 1
        conn.deadline = _now + limiter.queue_timeout
        return HOOK_STEP_SUSPENDED
    relay_local_error(conn, ex, limiter.code, 0)
    return HOOK_STEP_ANSWERED


cdef void chain_leave_queue(ClientProtocol conn, Exchange ex) noexcept:
    cdef ConcurrencyLimiter limiter = ex.waiting_on
    if limiter is None:
        return
    ex.waiting_on = None
    try:
        queue = limiter.queues.get(ex.waiting_key)
        if queue is not None:
            try:
                queue.remove((conn, ex.exchange_serial))
            except ValueError:
                pass
            if not queue:
                del limiter.queues[ex.waiting_key]
    except BaseException as exc:
        _internal_error(W_CHAIN, exc, ex.request_id)
    ex.waiting_key = None


cdef void chain_release_held(ClientProtocol conn, Exchange ex) noexcept:
    """The exchange is over: give each concurrency place to the next waiter, if any."""
    cdef ClientProtocol waiter
    cdef ConcurrencyLimiter limiter
    held, ex.held = ex.held, None
    try:
        for limiter, key in held:
            queue = limiter.queues.get(key)
            while queue:
                waiter, serial = queue.popleft()
                if (waiter.closed or waiter.ex.waiting_on is not limiter
                        or waiter.ex.exchange_serial != serial):
                    continue
                waiter.ex.waiting_on = None
                waiter.ex.waiting_key = None
                if waiter.ex.held is None:
                    waiter.ex.held = []
                waiter.ex.held.append((limiter, key))   # the place passes on: same count
                # Until it wakes, its queue deadline must not fire as another timeout.
                waiter.deadline = _now + waiter.ex.read_timeout
                conn.engine.loop.call_soon(waiter._wake, serial)
                break
            else:
                count = limiter.counts[key] - 1
                if count:
                    limiter.counts[key] = count
                else:
                    del limiter.counts[key]
            if queue is not None and not queue:
                limiter.queues.pop(key, None)
    except BaseException as exc:
        _internal_error(W_CHAIN, exc, ex.request_id)


cdef bint chain_put_key(ClientProtocol conn, Exchange ex, HeadBuffer kb, int kind, object arg) except *:
    """Append one key source's bytes; False when the request does not have it."""
    cdef RequestParser p = conn.parser
    cdef Py_ssize_t i, n
    cdef int index
    if kind == RL_KEY_CLIENT_IP:
        kb.put_bytes(request_client_ip(conn, ex))
    elif kind == RL_KEY_ROUTE:
        kb.put_bytes(ex.action.name_bytes)
    elif kind == RL_KEY_HEADER:
        n = PyBytes_GET_SIZE(<bytes>arg)
        for i in range(p.n_headers):
            if (p.hdr_name_len[i] == n
                    and _h1_name_is(p.head + p.hdr_name_off[i], PyBytes_AS_STRING(arg), n)):
                kb.put(p.head + p.hdr_value_off[i], p.hdr_value_len[i])
                return True
        return False
    elif kind == RL_KEY_PARAM:
        index = (<dict>arg).get(ex.match.pattern_id, -1)
        if index < 0:
            return False
        kb.put(p.path + ex.match.param_off[index], ex.match.param_len[index])
    else:
        # Who the client is, as an authentication policy earlier in the chain said.
        if ex.preq is None:
            return False
        if kind == RL_KEY_CONSUMER:
            value = ex.preq.consumer
        else:
            claims = ex.preq.claims
            value = claims.get(arg) if isinstance(claims, dict) else None
        if value is None:
            return False
        kb.put_bytes(str(value).encode("utf-8"))
    return True
