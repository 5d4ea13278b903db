"""The admin API: health, status, effective config, routes, upstreams and reload over HTTP."""

from fastgw.admin.server import AdminServer
from fastgw.admin.view import AdminView

__all__ = ["AdminServer", "AdminView"]
