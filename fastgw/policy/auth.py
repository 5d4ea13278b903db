"""What authentication policies share: falling through to the next one, the anonymous
consumer, and the refusal (401 with WWW-Authenticate, in the JSON error format).

Several authentication policies on one route are alternatives: the request passes when one
of them accepts it. A policy that cannot authenticate the client notes why and lets the
next authentication policy of the chain try (`auth_fallthrough`, set by the plan); the last
one refuses with the most telling failure seen (a wrong credential says more than a missing
one) and every challenge, unless a failed policy names an `anonymous:` consumer: the
request then goes on as that consumer (X-Anonymous-Consumer: true upstream), as Kong does.
An error while checking (a key server down, a bug) never lets a request through: it is a
failure too (`auth_unavailable`, 503, or policy_error).

A policy in Python subclasses AuthPolicy and, in `on_request`, returns
`self.accept(request, consumer, claims)` or `self.reject(request, code)`; one compiled into
the core (key_auth) does the same in C (steps.pxi).
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastgw.policy.base import Policy, PolicyConfig, PolicyConfigError, ProvisionContext, Response
from fastgw.policy.consumers import Consumer, ConsumerTable

__all__ = ["AuthConfig", "AuthPolicy", "FAILURE_CODES"]

# The stable codes an authentication policy fails with.
FAILURE_CODES = (
    "credentials_missing",
    "credentials_invalid",
    "token_expired",
    "token_not_yet_valid",
    "token_audience",
    "token_issuer",
    "forbidden",
    "auth_unavailable",
)


class AuthConfig(PolicyConfig, kw_only=True):
    """Options every authentication policy has."""

    # A consumer (by name or id) a failure falls back to instead of a 401.
    anonymous: str | None = None


class AuthPolicy(Policy):
    """Base of authentication policies; see the module docstring."""

    # The plan looks for these: routes with one drop the client's X-Consumer-* fields, and
    # `fastgw check` warns about an acl that no authentication runs before.
    authenticates: ClassVar[bool] = True
    # The WWW-Authenticate challenge a refusal carries ("Basic realm=...", "Bearer").
    challenge: str | None = None
    # A later authentication policy in the same chain may still accept the client; set by
    # the plan before compile_core.
    auth_fallthrough: bool = False

    def __init__(self, config: Any, context: ProvisionContext) -> None:
        super().__init__(config, context)
        self.consumers: ConsumerTable = (
            context.consumers if context.consumers is not None else ConsumerTable()
        )
        self.anonymous: Consumer | None = None
        name = getattr(config, "anonymous", None)
        if name is not None:
            self.anonymous = self.consumers.get(name)
            if self.anonymous is None:
                raise PolicyConfigError(
                    f"anonymous consumer {name!r} is not in consumers",
                    "anonymous",
                    expected="the name or id of a consumer listed under consumers:",
                )

    def accept(
        self,
        request: Any,
        consumer: Consumer | None,
        claims: dict[str, Any] | None = None,
        scope: str | None = None,
    ) -> None:
        """The client is `consumer` (None: a valid token of no known consumer)."""
        request.authenticate(consumer, claims, self.name or type(self).__name__, scope)
        return None

    def reject(self, request: Any, code: str, challenge: str | None = None) -> Response | None:
        """This policy could not authenticate the client: None when the chain goes on (a
        later policy may, or the anonymous consumer was taken), else the refusal."""
        result: Response | None = request.auth_failed(
            code,
            challenge if challenge is not None else self.challenge,
            self.anonymous,
            self.auth_fallthrough,
        )
        return result
