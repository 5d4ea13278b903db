"""Policies: what runs on a route's requests and responses, built-in or written in Python.

Write one by subclassing `Policy`::

    from fastgw.policy import Policy, PolicyConfig, Response

    class Maintenance(Policy):
        class Config(PolicyConfig):
            message: str = "back soon"

        def on_request(self, request):
            return Response(503, self.config.message)

and use it in a chain as `"mymodule:Maintenance": {message: "..."}`, or register a name
through the `fastgw.policies` entry point group.
"""

from fastgw.policy.base import (
    HOOK_ABSENT,
    HOOK_ASYNC,
    HOOK_SYNC,
    Policy,
    PolicyConfig,
    PolicyConfigError,
    ProvisionContext,
    Response,
    check_header_name,
    check_header_value,
    hook_kind,
)
from fastgw.policy.chain import ProvisionedPolicy, RouteChain, RouteChains, build_route_chains
from fastgw.policy.registry import ENTRY_POINT_GROUP, PolicyRegistry

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOOK_ABSENT",
    "HOOK_ASYNC",
    "HOOK_SYNC",
    "Policy",
    "PolicyConfig",
    "PolicyConfigError",
    "PolicyRegistry",
    "ProvisionContext",
    "ProvisionedPolicy",
    "Response",
    "RouteChain",
    "RouteChains",
    "build_route_chains",
    "check_header_name",
    "check_header_value",
    "hook_kind",
]
