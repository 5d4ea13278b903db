"""A Python policy: only requests from allowed tenants reach the upstream.

Use it in a route's chain; fastgw finds the module beside the config file (or on sys.path,
or in a `python_path:` folder):

    policies:
      - "custom_policy:TenantGuard": {allow: [acme, globex], header: x-tenant}
"""

from __future__ import annotations

from typing import Any

from fastgw.policy import (
    Policy,
    PolicyConfig,
    PolicyConfigError,
    ProvisionContext,
    Response,
    check_header_name,
)


class TenantGuard(Policy):
    """Answer 403 unless the tenant header names an allowed tenant; tell the upstream which."""

    class Config(PolicyConfig):
        allow: tuple[str, ...]
        header: str = "x-tenant"

    def __init__(self, config: Config, context: ProvisionContext) -> None:
        super().__init__(config, context)
        if not config.allow:
            raise PolicyConfigError("no tenant is allowed: list at least one", "allow")
        for index, tenant in enumerate(config.allow):
            if not tenant or tenant != tenant.strip() or not tenant.isprintable():
                raise PolicyConfigError("invalid tenant name", f"allow[{index}]", got=repr(tenant))
        try:
            self.header = check_header_name(config.header)
        except ValueError as exc:
            raise PolicyConfigError(str(exc), "header") from None
        # Decided once here, so each request costs one header read and one set lookup.
        self.allowed = frozenset(config.allow)

    def on_request(self, request: Any) -> Response | None:
        tenant = request.headers.get(self.header)
        if tenant not in self.allowed:
            message = f"missing {self.header} header" if tenant is None else "tenant not allowed"
            return Response.error(403, "tenant_not_allowed", message, request.request_id)
        request.set_header("x-tenant-verified", tenant)
        request.scratch["tenant"] = tenant
        return None
