# steps.pxd: the compiled request steps a chain runs, one class per kind (CoreStep.run through the
# vtable). (code: steps.pxi)

cdef class CoreStep:
    cdef readonly bint reads_request   # runs Python that reads the PolicyRequest

    # <- this fragment, chain
    cdef int run(self, ClientProtocol conn, Exchange ex, Py_ssize_t index) except -1


@cython.final
cdef class SyncHookStep(CoreStep):
    cdef readonly object hook


@cython.final
cdef class AsyncHookStep(CoreStep):
    cdef readonly object hook


# <- this fragment: run `async def hook(request)` as the step at `index`
cdef int step_await_hook(ClientProtocol conn, Exchange ex, object hook, Py_ssize_t index) except -1


@cython.final
cdef class RespondStep(CoreStep):
    cdef readonly int status
    cdef readonly bytes head             # status line and fields, each ending in CRLF
    cdef readonly bytes body


@cython.final
cdef class _RedirectLocation:
    cdef tuple template        # bytes, capture indexes of this pattern, variable codes
    cdef bytes query_join      # b"?" or b"&" before the kept query; None: the query is dropped


@cython.final
cdef class RedirectStep(CoreStep):
    cdef readonly int status
    cdef readonly bint keep_query
    cdef bytes head                      # the status line
    cdef dict by_pattern                 # pattern id -> _RedirectLocation


@cython.final
cdef class RateLimitStep(CoreStep):
    cdef readonly RateLimiter limiter


@cython.final
cdef class LeaseLimitStep(CoreStep):
    cdef readonly LeaseStep lease

    # <- this fragment
    cdef bint spend(self, ClientProtocol conn, Exchange ex) except *


@cython.final
cdef class ConcurrencyLimitStep(CoreStep):
    cdef readonly ConcurrencyLimiter limiter


cdef struct IpRule4:
    uint32_t net                # the network, host order, host bits zero
    uint32_t mask


cdef struct IpRule6:
    uint64_t net_hi             # the network's first and last 8 bytes, host order
    uint64_t net_lo
    uint64_t mask_hi
    uint64_t mask_lo


@cython.final
cdef class KeyAuthStep(CoreStep):
    cdef readonly bytes header           # lowercase field name the key comes in, or None
    cdef readonly bytes query            # query parameter the key comes in, or None
    cdef readonly bint hide_query        # send the query upstream without the key
    cdef dict keys                       # key -> (the key, Consumer), built at plan time
    cdef readonly object anonymous       # the consumer a failure falls back to, or None
    cdef readonly bint fallthrough       # a later authentication policy may still accept
    cdef str challenge                   # the WWW-Authenticate challenge

    # <- this fragment: the key the request carries (and where the query loses it), or None
    cdef bytes find_key(self, ClientProtocol conn, Exchange ex)


@cython.final
cdef class CachedAuthStep(CoreStep):
    cdef readonly bytes header           # lowercase field name the credential comes in
    cdef readonly str by                 # the policy's name, for the access log
    cdef readonly object hook            # the policy's async on_request, for a miss
    cdef readonly Py_ssize_t max_entries
    # field value -> (expires ns or 0, consumer, claims, upstream fields, groups)
    cdef dict entries


@cython.final
cdef class AclStep(CoreStep):
    cdef readonly frozenset allow        # groups one of which the consumer must be in
    cdef readonly frozenset deny         # groups none of which it may be in
    cdef readonly str scope_claim        # the claim whose scopes `require` lists, or None
    cdef readonly frozenset require


@cython.final
cdef class IpRestrictionStep(CoreStep):
    cdef readonly tuple allow            # (packed network, prefix length), as given
    cdef readonly tuple deny
    cdef IpRule4* allow4                 # C tables of the same rules, malloc'd at plan time
    cdef IpRule4* deny4
    cdef IpRule6* allow6
    cdef IpRule6* deny6
    cdef Py_ssize_t n_allow4, n_deny4, n_allow6, n_deny6


@cython.final
cdef class ResponseHook:
    cdef readonly object hook
    cdef readonly bint is_async


# <- this fragment (AclStep): whether groups and claims pass the step's rules
cdef bint _acl_decide(AclStep self, frozenset groups, object claims) except -1
