"""The running gateway: the embeddable Gateway (gateway.py), `fastgw run` (server.py), the
supervisor and its workers (supervisor.py, worker.py), every listening socket
(listeners.py), what a reload reports (reload.py) and --watch (watch.py).

`from fastgw import Gateway` is the public way in; this package's `__init__` imports
nothing, so that a module here can be used without loading the rest.
"""
