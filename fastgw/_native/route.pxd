# route.pxd: stage route: the router's match and the route's own limits. (code: route.pxi)

# <- request: find the route and take its action; False when the request was answered here
cdef bint route_request(ClientProtocol conn, Exchange ex, RequestParser p) except *
