"""The `ip_restriction` policy: allow and deny lists of networks, checked in the compiled core.

    policies:
      - ip_restriction:
          allow: ["10.0.0.0/8", "2001:db8::/32"]   # a non-empty allow refuses the rest
          deny: ["10.9.0.0/16"]                    # deny wins over allow

The client address is the one the core derives through `trusted_proxies` (the address
X-Forwarded-For and rate-limit keys use); an IPv4-mapped IPv6 client (`::ffff:10.1.2.3`)
matches IPv4 rules. A bare address is one host (/32 or /128). Networks are strict: host bits
set (`10.0.0.1/8`) are a config error, so a typo cannot widen a rule. A refusal is 403
`ip_forbidden`.
"""

from __future__ import annotations

import ipaddress

from fastgw import _core
from fastgw.policy.base import Policy, PolicyConfig, PolicyConfigError, ProvisionContext
from fastgw.policy.compiled import CompileContext, CoreParts

__all__ = ["IpRestriction", "IpRestrictionConfig", "parse_networks"]

Network = tuple[bytes, int]


class IpRestrictionConfig(PolicyConfig, kw_only=True):
    """Networks (CIDR or bare addresses) whose clients pass (`allow`) or are refused (`deny`)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


def parse_networks(entries: tuple[str, ...], field: str) -> tuple[Network, ...]:
    """Each entry as (packed network, prefix length); PolicyConfigError at `field[i]`."""
    networks: list[Network] = []
    for index, entry in enumerate(entries):
        try:
            network = ipaddress.ip_network(entry.strip(), strict=True)
        except ValueError as exc:
            raise PolicyConfigError(
                f"invalid network {entry!r}: {exc}",
                (field, index),
                expected="an address or a CIDR network with no host bits set, like "
                "10.0.0.0/8 or 2001:db8::/32",
            ) from None
        networks.append((network.network_address.packed, network.prefixlen))
    return tuple(networks)


class IpRestriction(Policy):
    """Refuse clients by network (403 `ip_forbidden`); see the module docstring."""

    name = "ip_restriction"
    Config = IpRestrictionConfig

    def __init__(self, config: IpRestrictionConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        if not config.allow and not config.deny:
            raise PolicyConfigError(
                "ip_restriction needs at least one network in allow or deny",
                (),
                expected='allow: ["10.0.0.0/8"] or deny: ["192.0.2.0/24"]',
            )
        self.allow = parse_networks(config.allow, "allow")
        self.deny = parse_networks(config.deny, "deny")

    def compile_core(self, context: CompileContext) -> CoreParts:
        return CoreParts(steps=(_core.IpRestrictionStep(self.allow, self.deny),))
