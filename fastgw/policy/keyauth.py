"""The `key_auth` policy: API keys of consumers, checked in the compiled core.

    consumers:
      - name: alice
        credentials:
          - key_auth: {keys: ["${ALICE_KEY}", "${ALICE_OLD_KEY}"]}   # rotation: both work
    routes:
      - ...
        policies:
          - key_auth: {header: x-api-key, query: api_key, hide_credentials: true}

The key comes from the header (first) or the query parameter. It is looked up in a table
the plan builds from every consumer's keys and compared in constant time; the request then
carries the consumer (`request.consumer`, rate limit `key: consumer`, the access log) and
the upstream gets its X-Consumer-* fields. `hide_credentials` removes the header and the
query parameter before the upstream sees them. A request without a key is 401
`credentials_missing`, with a wrong one 401 `credentials_invalid`, both with
`WWW-Authenticate: Key` (unless `anonymous:` names a consumer to fall back to).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from fastgw import _core
from fastgw.policy.auth import AuthConfig, AuthPolicy
from fastgw.policy.base import PolicyConfigError, ProvisionContext, check_header_name
from fastgw.policy.compiled import CompileContext, CoreParts, HeaderOp

__all__ = ["KeyAuth", "KeyAuthConfig"]

_QUERY_NAME = r"^[A-Za-z0-9_.~-]+$"


class KeyAuthConfig(AuthConfig, kw_only=True):
    """Where the key comes from; `header: null` or `query: null` turns that source off."""

    header: str | None = "x-api-key"
    query: Annotated[str, Meta(pattern=_QUERY_NAME)] | None = None
    hide_credentials: bool = False
    realm: str | None = None


class KeyAuth(AuthPolicy):
    """API key authentication (see the module docstring)."""

    name = "key_auth"
    Config = KeyAuthConfig

    def __init__(self, config: KeyAuthConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        if config.header is None and config.query is None:
            raise PolicyConfigError(
                "key_auth needs a header or a query parameter to read the key from",
                (),
                expected="header: x-api-key or query: api_key",
            )
        self.header: bytes | None = None
        if config.header is not None:
            try:
                self.header = check_header_name(config.header).encode()
            except ValueError as exc:
                raise PolicyConfigError(str(exc), "header") from None
        self.query = None if config.query is None else config.query.encode()
        self.challenge = "Key" if config.realm is None else f'Key realm="{config.realm}"'
        if config.realm is not None and '"' in config.realm:
            raise PolicyConfigError("realm may not hold a double quote", "realm")

    def compile_core(self, context: CompileContext) -> CoreParts:
        step = _core.KeyAuthStep(
            self.header,
            self.query,
            self.consumers.keys,
            hide_query=self.config.hide_credentials,
            anonymous=self.anonymous,
            fallthrough=self.auth_fallthrough,
            challenge=self.challenge,
        )
        ops: tuple[HeaderOp, ...] = ()
        if self.config.hide_credentials and self.header is not None:
            ops = (HeaderOp("remove", self.header),)
        return CoreParts(steps=(step,), request_ops=ops)
