"""The policy contract: what a policy is, what provisioning gives it, what a hook may return.

A policy is a class. fastgw decodes its `Config` from the route's chain entry, then calls
`__init__(config, context)` once per route that uses it ("provisioning": compile, load keys,
validate; raise PolicyConfigError to refuse). At request time the core calls `on_request` and
`on_response` (plain or `async def`); `close()` runs when the plan holding it is retired.
What the core runs for a policy is what its `compile_core` returns: the hooks, unless a
built-in compiles itself into the core's own steps (fastgw.policy.compiled).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from fastgw.config.redaction import redacted_repr

if TYPE_CHECKING:
    from fastgw.policy.compiled import CompileContext, CoreParts
    from fastgw.policy.consumers import ConsumerTable

__all__ = [
    "HOOK_ABSENT",
    "HOOK_ASYNC",
    "HOOK_SYNC",
    "Policy",
    "PolicyConfig",
    "PolicyConfigError",
    "ProvisionContext",
    "Response",
    "check_header_name",
    "check_header_value",
    "hook_kind",
]

HOOK_ABSENT = 0
HOOK_SYNC = 1
HOOK_ASYNC = 2

# RFC 9110 5.6.2: token = 1*tchar.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# RFC 9110 5.5: field values are VCHAR, SP, HTAB and obs-text; every other CTL (CR, LF and NUL
# included) could split a header or smuggle one.
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The core frames every response it writes itself and stamps the request id; a hook
# cannot choose either.
_FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
     "upgrade", "proxy-connection", "x-request-id"}
)  # fmt: skip


class PolicyConfigError(Exception):
    """Raised while provisioning when a policy's configuration cannot work.

    `at` locates the problem inside the policy's own config: "set.x-user-id", "allow[2]" or a
    sequence of keys and indexes. fastgw reports it as a ConfigError at the chain entry's
    `$.path` followed by `at`.
    """

    def __init__(
        self,
        message: str,
        at: str | Sequence[str | int] | None = None,
        *,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.at = at
        self.expected = expected
        self.got = got


class PolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base for policy `Config` classes: immutable, keyword-only, unknown keys rejected.

    Its repr hides secret-named fields (token, password, secret, api_key, client_secret)
    and URL passwords."""

    def __repr__(self) -> str:
        return redacted_repr(self)


@dataclass(frozen=True)
class ProvisionContext:
    """What a policy may know about where it runs, given once at provisioning."""

    route_name: str | None
    route_params: tuple[str, ...]
    path: str
    file: str | None = None
    # Every consumer of the configuration (fastgw.policy.consumers.ConsumerTable).
    consumers: ConsumerTable | None = None


def check_header_name(name: object) -> str:
    """Return `name` lowercased if it is an HTTP field name (a token); raise ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"a header name is a str, got {type(name).__name__}")
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {name!r}: use letters, digits and !#$%&'*+-.^_`|~")
    return name.lower()


def check_header_value(value: object) -> bytes:
    """Return `value` as UTF-8 bytes if it is a safe field value; raise ValueError.

    Refused: CR, LF, NUL and other control characters except HTAB, and leading or trailing
    whitespace (a parser would strip it, so it could never arrive as written).
    """
    if not isinstance(value, str):
        raise TypeError(f"a header value is a str, got {type(value).__name__}")
    found = _FORBIDDEN_IN_VALUE.search(value)
    if found is not None:
        raise ValueError(f"control character {found.group(0)!r} in header value {value!r}")
    if value != value.strip(" \t"):
        raise ValueError(f"leading or trailing whitespace in header value {value!r}")
    return value.encode()


class Response:
    """An answer a hook (or direct_response) gives instead of asking the upstream.

    `headers` is the complete list the core writes, content-type included, as lowercase
    `(name, value)` bytes pairs; the core adds framing (content-length) and x-request-id.
    A `str` body is sent as UTF-8, by default as text/plain.
    """

    __slots__ = ("body", "content_type", "headers", "status")

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[bytes, bytes], ...]

    def __init__(
        self,
        status: int,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"status is an int, got {type(status).__name__}")
        if not 200 <= status <= 599:
            # 1xx are interim answers that need a final one after them: never a whole answer.
            raise ValueError(f"status must be 200-599, got {status}")
        if isinstance(body, str):
            encoded = body.encode()
            default_type = "text/plain; charset=utf-8"
        elif isinstance(body, bytes | bytearray | memoryview):
            encoded = bytes(body)
            default_type = "application/octet-stream"
        else:
            raise TypeError(f"body is bytes or str, got {type(body).__name__}")
        pairs: list[tuple[bytes, bytes]] = []
        for name, value in (headers or {}).items():
            lowered = check_header_name(name)
            if lowered in _FRAMING_HEADERS:
                raise ValueError(f"header {name!r} is set by fastgw, not by a policy")
            if lowered == "content-type":
                if content_type is not None:
                    raise ValueError("content-type given both in headers and as content_type")
                content_type = value
                continue
            pairs.append((lowered.encode(), check_header_value(value)))
        if content_type is None:
            content_type = default_type if encoded else ""
        if content_type:
            pairs.insert(0, (b"content-type", check_header_value(content_type)))
        self.status = status
        self.body = encoded
        self.content_type = content_type
        self.headers = tuple(pairs)

    @classmethod
    def json(cls, status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
        """A JSON answer: `data` is encoded with msgspec (dicts, lists, Structs, ...)."""
        return cls(status, msgspec.json.encode(data), headers, "application/json")

    @classmethod
    def error(
        cls,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """fastgw's own error format: {"error": {"status", "code", "message", "request_id"}}."""
        error: dict[str, Any] = {"status": status, "code": code, "message": message}
        if request_id is not None:
            error["request_id"] = request_id
        return cls.json(status, {"error": error}, headers)

    def __repr__(self) -> str:
        return f"Response({self.status}, {len(self.body)} bytes, {self.content_type!r})"


class Policy:
    """Base class of every policy, built-in or third-party.

    Subclasses set `name` (the key in a chain entry; not needed for "module:attr"
    references), `Config` (a PolicyConfig subclass; unknown keys are rejected) and define
    `on_request` and/or `on_response`, each a plain or an `async def` method.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[msgspec.Struct]] = PolicyConfig
    # Bytes of the request body to read before on_request runs (request.body); 0: none.
    # Bodies are streamed, never buffered, unless a policy of the chain asks; a larger
    # body is answered with 413 body_too_large.
    needs_body: ClassVar[int] = 0

    def __init__(self, config: Any, context: ProvisionContext) -> None:
        self.config = config
        self.context = context

    def on_request(self, request: Any) -> Response | None:
        """Inspect or change the request; return a Response to answer now, None to go on."""
        return None

    def on_response(self, request: Any, response: Any) -> None:
        """Inspect or change the upstream's response head before it goes to the client."""

    def close(self) -> None:
        """Release what provisioning acquired; called once when the plan is retired."""

    def compile_core(self, context: CompileContext) -> CoreParts:
        """What the core runs for this policy on one route; asked once per route when the
        plan is built. Here: the hooks the class defines, each `def` or `async def` decided
        now. A built-in returns compiled steps instead (fastgw.policy.compiled)."""
        return context.hook_parts(self)


def hook_kind(policy: Policy) -> tuple[int, int]:
    """(on_request, on_response) each HOOK_ABSENT, HOOK_SYNC or HOOK_ASYNC.

    A hook is absent when the class does not override Policy's no-op; decided once at plan
    time so the request path never asks again.
    """
    return (_kind(policy, "on_request"), _kind(policy, "on_response"))


def _kind(policy: Policy, hook: str) -> int:
    if getattr(type(policy), hook, None) is getattr(Policy, hook):
        return HOOK_ABSENT
    method = getattr(policy, hook)
    return HOOK_ASYNC if inspect.iscoroutinefunction(method) else HOOK_SYNC
