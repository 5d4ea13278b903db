# http1.pxi
