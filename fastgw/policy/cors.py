"""The `cors` policy: cross-origin resource sharing answered by the gateway.

    policies:
      - cors:
          origins: ["https://app.example.com", "https://*.example.com"]
          credentials: true
          methods: [GET, POST]
          headers: [content-type, authorization]
          expose_headers: [x-request-id]
          max_age: 10m

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here and
never forwarded, before any authentication policy runs (`runs_first`: a preflight carries no
credentials). An allowed one gets 204 with the Access-Control-Allow-* fields; a disallowed
origin, method or header gets 403 `cors_origin_forbidden` without them. Other requests go on
whatever their Origin: CORS is enforced by browsers, which refuse to show a response that
lacks the fields. A response to an allowed Origin gets Access-Control-Allow-Origin (that
origin), -Allow-Credentials and -Expose-Headers; every response gets `Vary: Origin`.

Origins are compared normalised (RFC 6454 serialisation: lowercase scheme and host, no
default port). `https://*.example.com` matches one or more labels before `.example.com` with
that scheme and port, never `example.com` itself. `*` (alone) allows every origin and is
answered as `*`, so it cannot be combined with `credentials: true` (the Fetch standard
ignores `*` on credentialed requests); an arbitrary origin is therefore never reflected with
credentials. The `null` origin passes only when listed.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastgw.config.schema import Duration
from fastgw.policy.base import (
    Policy,
    PolicyConfig,
    PolicyConfigError,
    ProvisionContext,
    Response,
    check_header_name,
)

__all__ = ["Cors", "CorsConfig", "normalise_origin"]

# RFC 9110 5.6.2: a method is a token.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ORIGIN = re.compile(
    r"^([A-Za-z][A-Za-z0-9+.\-]*)://(\[[0-9A-Fa-f:.]+\]|[^:/?#\[\]@]+)(?::(\d{1,5}))?$"
)
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?$|^[a-z0-9]$")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# The methods and request headers a browser never asks a preflight for.
_DEFAULT_METHODS = ("GET", "HEAD", "POST")
_VARY_PREFLIGHT = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
# Response fields this policy owns on its routes: an upstream's own copies are replaced or
# removed, so a browser never sees two answers to one question.
_OWNED = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
)
_SCRATCH_KEY = "cors.origin"


class CorsConfig(PolicyConfig):
    """Which origins may read the route's responses, and what their preflights may ask."""

    origins: tuple[str, ...]
    credentials: bool = False
    methods: tuple[str, ...] = _DEFAULT_METHODS
    # A list of request header names a preflight may ask for, or "*": any name, reflected
    # (only without credentials).
    headers: tuple[str, ...] | Literal["*"] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: Duration | None = None


def normalise_origin(text: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialised origin, lowercased, the port made explicit;
    None when `text` is not one (a path, userinfo, a bad host or port)."""
    found = _ORIGIN.match(text)
    if found is None:
        return None
    scheme, host, port_text = found.groups()
    scheme = scheme.lower()
    host = host.lower()
    if not host.startswith("["):
        labels = host.split(".")
        if not all(_LABEL.match(label) for label in labels):
            return None
    if port_text is not None:
        port = int(port_text)
        if not 0 < port < 65536:
            return None
    else:
        default = _DEFAULT_PORTS.get(scheme)
        if default is None:
            return None
        port = default
    return scheme, host, port


def _serialise(scheme: str, host: str, port: int) -> str:
    if _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class Cors(Policy):
    """CORS preflights and response fields (see the module docstring)."""

    name = "cors"
    Config = CorsConfig
    runs_first = True
    # Preflights are OPTIONS requests: a route whose match.methods leaves it out answers
    # them 405 before this policy runs (plan.py warns).
    needs_methods = ("OPTIONS",)

    def __init__(self, config: CorsConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        self.any_origin = False
        self.allow_null = False
        self.exact: set[tuple[str, str, int]] = set()
        self.patterns: list[tuple[str, str, int]] = []  # (scheme, ".example.com", port)
        self._parse_origins(config)
        self.methods = self._methods(config.methods)
        self.any_header = config.headers == "*"
        if self.any_header and config.credentials:
            raise PolicyConfigError(
                'headers: "*" reflects whatever a preflight asks for, which must not be '
                "combined with credentials: true",
                "headers",
                expected="a list of header names",
            )
        allowed_headers = [] if self.any_header else self._names(config.headers, "headers")
        self.headers = frozenset(allowed_headers)
        self.allow_methods = ", ".join(self.methods)
        self.allow_headers = ", ".join(allowed_headers)
        self.expose = ", ".join(self._names(config.expose_headers, "expose_headers"))
        self.max_age = None if config.max_age is None else str(int(config.max_age))

    # --- provisioning -----------------------------------------------------------------

    def _parse_origins(self, config: CorsConfig) -> None:
        if not config.origins:
            raise PolicyConfigError(
                "cors needs at least one origin",
                "origins",
                expected='origins: ["https://app.example.com"]',
            )
        for index, entry in enumerate(config.origins):
            at = ("origins", index)
            text = entry.strip()
            if text == "*":
                if len(config.origins) > 1:
                    raise PolicyConfigError("'*' must be the only origin", at)
                if config.credentials:
                    raise PolicyConfigError(
                        "origins: ['*'] cannot be combined with credentials: true (the Fetch "
                        "standard ignores '*' on credentialed requests); list the origins",
                        at,
                        expected="origins like https://app.example.com or https://*.example.com",
                    )
                self.any_origin = True
                continue
            if text == "null":
                self.allow_null = True
                continue
            wildcard = "://*." in text
            parsed = normalise_origin(text.replace("://*.", "://wildcard.", 1))
            if parsed is None or (not wildcard and "*" in text):
                raise PolicyConfigError(
                    f"not an origin: {entry!r}",
                    at,
                    expected="scheme://host[:port] with no path, like https://app.example.com, "
                    "or a pattern like https://*.example.com; IDN hosts in their xn-- form",
                )
            scheme, host, port = parsed
            if wildcard:
                suffix = host[len("wildcard") :]
                if suffix.count(".") < 2:
                    raise PolicyConfigError(
                        f"{entry!r} would match every subdomain of a top-level domain",
                        at,
                        expected="a pattern below a registered domain, like https://*.example.com",
                    )
                self.patterns.append((scheme, suffix, port))
            else:
                self.exact.add((scheme, host, port))

    @staticmethod
    def _methods(methods: tuple[str, ...]) -> tuple[str, ...]:
        if not methods:
            raise PolicyConfigError("cors needs at least one method", "methods")
        seen: list[str] = []
        for index, method in enumerate(methods):
            if not _TOKEN.match(method):
                raise PolicyConfigError(
                    f"not a method: {method!r}", ("methods", index), expected="GET, POST, ..."
                )
            method = method.upper()
            if method not in seen:
                seen.append(method)
        return tuple(seen)

    @staticmethod
    def _names(names: Any, field: str) -> list[str]:
        lowered: list[str] = []
        for index, name in enumerate(names):
            try:
                name = check_header_name(name)
            except ValueError as exc:
                raise PolicyConfigError(str(exc), (field, index)) from None
            if name not in lowered:
                lowered.append(name)
        return lowered

    # --- request time -----------------------------------------------------------------

    def allowed_origin(self, origin: str) -> str | None:
        """The value of Access-Control-Allow-Origin for `origin`, or None if refused."""
        if self.any_origin:
            return "*"
        if origin == "null":
            return "null" if self.allow_null else None
        parsed = normalise_origin(origin)
        if parsed is None:
            return None
        if parsed in self.exact:
            return _serialise(*parsed)
        scheme, host, port = parsed
        for pattern_scheme, suffix, pattern_port in self.patterns:
            if (
                scheme == pattern_scheme
                and port == pattern_port
                and host.endswith(suffix)
                and len(host) > len(suffix)
            ):
                return _serialise(*parsed)
        return None

    def on_request(self, request: Any) -> Response | None:
        origins = request.headers.getall("origin")
        if not origins:
            return None
        # Two Origin fields are no browser's: refused as no origin at all.
        allowed = self.allowed_origin(origins[0]) if len(origins) == 1 else None
        if request.method == "OPTIONS":
            wanted = request.headers.getall("access-control-request-method")
            if wanted:
                return self._preflight(request, allowed, wanted)
        if allowed is not None:
            request.scratch[_SCRATCH_KEY] = allowed
            # Should the gateway answer itself (a later policy's 401 or 429, a 502), the
            # browser may read that answer too.
            request.add_local_header("access-control-allow-origin", allowed)
            if self.config.credentials:
                request.add_local_header("access-control-allow-credentials", "true")
            if self.expose:
                request.add_local_header("access-control-expose-headers", self.expose)
            request.add_local_header("vary", "Origin")
        return None

    def _preflight(self, request: Any, allowed: str | None, wanted: list[str]) -> Response:
        asked = ",".join(request.headers.getall("access-control-request-headers"))
        names = [name.strip().lower() for name in asked.split(",") if name.strip()]
        method = wanted[0].strip().upper() if len(wanted) == 1 else ""
        if (
            allowed is None
            or method not in self.methods
            or not all(_TOKEN.match(name) for name in names)
            or not (self.any_header or all(name in self.headers for name in names))
        ):
            return Response.error(
                403,
                "cors_origin_forbidden",
                "this origin, method or header is not allowed by the route's CORS policy",
                request.request_id,
                {"vary": _VARY_PREFLIGHT},
            )
        fields = {
            "access-control-allow-origin": allowed,
            "access-control-allow-methods": self.allow_methods,
        }
        allow_headers = ", ".join(names) if self.any_header else self.allow_headers
        if allow_headers:
            fields["access-control-allow-headers"] = allow_headers
        if self.config.credentials:
            fields["access-control-allow-credentials"] = "true"
        if self.max_age is not None:
            fields["access-control-max-age"] = self.max_age
        fields["vary"] = _VARY_PREFLIGHT
        return Response(204, b"", fields)

    def on_response(self, request: Any, response: Any) -> None:
        _add_vary_origin(response)
        allowed = request.scratch.get(_SCRATCH_KEY) if request.headers.get("origin") else None
        if allowed is None:
            for name in _OWNED:
                if response.headers.get(name) is not None:
                    response.remove_header(name)
            return
        response.set_header("access-control-allow-origin", allowed)
        if self.config.credentials:
            response.set_header("access-control-allow-credentials", "true")
        elif response.headers.get("access-control-allow-credentials") is not None:
            response.remove_header("access-control-allow-credentials")
        if self.expose:
            response.set_header("access-control-expose-headers", self.expose)


def _add_vary_origin(response: Any) -> None:
    """Origin joins the response's Vary list (RFC 9110 12.5.5) unless it is there or `*`."""
    values = response.headers.getall("vary")
    tokens = {token.strip().lower() for value in values for token in value.split(",")}
    if "*" in tokens or "origin" in tokens:
        return
    kept = [value.strip() for value in values if value.strip()]
    response.set_header("vary", ", ".join([*kept, "Origin"]))
