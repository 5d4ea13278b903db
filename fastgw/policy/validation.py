"""The `request_validation` policy: refuse malformed input before a backend sees it.

    policies:
      - request_validation:
          max_body_bytes: 1MiB                 # 413 body_too_large beyond it
          content_types: [application/json]    # 415 unsupported_media_type otherwise
          required_headers: [x-tenant]         # 400 validation_failed when missing
          json_schema: {type: object, ...}     # or json_schema_file: schemas/order.json

`max_body_bytes` becomes the route's own body limit (`limits.max_body_bytes`, whichever is
smaller), which the core enforces while it streams: a Content-Length over it is answered 413
before any of the body is read, a chunked body that grows past it is cut off with 413. The
body is buffered only with a schema: the gateway then reads it whole (up to the limit, 1MiB
when none is given), parses it as JSON and validates it with jsonschema-rs (the validator is
compiled once, at provisioning, with remote `$ref`s disabled). Failures are 400
`validation_failed` whose `error.errors` lists the first ten problems with their JSON path
(`$.items[0].qty`) and message. A request without a body is not checked for its content
type or against the schema, unless `require_body: true`.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Annotated, Any

import jsonschema_rs
import msgspec
from msgspec import Meta

from fastgw.policy.base import (
    Policy,
    PolicyConfig,
    PolicyConfigError,
    ProvisionContext,
    Response,
    check_header_name,
)

__all__ = ["RequestValidation", "RequestValidationConfig", "json_path", "parse_size"]

_SIZE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "KiB": 1 << 10, "MB": 10**6, "MiB": 1 << 20,
    "GB": 10**9, "GiB": 1 << 30,
}  # fmt: skip
SIZE_HINT = "a size like 65536, '64KiB', '1MiB' or '10MB'"
# A body buffered for a schema with no max_body_bytes of its own.
DEFAULT_SCHEMA_BODY_BYTES = 1 << 20
MAX_LISTED_ERRORS = 10
MAX_MESSAGE_CHARS = 200
# type/subtype, or type/* and type/*+suffix patterns.
_MEDIA_TYPE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+/[!#$%&'*+\-.^_`|~0-9a-z]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RequestValidationConfig(PolicyConfig):
    """What a request must look like to reach the upstream."""

    max_body_bytes: Annotated[int, Meta(ge=0)] | str | None = None
    content_types: tuple[str, ...] = ()
    required_headers: tuple[str, ...] = ()
    json_schema: dict[str, Any] | bool | None = None
    json_schema_file: str | None = None
    require_body: bool = False


def parse_size(value: int | str) -> int:
    """Bytes of `value` (an int or '64KiB', '1MiB', '10MB', ...); ValueError otherwise."""
    if isinstance(value, int):
        return value
    found = _SIZE.match(value.strip())
    if found is None:
        raise ValueError(f"expected {SIZE_HINT}, got {value!r}")
    return int(found.group(1)) * _SIZE_UNITS[found.group(2)]


def json_path(location: Any) -> str:
    """A JSON instance location as a JSONPath: ["items", 0, "qty"] -> "$.items[0].qty"."""
    parts = ["$"]
    for step in location:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _IDENTIFIER.match(step):
            parts.append(f".{step}")
        else:
            parts.append("[" + msgspec.json.encode(step).decode() + "]")
    return "".join(parts)


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


class RequestValidation(Policy):
    """Body limit, content types, required headers and a JSON Schema (see the module
    docstring)."""

    name = "request_validation"
    Config = RequestValidationConfig

    def __init__(self, config: RequestValidationConfig, context: ProvisionContext) -> None:
        super().__init__(config, context)
        limit = None
        if config.max_body_bytes is not None:
            try:
                limit = parse_size(config.max_body_bytes)
            except ValueError as exc:
                raise PolicyConfigError(
                    str(exc), "max_body_bytes", expected=SIZE_HINT, got=repr(config.max_body_bytes)
                ) from None
        # Read by plan.py: the route's streaming body limit (None: none of this policy's own).
        self.body_limit = limit
        self.exact_types, self.type_patterns = self._content_types(config.content_types)
        self.required = self._required(config.required_headers)
        self.validator = self._validator(config, context)
        if self.validator is not None:
            # The chain buffers the body (request.body) up to this many bytes; 413 beyond.
            # Per instance: only routes with a schema buffer (plan.py reads the instance).
            self.needs_body = DEFAULT_SCHEMA_BODY_BYTES if limit is None else limit  # type: ignore[misc]
        if limit == 0 and self.validator is not None:
            raise PolicyConfigError(
                "max_body_bytes: 0 allows no body for json_schema to check", "max_body_bytes"
            )
        if not (
            limit is not None
            or self.exact_types
            or self.type_patterns
            or self.required
            or self.validator is not None
            or config.require_body
        ):
            raise PolicyConfigError(
                "request_validation has nothing to check",
                (),
                expected="max_body_bytes, content_types, required_headers, json_schema, "
                "json_schema_file or require_body",
            )

    # --- provisioning -----------------------------------------------------------------

    @staticmethod
    def _content_types(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[Any, ...]]:
        exact: set[str] = set()
        patterns: list[tuple[str, str]] = []  # (type "application/", suffix "+json" or "")
        for index, entry in enumerate(entries):
            media = entry.strip().lower()
            if ";" in media or not _MEDIA_TYPE.match(media):
                raise PolicyConfigError(
                    f"not a media type: {entry!r}",
                    ("content_types", index),
                    expected="type/subtype without parameters, like application/json, "
                    "or a pattern like text/* or application/*+json",
                )
            main, sub = media.split("/")
            if "*" in main:
                raise PolicyConfigError(
                    f"{entry!r}: only the subtype may be a pattern", ("content_types", index)
                )
            if sub == "*" or (sub.startswith("*+") and "*" not in sub[1:]):
                patterns.append((main + "/", sub[1:]))
            elif "*" in sub:
                raise PolicyConfigError(
                    f"{entry!r}: a pattern is type/* or type/*+suffix", ("content_types", index)
                )
            else:
                exact.add(media)
        return frozenset(exact), tuple(patterns)

    @staticmethod
    def _required(names: tuple[str, ...]) -> tuple[str, ...]:
        required: list[str] = []
        for index, name in enumerate(names):
            try:
                lowered = check_header_name(name)
            except ValueError as exc:
                raise PolicyConfigError(str(exc), ("required_headers", index)) from None
            if lowered not in required:
                required.append(lowered)
        return tuple(required)

    @staticmethod
    def _validator(config: RequestValidationConfig, context: ProvisionContext) -> Any:
        schema: Any = config.json_schema
        at: tuple[str | int, ...] = ("json_schema",)
        if config.json_schema_file is not None:
            at = ("json_schema_file",)
            if schema is not None:
                raise PolicyConfigError("give json_schema or json_schema_file, not both", at)
            path = config.json_schema_file
            if not os.path.isabs(path):
                base = os.path.dirname(os.path.abspath(context.file)) if context.file else "."
                path = os.path.join(base, path)
            try:
                with open(path, "rb") as schema_file:
                    text = schema_file.read()
            except OSError as exc:
                raise PolicyConfigError(
                    f"cannot read the schema file: {exc.strerror}", at, got=repr(path)
                ) from None
            try:
                schema = msgspec.json.decode(text)
            except (msgspec.DecodeError, RecursionError) as exc:
                raise PolicyConfigError(
                    f"the schema file is not JSON: {exc}", at, got=repr(path)
                ) from None
        if schema is None:
            return None
        try:
            # offline: a remote $ref would be a blocking fetch (and a dependency on another
            # server's uptime) while the plan is built: refused.
            return jsonschema_rs.validator_for(schema, offline=True)
        except jsonschema_rs.ValidationError as exc:
            inner = list(exc.instance_path)
            if config.json_schema_file is None:
                raise PolicyConfigError(
                    f"invalid JSON Schema: {exc.message}", (*at, *inner)
                ) from None
            raise PolicyConfigError(
                f"invalid JSON Schema at {json_path(inner)} of the file: {exc.message}", at
            ) from None
        except (ValueError, TypeError) as exc:
            raise PolicyConfigError(f"invalid JSON Schema: {exc}", at) from None

    # --- request time -----------------------------------------------------------------

    def on_request(self, request: Any) -> Response | None:
        headers = request.headers
        if self.required:
            missing = [name for name in self.required if not (headers.get(name) or "").strip()]
            if missing:
                return _failed(
                    request,
                    "missing required header"
                    + ("s: " if len(missing) > 1 else ": ")
                    + ", ".join(missing),
                    [{"header": name, "message": "required header is missing"} for name in missing],
                )
        body = request.body
        if body is not None:
            has_body = len(body) > 0  # buffered for the schema: what arrived
        else:
            has_body = headers.get("transfer-encoding") is not None or _declared_length(
                headers.get("content-length")
            )
        if not has_body:
            if self.config.require_body:
                return _failed(request, "a request body is required", [])
            return None
        if self.exact_types or self.type_patterns:
            # Two Content-Type fields: the upstream might read either; refused as none.
            declared = headers.getall("content-type")
            media = _media_type(declared[0]) if len(declared) == 1 else ""
            if not self._type_allowed(media):
                if len(declared) > 1:
                    shown = "a body with more than one content type"
                else:
                    shown = f"content type {media!r}" if media else "a body without a content type"
                return Response.error(
                    415,
                    "unsupported_media_type",
                    f"{shown} is not accepted on this route",
                    request.request_id,
                )
        if self.validator is not None:
            return self._validate(request, body or b"")
        return None

    def _type_allowed(self, media: str) -> bool:
        if not media:
            return False
        if media in self.exact_types:
            return True
        return any(
            media.startswith(main) and media.endswith(suffix) and len(media) > len(main + suffix)
            for main, suffix in self.type_patterns
        )

    def _validate(self, request: Any, body: bytes) -> Response | None:
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            return _failed(request, f"the body is not valid JSON: {exc}", [])
        except RecursionError:
            return _failed(request, "the body is nested too deeply", [])
        errors = list(itertools.islice(self.validator.iter_errors(document), MAX_LISTED_ERRORS))
        if not errors:
            return None
        listed = [
            {"path": json_path(error.instance_path), "message": _short(error.message)}
            for error in errors
        ]
        first = listed[0]
        return _failed(
            request,
            f"the body does not match the schema: {first['path']}: {first['message']}",
            listed,
        )


def _declared_length(value: str | None) -> bool:
    """Whether a Content-Length (the parser checked it: digits, or an agreeing list) says
    a body follows."""
    if value is None:
        return False
    first = value.split(",", 1)[0].strip()
    return not first.isdigit() or int(first) > 0


def _short(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


def _failed(request: Any, message: str, errors: list[dict[str, Any]]) -> Response:
    """400 validation_failed in fastgw's error format, with `errors` inside `error`."""
    error: dict[str, Any] = {
        "status": 400,
        "code": "validation_failed",
        "message": _short(message),
        "request_id": request.request_id,
    }
    if errors:
        error["errors"] = errors
    return Response.json(400, {"error": error})
