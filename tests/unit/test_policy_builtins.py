"""Built-in policies: templates, every config they accept (and what they compile to in the
core) or refuse."""

from __future__ import annotations

from typing import Any

import pytest

from fastgw import _core
from fastgw.config import parse_config
from fastgw.errors import ConfigError
from fastgw.policy import PolicyConfigError, Response, build_route_chains
from fastgw.policy.builtins import VARIABLES, parse_template
from fastgw.policy.compiled import CompileContext, HeaderOp

BASE: dict[str, Any] = {"upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9001"}]}}}
ROUTE_PATH = "$.routes[0].policies[0]"


def provision(entry: dict[str, Any], params: tuple[str, ...] = ("id",)) -> Any:
    """Provision one chain entry on a route capturing `params`; return the policy."""
    config = parse_config(
        {
            **BASE,
            "routes": [
                {"name": "r", "match": {"paths": ["/a/{id}"]}, "upstream": "u", "policies": [entry]}
            ],
        }
    )
    chains = build_route_chains(config, [params], file="gw.yaml")
    if chains.errors:
        raise chains.errors[0]
    return chains[0].policies[0].policy


def compiled(entry: dict[str, Any]) -> dict[str, Any]:
    """What one chain entry compiles to for the route's one pattern (id 7, capturing "id"):
    its non-empty parts, steps shown by their kind and typed fields."""
    parts = provision(entry).compile_core(CompileContext((7,), {7: ("id",)}, None))
    shown: dict[str, Any] = {}
    if parts.steps:
        shown["steps"] = [step_fields(step) for step in parts.steps]
    if parts.request_ops:
        shown["request_ops"] = parts.request_ops
    if parts.response_ops:
        shown["response_ops"] = parts.response_ops
    if parts.response_hooks:
        shown["response_hooks"] = parts.response_hooks
    return shown


def step_fields(step: Any) -> tuple[Any, ...]:
    if isinstance(step, _core.RespondStep):
        return ("respond", step.status, step.head, step.body)
    assert isinstance(step, _core.RedirectStep)
    return ("redirect", step.status, step.locations, step.keep_query)


VAR = _core.TEMPLATE_VARIABLES


# --- templates ----------------------------------------------------------------------------

TEMPLATES = [
    ("literal", "plain text", (b"plain text",)),
    ("empty", "", ()),
    ("variable", "$client_ip", (("var", "client_ip"),)),
    (
        "mixed",
        "ip=$client_ip;id={id}!",
        (b"ip=", ("var", "client_ip"), b";id=", ("param", "id"), b"!"),
    ),
    ("adjacent", "$method$path", (("var", "method"), ("var", "path"))),
    ("dollar-escape", "cost: $$5", (b"cost: $5",)),
    ("brace-escapes", "{{id}} {{", (b"{id} {",)),
    ("escape-next-to-param", "{{{id}}}", (b"{", ("param", "id"), b"}")),
    ("utf8-literal", "café", ("café".encode(),)),
]


@pytest.mark.parametrize(
    ("text", "parts"), [t[1:] for t in TEMPLATES], ids=[t[0] for t in TEMPLATES]
)
def test_template_parts(text: str, parts: tuple[Any, ...]) -> None:
    assert parse_template(text, ("id", "rest")) == parts


def test_every_variable_parses() -> None:
    for name in VARIABLES:
        assert parse_template(f"${name}", ()) == (("var", name),)


TEMPLATE_ERRORS = [
    ("unknown-variable", "$clientip", "unknown variable $clientip", "$client_ip"),
    ("variable-glued-to-text", "$hostname", "unknown variable $hostname", "'$$' for '$'"),
    ("lone-dollar", "5$", "'$' without a name", "one of"),
    ("dollar-before-brace", "${id}", "'$' without a name", "one of"),
    ("uncaptured-param", "{user}", "{user} is not captured", "{id}, {rest}"),
    ("star-param", "{*rest}", "write {rest}, not {*rest}", ""),
    ("bad-placeholder", "{1x}", "invalid placeholder {1x}", "letter or '_' first"),
    ("empty-placeholder", "{}", "invalid placeholder {}", ""),
    ("single-close", "a}b", "single '}'", "'{{' or '}}'"),
    ("single-open", "a{b", "single '{'", "'{{' or '}}'"),
]


@pytest.mark.parametrize(
    ("text", "message", "expected"),
    [t[1:] for t in TEMPLATE_ERRORS],
    ids=[t[0] for t in TEMPLATE_ERRORS],
)
def test_template_errors(text: str, message: str, expected: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        parse_template(text, ("id", "rest"), ("set", "x"))
    assert message in caught.value.message
    assert expected in (caught.value.expected or "") + (caught.value.got or "")
    assert caught.value.at == ("set", "x")


def test_template_param_when_route_captures_nothing() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        parse_template("{id}", ())
    assert caught.value.expected == "no placeholder: the route captures nothing on every path"


# --- valid configs and the core data they compile to --------------------------------------

VALID = [
    ("request-empty", {"request_headers": {}}, {}),
    ("request-null", {"request_headers": None}, {}),
    (
        "request-all-operations-in-order",
        {
            "request_headers": {
                "add": {"X-Trace": "on"},
                "set": {"X-Client-IP": "$client_ip", "x-user-id": "{id}"},
                "rename": {"X-Old": "x-new"},
                "remove": ["X-Debug"],
            }
        },
        {
            "request_ops": (
                HeaderOp("remove", b"x-debug"),
                HeaderOp("rename", b"x-old", new_name=b"x-new"),
                HeaderOp("set", b"x-client-ip", (("var", "client_ip"),)),
                HeaderOp("set", b"x-user-id", (("param", "id"),)),
                HeaderOp("add", b"x-trace", (b"on",)),
            )
        },
    ),
    (
        "request-tab-inside-value",
        {"request_headers": {"set": {"x-a": "a\tb"}}},
        {"request_ops": (HeaderOp("set", b"x-a", (b"a\tb",)),)},
    ),
    (
        "request-empty-value",
        {"request_headers": {"set": {"x-a": ""}}},
        {"request_ops": (HeaderOp("set", b"x-a", ()),)},
    ),
    (
        "response-set-server",
        {"response_headers": {"set": {"server": "fastgw", "x-req": "$request_id"}}},
        {
            "response_ops": (
                HeaderOp("set", b"server", (b"fastgw",)),
                HeaderOp("set", b"x-req", (("var", "request_id"),)),
            )
        },
    ),
    (
        "direct-defaults",
        {"direct_response": {}},
        {"steps": [("respond", 200, b"HTTP/1.1 200 OK\r\n", b"")]},
    ),
    (
        "direct-text",
        {
            "direct_response": {
                "status": 503,
                "body": "maintenance",
                "headers": {"Retry-After": "60"},
            }
        },
        {
            "steps": [
                (
                    "respond",
                    503,
                    b"HTTP/1.1 503 Service Unavailable\r\n"
                    b"content-type: text/plain; charset=utf-8\r\nretry-after: 60\r\n",
                    b"maintenance",
                )
            ]
        },
    ),
    (
        "direct-content-type",
        {"direct_response": {"body": "{}", "content_type": "application/json"}},
        {
            "steps": [
                ("respond", 200, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n", b"{}")
            ]
        },
    ),
    (
        "direct-content-type-in-headers",
        {"direct_response": {"body": "<p>", "headers": {"Content-Type": "text/html"}}},
        {"steps": [("respond", 200, b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n", b"<p>")]},
    ),
    (
        "redirect-defaults",
        {"redirect": {"location": "https://new.example.com/users/{id}"}},
        {"steps": [("redirect", 302, {7: (b"https://new.example.com/users/", 0)}, True)]},
    ),
    (
        "redirect-to-same-host-https",
        {"redirect": {"status": 308, "location": "https://$host$path", "keep_query": True}},
        {"steps": [("redirect", 308, {7: (b"https://", VAR["host"], VAR["path"])}, True)]},
    ),
    (
        "redirect-path",
        {"redirect": {"status": 301, "location": "/v2/items/{id}?x=%20", "keep_query": False}},
        {"steps": [("redirect", 301, {7: (b"/v2/items/", 0, b"?x=%20")}, False)]},
    ),
    (
        "redirect-root",
        {"redirect": {"location": "/"}},
        {"steps": [("redirect", 302, {7: (b"/",)}, True)]},
    ),
    (
        "redirect-fragment-without-query",
        {"redirect": {"location": "/docs#top", "keep_query": False}},
        {"steps": [("redirect", 302, {7: (b"/docs#top",)}, False)]},
    ),
]


@pytest.mark.parametrize(("entry", "parts"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_configs(entry: dict[str, Any], parts: dict[str, Any]) -> None:
    assert compiled(entry) == parts


# --- invalid configs: exact $.path and the message -----------------------------------------

RH = f"{ROUTE_PATH}.request_headers"
RS = f"{ROUTE_PATH}.response_headers"
DR = f"{ROUTE_PATH}.direct_response"
RD = f"{ROUTE_PATH}.redirect"
PR = f"{ROUTE_PATH}.path_rewrite"

INVALID = [
    ("headers-not-mapping", {"request_headers": "x"}, RH, "wrong type", "mapping"),
    (
        "headers-unknown-field",
        {"request_headers": {"sett": {}}},
        RH,
        "unknown field 'sett', did you mean 'set'",
        "",
    ),
    (
        "headers-value-type",
        {"request_headers": {"set": {"x-a": 1}}},
        f"{RH}.set['x-a']",
        "wrong type",
        "str",
    ),
    (
        "headers-bad-name",
        {"request_headers": {"set": {"x a": "1"}}},
        f"{RH}.set['x a']",
        "invalid header name 'x a'",
        "",
    ),
    (
        "headers-cr-lf",
        {"request_headers": {"set": {"x-a": "a\r\nx-evil: 1"}}},
        f"{RH}.set['x-a']",
        "control character '\\r'",
        "",
    ),
    (
        "headers-lf",
        {"response_headers": {"add": {"x-a": "a\nb"}}},
        f"{RS}.add['x-a']",
        "control character '\\n'",
        "",
    ),
    (
        "headers-nul",
        {"request_headers": {"set": {"x-a": "a\x00"}}},
        f"{RH}.set['x-a']",
        "control character '\\x00'",
        "",
    ),
    (
        "headers-del",
        {"request_headers": {"set": {"x-a": "a\x7fb"}}},
        f"{RH}.set['x-a']",
        "control character '\\x7f'",
        "",
    ),
    (
        "headers-ctl-between-vars",
        {"request_headers": {"set": {"x-a": "$host\x01$path"}}},
        f"{RH}.set['x-a']",
        "control character",
        "",
    ),
    (
        "headers-leading-space",
        {"request_headers": {"set": {"x-a": " a"}}},
        f"{RH}.set['x-a']",
        "leading or trailing whitespace",
        "",
    ),
    (
        "headers-unknown-var",
        {"request_headers": {"set": {"x-a": "$user"}}},
        f"{RH}.set['x-a']",
        "unknown variable $user",
        "$client_ip",
    ),
    (
        "headers-uncaptured",
        {"response_headers": {"set": {"x-a": "{name}"}}},
        f"{RS}.set['x-a']",
        "{name} is not captured",
        "{id}",
    ),
    (
        "headers-remove-host",
        {"request_headers": {"remove": ["x-a", "Host"]}},
        f"{RH}.remove[1]",
        "request header 'host' is managed by fastgw",
        "",
    ),
    (
        "headers-remove-xff",
        {"request_headers": {"remove": ["x-forwarded-for"]}},
        f"{RH}.remove[0]",
        "'x-forwarded-for' is managed",
        "",
    ),
    (
        "headers-set-content-length",
        {"request_headers": {"set": {"Content-Length": "1"}}},
        f"{RH}.set['Content-Length']",
        "'content-length' is managed",
        "",
    ),
    (
        "headers-add-transfer-encoding",
        {"response_headers": {"add": {"transfer-encoding": "chunked"}}},
        f"{RS}.add['transfer-encoding']",
        "'transfer-encoding' is managed",
        "",
    ),
    (
        "headers-rename-request-id",
        {"response_headers": {"rename": {"x-request-id": "x-id"}}},
        f"{RS}.rename['x-request-id']",
        "'x-request-id' is managed",
        "",
    ),
    (
        "headers-rename-to-connection",
        {"request_headers": {"rename": {"x-a": "connection"}}},
        f"{RH}.rename['x-a']",
        "'connection' is managed",
        "",
    ),
    (
        "headers-rename-bad-target",
        {"request_headers": {"rename": {"x-a": "x b"}}},
        f"{RH}.rename['x-a']",
        "invalid header name 'x b'",
        "",
    ),
    (
        "headers-rename-to-itself",
        {"request_headers": {"rename": {"X-A": "x-a"}}},
        f"{RH}.rename['X-A']",
        "renamed to itself",
        "",
    ),
    (
        "headers-twice-by-case",
        {"request_headers": {"set": {"X-A": "1", "x-a": "2"}}},
        f"{RH}.set['x-a']",
        "listed twice in set (as 'X-A' and 'x-a')",
        "",
    ),
    (
        "headers-removed-twice",
        {"request_headers": {"remove": ["x-a", "X-A"]}},
        f"{RH}.remove[1]",
        "removed twice",
        "",
    ),
    (
        "headers-removed-and-set",
        {"request_headers": {"remove": ["x-a"], "set": {"x-a": "1"}}},
        f"{RH}.set['x-a']",
        "both removed and in set",
        "",
    ),
    (
        "direct-status-low",
        {"direct_response": {"status": 101}},
        f"{DR}.status",
        "value out of range",
        "int >= 200",
    ),
    (
        "direct-status-high",
        {"direct_response": {"status": 600}},
        f"{DR}.status",
        "value out of range",
        "int <= 599",
    ),
    (
        "direct-status-type",
        {"direct_response": {"status": "200"}},
        f"{DR}.status",
        "wrong type",
        "int",
    ),
    (
        "direct-unknown-field",
        {"direct_response": {"code": 200}},
        DR,
        "unknown field 'code'",
        "expected one of: status, body",
    ),
    (
        "direct-header-crlf",
        {"direct_response": {"headers": {"x-a": "1\r\n\r\nbody"}}},
        f"{DR}.headers['x-a']",
        "control character",
        "",
    ),
    (
        "direct-header-name",
        {"direct_response": {"headers": {"x(a)": "1"}}},
        f"{DR}.headers['x(a)']",
        "invalid header name",
        "",
    ),
    (
        "direct-header-framing",
        {"direct_response": {"headers": {"Content-Length": "5"}}},
        f"{DR}.headers['Content-Length']",
        "'content-length' is managed",
        "",
    ),
    (
        "direct-header-request-id",
        {"direct_response": {"headers": {"x-request-id": "5"}}},
        f"{DR}.headers['x-request-id']",
        "managed",
        "",
    ),
    (
        "direct-content-type-crlf",
        {"direct_response": {"content_type": "text/html\r\nx: y"}},
        f"{DR}.content_type",
        "control character",
        "",
    ),
    (
        "direct-content-type-twice",
        {"direct_response": {"content_type": "a/b", "headers": {"content-type": "c/d"}}},
        f"{DR}.headers",
        "content-type given both",
        "",
    ),
    ("redirect-missing-location", {"redirect": {}}, RD, "missing required field 'location'", ""),
    (
        "redirect-status",
        {"redirect": {"status": 200, "location": "/"}},
        f"{RD}.status",
        "not a redirect status",
        "301, 302, 303, 307, 308",
    ),
    (
        "redirect-relative",
        {"redirect": {"location": "new/place"}},
        f"{RD}.location",
        "must start with fixed text",
        "",
    ),
    (
        "redirect-network-path",
        {"redirect": {"location": "//evil.example/"}},
        f"{RD}.location",
        "must start with fixed text",
        "",
    ),
    (
        "redirect-slash-then-param",
        {"redirect": {"location": "/{id}"}},
        f"{RD}.location",
        "must start with fixed text",
        "",
    ),
    (
        "redirect-starts-with-var",
        {"redirect": {"location": "$path"}},
        f"{RD}.location",
        "must start with fixed text",
        "",
    ),
    (
        "redirect-javascript",
        {"redirect": {"location": "javascript:alert(1)"}},
        f"{RD}.location",
        "must start with fixed text",
        "",
    ),
    (
        "redirect-space",
        {"redirect": {"location": "/a b"}},
        f"{RD}.location",
        "character ' ' is not allowed in a URL",
        "",
    ),
    (
        "redirect-crlf",
        {"redirect": {"location": "/a\r\nSet-Cookie: x"}},
        f"{RD}.location",
        "character '\\r' is not allowed",
        "",
    ),
    (
        "redirect-non-ascii",
        {"redirect": {"location": "/café"}},
        f"{RD}.location",
        "percent-encode it",
        "",
    ),
    (
        "redirect-bad-percent",
        {"redirect": {"location": "/100%"}},
        f"{RD}.location",
        "percent-escape",
        "",
    ),
    (
        "redirect-unknown-var",
        {"redirect": {"location": "https://$hostname/"}},
        f"{RD}.location",
        "unknown variable $hostname",
        "",
    ),
    (
        "redirect-fragment-keeps-query",
        {"redirect": {"location": "/docs#top"}},
        f"{RD}.location",
        "cannot keep the query",
        "",
    ),
    (
        "redirect-keep-query-type",
        {"redirect": {"location": "/", "keep_query": "yes"}},
        f"{RD}.keep_query",
        "wrong type",
        "bool",
    ),
    (
        "path-rewrite-bad-regex",
        {"path_rewrite": {"match": "^/(a", "replace": "/b"}},
        f"{PR}.match",
        "invalid regular expression",
        "",
    ),
    (
        "path-rewrite-unknown-group",
        {"path_rewrite": {"match": "^/old/(.*)$", "replace": "/new/\\2"}},
        f"{PR}.replace",
        "refers to no group",
        "expected \\1 to \\1",
    ),
    (
        "path-rewrite-unknown-named-group",
        {"path_rewrite": {"match": "^/old/(?P<rest>.*)$", "replace": "/new/\\g<other>"}},
        f"{PR}.replace",
        "refers to no group",
        "",
    ),
    (
        "path-rewrite-relative",
        {"path_rewrite": {"match": "^/old/(.*)$", "replace": "\\1"}},
        f"{PR}.replace",
        "must start with '/'",
        "",
    ),
]


@pytest.mark.parametrize(
    ("entry", "path", "message", "rendered"),
    [v[1:] for v in INVALID],
    ids=[v[0] for v in INVALID],
)
def test_invalid_configs(entry: dict[str, Any], path: str, message: str, rendered: str) -> None:
    with pytest.raises(ConfigError) as caught:
        provision(entry)
    error = caught.value
    assert error.path == path
    assert message in error.message
    assert error.file == "gw.yaml"
    assert str(error).startswith(f"gw.yaml: {path}: ")
    assert rendered in str(error)


# --- Response: what a hook may answer with -------------------------------------------------


def test_response_text_bytes_and_headers() -> None:
    text = Response(404, "gone", {"X-Reason": "moved", "Cache-Control": "no-store"})
    assert (text.status, text.body, text.content_type) == (
        404,
        b"gone",
        "text/plain; charset=utf-8",
    )
    assert text.headers == (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"x-reason", b"moved"),
        (b"cache-control", b"no-store"),
    )
    raw = Response(200, b"\x00\x01")
    assert raw.headers == ((b"content-type", b"application/octet-stream"),)
    assert Response(204).headers == ()
    assert Response(200, "x", content_type="text/csv").content_type == "text/csv"


def test_response_json_and_error_format() -> None:
    assert Response.json(201, {"a": [1]}).body == b'{"a":[1]}'
    error = Response.error(403, "tenant_not_allowed", "no", request_id="abc")
    assert error.status == 403
    assert error.headers == ((b"content-type", b"application/json"),)
    assert error.body == (
        b'{"error":{"status":403,"code":"tenant_not_allowed","message":"no","request_id":"abc"}}'
    )


RESPONSE_ERRORS = [
    ("status-1xx", {"status": 101}, ValueError, "200-599"),
    ("status-600", {"status": 600}, ValueError, "200-599"),
    ("status-bool", {"status": True}, TypeError, "int"),
    ("status-str", {"status": "200"}, TypeError, "int"),
    ("body-type", {"status": 200, "body": 5}, TypeError, "bytes or str"),
    ("header-name", {"status": 200, "headers": {"bad name": "x"}}, ValueError, "header name"),
    ("header-crlf", {"status": 200, "headers": {"x": "a\r\nb: c"}}, ValueError, "control"),
    ("header-nul", {"status": 200, "headers": {"x": "\x00"}}, ValueError, "control"),
    ("header-value-type", {"status": 200, "headers": {"x": 1}}, TypeError, "str"),
    ("framing-header", {"status": 200, "headers": {"Content-Length": "1"}}, ValueError, "fastgw"),
    ("request-id-header", {"status": 200, "headers": {"X-Request-ID": "1"}}, ValueError, "fastgw"),
    ("content-type-crlf", {"status": 200, "content_type": "a\nb"}, ValueError, "control"),
    (
        "content-type-twice",
        {"status": 200, "headers": {"content-type": "a/b"}, "content_type": "c/d"},
        ValueError,
        "both",
    ),
]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [r[1:] for r in RESPONSE_ERRORS],
    ids=[r[0] for r in RESPONSE_ERRORS],
)
def test_response_validation(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Response(**arguments)
