# pick.pxi: the pick stage: which upstream (the route's, or the one a policy chose) and
# which of its targets serves this exchange. The choice itself is the pool's (upstream.pxi).


cdef void pick_target(ClientProtocol conn, Exchange ex) except *:
    cdef UpstreamPool pool = ex.action.pool
    if ex.preq is not None and ex.preq.new_pool is not None:
        pool = ex.preq.new_pool
    ex.pool_used = pool
    ex.target = pool.pick()
