"""The admin API: health, status, effective config, routes, upstreams and reload over HTTP."""

from fastgw.admin.server import AdminServer

__all__ = ["AdminServer"]
