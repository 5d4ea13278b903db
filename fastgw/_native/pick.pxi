# pick.pxi: the pick stage: which upstream (the route's, or the one a policy chose) and
# which of its targets serves this exchange. The choice is the pool's selector's
# (TargetSelector, upstream.pxi); the count of exchanges on each target is kept here.


cdef void pick_target(ClientProtocol conn, Exchange ex) except *:
    cdef UpstreamPool pool = ex.action.pool
    cdef UpstreamTarget target
    if ex.preq is not None and ex.preq.new_pool is not None:
        pool = ex.preq.new_pool
    ex.pool_used = pool
    pick_release(ex)            # a second pick in one exchange gives the first target back
    target = pool.selector.pick(pool, conn, ex)
    target.in_flight += 1
    ex.target = target
    ex.target_held = True


cdef inline void pick_release(Exchange ex) noexcept:
    """The exchange lets go of its target: once, however it ends (record_finish). A retry
    on a fresh connection keeps the target, and so its count."""
    if ex.target_held:
        ex.target_held = False
        ex.target.in_flight -= 1
