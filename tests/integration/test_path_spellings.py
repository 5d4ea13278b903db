"""A policy on a path cannot be skipped by another spelling of it, over real sockets.

`/admin/{*rest}` is protected by an `ip_restriction` that denies every loopback client (403
`ip_forbidden`); `/{*rest}` is open and goes to another upstream. Every spelling of
`/admin/x` a backend could read as that resource must either meet the policy or be refused
with 400, and the open upstream must never see it. The path a request is routed by is the
path the upstream receives (docs/strictness.md "Path").
"""

from __future__ import annotations

from typing import Any

import pytest

DENY_ALL = {"ip_restriction": {"deny": ["127.0.0.0/8", "::1/128"]}}


def stack(module_gateway: Any, module_upstream: Any, **limits: Any) -> Any:
    admin = module_upstream("echo", name="admin")
    public = module_upstream("echo", name="public")
    routes = [
        module_gateway.route("admin", ["/admin/{*rest}"], "admin", policies=[DENY_ALL]),
        module_gateway.route("trace", ["/trace"], "public", methods=["GET", "TRACE"]),
        module_gateway.route("open", ["/{*rest}"], "public"),
    ]
    gw = module_gateway(routes=routes, upstreams={"admin": admin, "public": public}, limits=limits)
    return gw, admin, public


@pytest.fixture(scope="module")
def strict(module_gateway: Any, module_upstream: Any) -> Any:
    return stack(module_gateway, module_upstream)


@pytest.fixture(scope="module")
def lenient(module_gateway: Any, module_upstream: Any) -> Any:
    return stack(module_gateway, module_upstream, merge_slashes=False, path_semicolons="allow")


# (id, target, what the gateway answers: "policy" is the protected route's 403, a str an
# error code answered 400)
SPELLINGS: list[tuple[str, str, str]] = [
    ("plain", "/admin/x", "policy"),
    ("leading-double-slash", "//admin/x", "policy"),
    ("inner-double-slash", "/admin//x", "policy"),
    ("many-slashes", "///admin///x", "policy"),
    ("semicolon-parameters", "/admin;x=1/x", "semicolon_in_path"),
    ("encoded-semicolon", "/admin%3Bx=1/x", "semicolon_in_path"),
    ("tomcat-dotdot-semicolon", "/public/..;/admin/x", "semicolon_in_path"),
    ("encoded-letter", "/%61dmin/x", "policy"),
    ("encoded-letters-lowercase-hex", "/%61%64%6d%69%6e/x", "policy"),
    ("encoded-slash", "/admin%2fx", "encoded_separator"),
    ("encoded-slash-upper", "/admin%2Fx", "encoded_separator"),
    ("encoded-backslash", "/public%5c..%5cadmin/x", "encoded_separator"),
    ("raw-backslash", "/public\\..\\admin/x", "backslash_in_path"),
    ("dot-before", "/./admin/x", "policy"),
    ("dot-after", "/admin/./x", "policy"),
    ("dotdot-from-public", "/public/../admin/x", "policy"),
    ("encoded-dotdot-from-public", "/public/%2e%2e/admin/x", "policy"),
    ("encoded-dotdot-above-root", "/%2e%2e/admin", "path_above_root"),
    ("dotdot-after-double-slash", "/public//../admin/x", "policy"),
    ("overlong-dots", "/public/%C0%AE%C0%AE/admin/x", "bad_utf8_in_path"),
    ("overlong-slash", "/public/..%C0%AFadmin/x", "bad_utf8_in_path"),
    ("overlong-three-byte-dot", "/public/%E0%80%AE%E0%80%AE/admin/x", "bad_utf8_in_path"),
    ("truncated-utf8", "/admin%C3/x", "bad_utf8_in_path"),
    ("iis-unicode", "/public/%u002e%u002e/admin/x", "bad_percent_encoding"),
]


@pytest.mark.parametrize(
    ("target", "outcome"), [s[1:] for s in SPELLINGS], ids=[s[0] for s in SPELLINGS]
)
def test_spellings_of_admin_meet_its_policy_or_are_refused(
    strict: Any, target: str, outcome: str
) -> None:
    gw, admin, public = strict
    public.requests.clear()
    admin.requests.clear()
    response = gw.request("GET", target)
    if outcome == "policy":
        assert response.status == 403, (response.status, response.body)
        assert response.error()["code"] == "ip_forbidden"
    else:
        assert response.status == 400, (response.status, response.body)
        assert response.error()["code"] == outcome
    # a refused or denied request reaches no upstream, and the open route never saw it
    assert public.requests == []
    assert admin.requests == []


def test_double_encoding_is_decoded_once(strict: Any) -> None:
    # "%252e%252e" is a literal "%2e%2e" to the backend, not "..": forwarded untouched
    gw, _admin, public = strict
    public.requests.clear()
    response = gw.request("GET", "/public/%252e%252e/admin/x")
    assert response.status == 200, response.body
    assert response.json()["target"] == "/public/%252e%252e/admin/x"


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("//public//x", "/public/x"),
        ("/public/./x/../y", "/public/y"),
        ("/%70ublic/caf%c3%a9?q=%2f//", "/public/caf%C3%A9?q=%2f//"),
    ],
    ids=["merged", "dot-segments", "escapes"],
)
def test_the_routed_path_is_the_forwarded_path(strict: Any, target: str, forwarded: str) -> None:
    gw, _admin, _public = strict
    response = gw.request("GET", target)
    assert response.status == 200, response.body
    assert response.json()["target"] == forwarded


def test_raw_non_ascii_is_refused(strict: Any, http: Any) -> None:
    gw, _admin, public = strict
    public.requests.clear()
    response, _closed = gw.exchange(
        b"GET /public/\xc0\xae\xc0\xae/admin/x HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert response.status == 400
    assert response.error()["code"] == "bad_target"
    assert public.requests == []


def test_trace_is_refused_by_a_route_without_methods(strict: Any) -> None:
    gw, _admin, public = strict
    public.requests.clear()
    response = gw.request("TRACE", "/public/x")
    assert response.status == 405
    assert response.error()["code"] == "method_not_allowed"
    assert response.header("allow") == "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"
    assert public.requests == []


def test_trace_reaches_a_route_that_lists_it(strict: Any) -> None:
    gw, _admin, _public = strict
    response = gw.request("TRACE", "/trace")
    assert response.status == 200, response.body
    assert response.json()["method"] == "TRACE"


@pytest.mark.parametrize(
    ("target", "outcome"),
    [
        ("/public/..;/admin/x", "dot_segment_parameters"),
        ("/public/%2e%2e;x=1/admin/x", "dot_segment_parameters"),
        ("/public/.;/x", "dot_segment_parameters"),
        ("/public/%C0%AE%C0%AE/admin/x", "bad_utf8_in_path"),
        ("/admin%2fx", "encoded_separator"),
    ],
    ids=["dotdot-semicolon", "encoded-dotdot-semicolon", "dot-semicolon", "overlong", "slash"],
)
def test_lenient_limits_still_refuse_traversal(lenient: Any, target: str, outcome: str) -> None:
    gw, admin, public = lenient
    public.requests.clear()
    response = gw.request("GET", target)
    assert response.status == 400, (response.status, response.body)
    assert response.error()["code"] == outcome
    assert public.requests == [] and admin.requests == []


@pytest.mark.parametrize(
    "target",
    ["/public;v=1/x", "/public//x", "//public/x;y"],
    ids=["semicolon", "double-slash", "both"],
)
def test_lenient_limits_forward_exactly_what_was_routed(lenient: Any, target: str) -> None:
    # with merge_slashes: false and path_semicolons: allow, "//" and ";" are the backend's
    # business: routed as received and forwarded as received
    gw, _admin, _public = lenient
    response = gw.request("GET", target)
    assert response.status == 200, response.body
    assert response.json()["target"] == target
