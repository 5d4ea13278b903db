# pick.pxd: stage pick: the upstream and its selector's target; the in-flight count. (code:
# pick.pxi)

# <- forward
cdef void pick_target(ClientProtocol conn, Exchange ex) except *


# <- this fragment, record: the exchange lets go of its target: once, however it ends
#    (record_finish) (inline in pick.pxi)
cdef void pick_release(Exchange ex) noexcept
