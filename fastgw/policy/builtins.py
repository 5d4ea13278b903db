"""The built-in policies the compiled core runs itself, and their value templates.

Each built-in validates its config at provisioning and compiles itself, in `compile_core`,
into the core's typed steps or header operations (fastgw.policy.compiled); no Python runs
for them per request.

Templates ("x-user: {id} via $client_ip") compile to tuples of parts: `bytes` (literal),
`("var", NAME)` for a request variable, `("param", NAME)` for a path capture. "$$" is a
literal "$", "{{" and "}}" literal braces; anything else after "$" or "{" must be a known
variable or a capture of the route, so a typo fails provisioning instead of leaking through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta

from fastgw import _core
from fastgw._core import MANAGED_FIELDS, REDIRECT_STATUSES
from fastgw.policy.acl import Acl
from fastgw.policy.base import (
    Policy,
    PolicyConfig,
    PolicyConfigError,
    ProvisionContext,
    Response,
    check_header_name,
    check_header_value,
)
from fastgw.policy.basic import BasicAuth
from fastgw.policy.compiled import CompileContext, CoreParts, HeaderOp
from fastgw.policy.cors import Cors
from fastgw.policy.introspection import OAuth2Introspection
from fastgw.policy.iprestrict import IpRestriction
from fastgw.policy.jwt import Jwt
from fastgw.policy.keyauth import KeyAuth
from fastgw.policy.ratelimit import ConcurrencyLimit, RateLimit
from fastgw.policy.validation import RequestValidation

__all__ = [
    "BUILTIN_POLICIES",
    "VARIABLES",
    "DirectResponse",
    "DirectResponseConfig",
    "HeadersConfig",
    "PathRewrite",
    "PathRewriteConfig",
    "Redirect",
    "RedirectConfig",
    "RequestHeaders",
    "ResponseHeaders",
    "Template",
    "parse_template",
]

# What the core can substitute: each is a value the parser already validated.
VARIABLES = ("client_ip", "request_id", "host", "method", "path", "route", "consumer")

Part = bytes | tuple[str, str]
Template = tuple[Part, ...]
At = Sequence[str | int]

_TEMPLATE_TOKEN = re.compile(
    r"\$\$|\{\{|\}\}"
    r"|\$(?P<var>[A-Za-z0-9_]*)"
    r"|\{(?P<param>[^{}]*)\}"
    r"|(?P<brace>[{}])"
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ESCAPES = {"$$": "$", "{{": "{", "}}": "}"}


def parse_template(
    text: str,
    route_params: Sequence[str],
    at: At = (),
    check_literal: Callable[[str], None] | None = None,
) -> Template:
    """Compile `text`; raise PolicyConfigError located by `at` for any mistake.

    `check_literal` vets each literal run (header values and URLs allow different bytes)
    and raises ValueError to refuse it.
    """
    parts: list[Part] = []
    literal: list[str] = []

    def flush() -> None:
        chunk = "".join(literal)
        literal.clear()
        if not chunk:
            return
        if check_literal is not None:
            try:
                check_literal(chunk)
            except ValueError as exc:
                raise PolicyConfigError(str(exc), at, got=repr(text)) from None
        parts.append(chunk.encode())

    position = 0
    for found in _TEMPLATE_TOKEN.finditer(text):
        literal.append(text[position : found.start()])
        position = found.end()
        token = found.group(0)
        if token in _ESCAPES:
            literal.append(_ESCAPES[token])
        elif found.group("brace") is not None:
            raise PolicyConfigError(
                f"single {token!r} in {text!r}",
                at,
                expected="{name} for a path capture, '{{' or '}}' for a literal brace",
            )
        elif found.group("var") is not None:
            flush()
            parts.append(("var", _variable(found.group("var"), text, at)))
        else:
            flush()
            parts.append(("param", _param(found.group("param"), text, route_params, at)))
    literal.append(text[position:])
    flush()
    return tuple(parts)


def _variable(name: str, text: str, at: At) -> str:
    if name not in VARIABLES:
        shown = f"${name}" if name else "'$' without a name"
        raise PolicyConfigError(
            f"unknown variable {shown} in {text!r}",
            at,
            expected="one of: " + ", ".join("$" + v for v in VARIABLES) + " ('$$' for '$')",
        )
    return name


def _param(name: str, text: str, route_params: Sequence[str], at: At) -> str:
    if name.startswith("*"):
        raise PolicyConfigError(f"write {{{name[1:]}}}, not {{{name}}}", at, got=repr(text))
    if not _IDENTIFIER.match(name):
        raise PolicyConfigError(
            f"invalid placeholder {{{name}}} in {text!r}",
            at,
            expected="{name} with a letter or '_' first ('{{' for a literal '{')",
        )
    if name not in route_params:
        raise PolicyConfigError(
            f"{{{name}}} is not captured by every path of the route",
            at,
            expected="one of: " + ", ".join(f"{{{p}}}" for p in route_params)
            if route_params
            else "no placeholder: the route captures nothing on every path",
        )
    return name


# --- request_headers / response_headers ---------------------------------------------------

# Framing and hop-by-hop fields (RFC 9110 7.6.1) are the core's alone on both sides.
_FRAMING = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
     "upgrade", "proxy-connection", "proxy-authenticate"}
)  # fmt: skip
# Fields fastgw derives itself (routing host, client address, request id) and framing: the
# core's list, which also guards the changes Python hooks make at request time.
_REQUEST_MANAGED = MANAGED_FIELDS
_RESPONSE_MANAGED = _FRAMING | {"x-request-id"}


class HeadersConfig(PolicyConfig):
    """`set` replaces (or adds), `add` appends one more, `remove` drops, `rename` moves.

    Applied in that order of operations: remove, rename, set, add.
    """

    set: dict[str, str] = {}
    add: dict[str, str] = {}
    remove: tuple[str, ...] = ()
    rename: dict[str, str] = {}


# RFC 9110 5.5: no CTL but HTAB in a field value; CR, LF and NUL could split the header.
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _header_value_literal(chunk: str) -> None:
    found = _VALUE_CONTROL.search(chunk)
    if found is not None:
        raise ValueError(f"control character {found.group(0)!r} in a header value")


class _HeadersPolicy(Policy):
    Config = HeadersConfig
    _managed: ClassVar[frozenset[str]]
    _side: ClassVar[str]

    def __init__(self, config: HeadersConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        self.ops = self._compile(config, context.route_params)

    def _name(self, name: str, at: At) -> str:
        try:
            lowered = check_header_name(name)
        except ValueError as exc:
            raise PolicyConfigError(str(exc), at) from None
        if lowered in self._managed:
            raise PolicyConfigError(
                f"{self._side} header {lowered!r} is managed by fastgw and cannot be changed",
                at,
            )
        return lowered

    def _template(self, value: str, params: Sequence[str], at: At) -> Template:
        if value != value.strip(" \t"):
            raise PolicyConfigError(
                "leading or trailing whitespace in a header value", at, got=repr(value)
            )
        return parse_template(value, params, at, _header_value_literal)

    def _compile(self, config: HeadersConfig, params: Sequence[str]) -> tuple[HeaderOp, ...]:
        removed: dict[str, int] = {}
        for index, name in enumerate(config.remove):
            lowered = self._name(name, ("remove", index))
            if lowered in removed:
                raise PolicyConfigError(f"header {lowered!r} is removed twice", ("remove", index))
            removed[lowered] = index
        ops = [HeaderOp("remove", name.encode()) for name in removed]
        operations: tuple[Literal["rename", "set", "add"], ...] = ("rename", "set", "add")
        for operation in operations:
            mapping: dict[str, str] = getattr(config, operation)
            seen: dict[str, str] = {}
            for name, value in mapping.items():
                at: tuple[str, ...] = (operation, name)
                lowered = self._name(name, at)
                if lowered in seen:
                    raise PolicyConfigError(
                        f"header {lowered!r} is listed twice in {operation} "
                        f"(as {seen[lowered]!r} and {name!r})",
                        at,
                    )
                seen[lowered] = name
                if lowered in removed:
                    raise PolicyConfigError(
                        f"header {lowered!r} is both removed and in {operation}", at
                    )
                if operation == "rename":
                    target = self._name(value, at)
                    if target == lowered:
                        raise PolicyConfigError(f"header {lowered!r} is renamed to itself", at)
                    ops.append(HeaderOp("rename", lowered.encode(), new_name=target.encode()))
                else:
                    template = self._template(value, params, at)
                    ops.append(HeaderOp(operation, lowered.encode(), template))
        return tuple(ops)


class RequestHeaders(_HeadersPolicy):
    """Change the headers sent to the upstream."""

    name = "request_headers"
    _managed = frozenset(_REQUEST_MANAGED)
    _side = "request"

    def compile_core(self, context: CompileContext) -> CoreParts:
        return CoreParts(request_ops=self.ops)


class ResponseHeaders(_HeadersPolicy):
    """Change the headers sent back to the client."""

    name = "response_headers"
    _managed = frozenset(_RESPONSE_MANAGED)
    _side = "response"

    def compile_core(self, context: CompileContext) -> CoreParts:
        return CoreParts(response_ops=self.ops)


# --- direct_response ---------------------------------------------------------------------


class DirectResponseConfig(PolicyConfig):
    """A fixed answer; the upstream is never asked."""

    status: Annotated[int, Meta(ge=200, le=599)] = 200
    body: str = ""
    headers: dict[str, str] = {}
    # None: "text/plain; charset=utf-8" for a non-empty body, none for an empty one.
    content_type: str | None = None


class DirectResponse(Policy):
    """Answer with a fixed status, headers and body."""

    name = "direct_response"
    Config = DirectResponseConfig

    def __init__(self, config: DirectResponseConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        for name, value in config.headers.items():
            at = ("headers", name)
            try:
                self._check_header(name, value)
            except ValueError as exc:
                raise PolicyConfigError(str(exc), at) from None
        if config.content_type is not None:
            try:
                check_header_value(config.content_type)
            except ValueError as exc:
                raise PolicyConfigError(str(exc), ("content_type",)) from None
        try:
            self.response = Response(
                config.status, config.body, config.headers, config.content_type
            )
        except ValueError as exc:
            raise PolicyConfigError(str(exc), ("headers",)) from None

    @staticmethod
    def _check_header(name: str, value: str) -> None:
        lowered = check_header_name(name)
        if lowered in _FRAMING or lowered == "x-request-id":
            raise ValueError(f"header {lowered!r} is managed by fastgw")
        check_header_value(value)

    def compile_core(self, context: CompileContext) -> CoreParts:
        response = self.response
        return CoreParts(
            steps=(_core.RespondStep(response.status, response.headers, response.body),)
        )


# --- redirect ----------------------------------------------------------------------------

# RFC 3986 2: unreserved, reserved and "%" (checked as "%HH" below).
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# The host may be a substitution ("https://$host$path"), but never empty: "https:///x".
_ABSOLUTE_URL = re.compile(r"^https?://(?:[^/?#]|$)", re.I)


class RedirectConfig(PolicyConfig):
    """Answer with a redirect to `location` (a template); keep_query appends the query."""

    location: str
    status: int = 302
    keep_query: bool = True


def _location_literal(chunk: str) -> None:
    if not _URI_CHARS.match(chunk):
        bad = next(c for c in chunk if not _URI_CHARS.match(c))
        raise ValueError(f"character {bad!r} is not allowed in a URL: percent-encode it")
    if _BAD_PERCENT.search(chunk):
        raise ValueError("'%' must start a percent-escape like %20")


class Redirect(Policy):
    """Answer with a 3xx redirect; substituted values are percent-encoded by the core."""

    name = "redirect"
    Config = RedirectConfig

    def __init__(self, config: RedirectConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        if config.status not in REDIRECT_STATUSES:
            raise PolicyConfigError(
                "not a redirect status",
                ("status",),
                expected="one of: " + ", ".join(map(str, REDIRECT_STATUSES)),
                got=str(config.status),
            )
        at = ("location",)
        template = parse_template(config.location, context.route_params, at, _location_literal)
        first = template[0] if template else b""
        # A substituted value right after "/" could start with "/" and turn the location
        # into "//other.host" (a network-path reference): the start must be fixed text.
        if not isinstance(first, bytes) or not (
            _ABSOLUTE_URL.match(first.decode())
            or (first.startswith(b"/") and first[1:2] not in (b"", b"/"))
            or (first == b"/" and len(template) == 1)
        ):
            raise PolicyConfigError(
                "the location must start with fixed text: a path like '/new/...' or a URL "
                "like 'https://host/...'",
                at,
                got=repr(config.location),
            )
        if config.keep_query and b"#" in b"".join(p for p in template if isinstance(p, bytes)):
            raise PolicyConfigError(
                "a location with a '#fragment' cannot keep the query: set keep_query: false",
                at,
            )
        self.template = template

    def compile_core(self, context: CompileContext) -> CoreParts:
        config = self.config
        locations = context.templates(self.template)
        return CoreParts(steps=(_core.RedirectStep(config.status, locations, config.keep_query),))


# --- path_rewrite ------------------------------------------------------------------------

_BACKREFERENCE = re.compile(r"\\(?:(\d+)|g<([^>]*)>)")


class PathRewriteConfig(PolicyConfig):
    """Rewrite the upstream path when the normalised path matches `match` (a regular
    expression, searched from the start); `replace` may use \\1 or \\g<name>."""

    match: str
    replace: str


class PathRewrite(Policy):
    """Regex path rewrite (nginx `rewrite` style); the regex is compiled at provisioning."""

    name = "path_rewrite"
    Config = PathRewriteConfig

    def __init__(self, config: PathRewriteConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        try:
            self.regex = re.compile(config.match)
        except re.error as exc:
            raise PolicyConfigError(f"invalid regular expression: {exc}", ("match",)) from None
        for found in _BACKREFERENCE.finditer(config.replace):
            number, name = found.groups()
            if number is not None:
                known = int(number) <= self.regex.groups
            elif name.isdigit():
                known = int(name) <= self.regex.groups
            else:
                known = name in self.regex.groupindex
            if not known:
                raise PolicyConfigError(
                    f"{found.group(0)} refers to no group of the expression",
                    ("replace",),
                    expected=f"\\1 to \\{self.regex.groups} or a named group"
                    if self.regex.groups
                    else "no group reference: the expression has no groups",
                )
        if not config.replace.startswith("/"):
            raise PolicyConfigError("the replacement must start with '/'", ("replace",))
        self.replace = config.replace

    def on_request(self, request: Any) -> None:
        found = self.regex.match(request.path)
        if found is not None:
            request.rewrite_path(found.expand(self.replace))


BUILTIN_POLICIES: tuple[type[Policy], ...] = (
    RequestHeaders,
    ResponseHeaders,
    DirectResponse,
    Redirect,
    PathRewrite,
    RateLimit,
    ConcurrencyLimit,
    IpRestriction,
    KeyAuth,
    BasicAuth,
    OAuth2Introspection,
    Jwt,
    Acl,
    Cors,
    RequestValidation,
)
