"""The `acl` policy: which authenticated callers may pass, by consumer group or by scope.

    policies:
      - key_auth: {}                                  # or jwt, basic_auth, ...: first
      - acl: {allow: [billing], deny: [suspended]}
      - acl: {scopes: {claim: scope, require: ["orders:read"]}}

It runs after an authentication policy and decides on what that one found: the consumer's
groups (`allow`: one of them; `deny`: none of them; deny wins) and the scopes of a token
claim (a space-separated string, as OAuth 2.0 writes them, or a list: every `require`d
scope must be there). A request that no policy authenticated is 401
`credentials_missing`; a known caller who may not pass is 403 `forbidden`. Decided in the
compiled core.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from fastgw import _core
from fastgw.policy.base import Policy, PolicyConfig, PolicyConfigError, ProvisionContext
from fastgw.policy.compiled import CompileContext, CoreParts

__all__ = ["Acl", "AclConfig", "ScopesConfig"]

_GROUP = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:@-]+$")]


class ScopesConfig(PolicyConfig, kw_only=True):
    """The claim that lists the token's scopes, and the scopes a request needs (all)."""

    claim: Annotated[str, Meta(min_length=1)] = "scope"
    require: Annotated[tuple[Annotated[str, Meta(min_length=1)], ...], Meta(min_length=1)]


class AclConfig(PolicyConfig, kw_only=True):
    """Consumer groups that pass (`allow`) or are refused (`deny`), and required scopes."""

    allow: tuple[_GROUP, ...] = ()
    deny: tuple[_GROUP, ...] = ()
    scopes: ScopesConfig | None = None


class Acl(Policy):
    """Authorisation after authentication (see the module docstring)."""

    name = "acl"
    Config = AclConfig
    # `fastgw check` warns when no authentication policy runs before it.
    needs_identity = True

    def __init__(self, config: AclConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        if not (config.allow or config.deny or config.scopes):
            raise PolicyConfigError(
                "acl needs allow, deny or scopes",
                (),
                expected="allow: [group] or scopes: {require: [scope]}",
            )
        both = set(config.allow) & set(config.deny)
        if both:
            raise PolicyConfigError(
                f"groups both allowed and denied: {', '.join(sorted(both))}", "deny"
            )

    def compile_core(self, context: CompileContext) -> CoreParts:
        scopes = self.config.scopes
        return CoreParts(
            steps=(
                _core.AclStep(
                    self.config.allow,
                    self.config.deny,
                    None if scopes is None else scopes.claim,
                    () if scopes is None else scopes.require,
                ),
            )
        )
