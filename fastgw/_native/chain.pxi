# chain.pxi: the policy chain stage: running the route's request steps (each one's own
# work is in steps.pxi), resuming them after a wait, a hook's answer or failure, response
# hooks, and what the limit steps share: request keys, queues and places held.


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
    """Run the chain's request steps from `start` (steps.pxi): each one lets the next run,
    answers, or waits. A step that raises is a bug in the gateway (a policy's own failure is
    answered as policy_error inside)."""
    cdef tuple steps = ex.chain.steps
    cdef Py_ssize_t i
    cdef int outcome
    # PERF: no try block on this path (every request of a route with a chain runs
    # it): an exception reaches the caller's, which reports it as the chain's.
    ex.in_chain = True
    for i in range(start, len(steps)):
        outcome = (<CoreStep>steps[i]).run(conn, ex, i)
        if outcome != HOOK_STEP_DONE:
            return outcome
    return HOOK_STEP_DONE


cdef void chain_hook_done(ClientProtocol conn, Exchange ex, object exc, object result,
                          bint response, uint64_t serial) noexcept:
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


cdef bint chain_response_hooks(ClientProtocol conn, Exchange ex, Py_ssize_t start) except *:
    """Run response hooks from `start`; False when one suspended or failed."""
    cdef tuple hooks = ex.chain.response_hooks
    cdef Py_ssize_t i
    cdef bint finished = False
    if ex.preq is None:
        ex.preq = _new_policy_request(conn)
    cdef ResponseHook hook
    for i in range(start, len(hooks)):
        hook = <ResponseHook>hooks[i]
        try:
            if not hook.is_async:
                hook.hook(ex.preq, ex.rview)
                continue
            coro = hook.hook(ex.preq, ex.rview)
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


cdef bint chain_put_key(ClientProtocol conn, Exchange ex, HeadBuffer kb, int kind,
                        object arg) except *:
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
        if kind == RL_KEY_CONSUMER:
            value = ex.consumer
        else:
            claims = ex.claims
            value = claims.get(arg) if isinstance(claims, dict) else None
        if value is None:
            return False
        kb.put_bytes(str(value).encode("utf-8"))
    return True
