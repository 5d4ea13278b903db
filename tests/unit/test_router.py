"""Router: precedence, captures, hosts, methods, 404/405, explain, shadowed, pattern errors.

Lookup tables run against both the compiled router and its pure-Python reference twin; a
Hypothesis test checks that the two agree on random route sets and requests.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw._core import RoutePatternError, Router, _parse_route_pattern
from tests.twins.routing_reference import ReferenceRouter

# (route_id, hosts, patterns, methods, priority)
RouteSpec = tuple[int, list[str], list[str], list[str] | None, int]


def build(kind: str, routes: list[RouteSpec]) -> Any:
    router = Router() if kind == "compiled" else ReferenceRouter()
    for route_id, hosts, patterns, methods, priority in routes:
        router.add(route_id, hosts, patterns, methods, priority)
    router.compile()
    return router


@pytest.fixture(params=["compiled", "reference"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def found(route_id: int, pattern_id: int, **params: str) -> tuple[Any, ...]:
    return ("found", route_id, pattern_id, params)


NOT_FOUND = ("not_found",)

USERS = [
    (1, [], ["/users/{id}"], ["GET"], 0),
    (2, [], ["/users/me"], ["GET"], 0),
    (3, [], ["/users"], ["GET", "POST"], 0),
    (4, [], ["/users/"], None, 0),
]

PATH_CASES = [
    ("literal-beats-param", USERS, "/users/me", found(2, 1)),
    ("param-captures", USERS, "/users/42", found(1, 0, id="42")),
    ("no-trailing-slash", USERS, "/users", found(3, 2)),
    ("trailing-slash-significant", USERS, "/users/", found(4, 3)),
    ("param-needs-nonempty-segment", USERS[:1], "/users/", NOT_FOUND),
    ("param-one-segment-only", USERS, "/users/1/2", NOT_FOUND),
    ("case-sensitive-path", USERS, "/Users/me", NOT_FOUND),
    (
        "param-beats-catchall",
        [(1, [], ["/files/{*rest}"], None, 0), (2, [], ["/files/{name}"], None, 0)],
        "/files/a.txt",
        found(2, 1, name="a.txt"),
    ),
    (
        "catchall-takes-deeper-paths",
        [(1, [], ["/files/{*rest}"], None, 0), (2, [], ["/files/{name}"], None, 0)],
        "/files/a/b.txt",
        found(1, 0, rest="a/b.txt"),
    ),
    (
        "backtrack-from-literal-to-param",
        [(1, [], ["/a/b/c"], None, 0), (2, [], ["/a/{x}/d"], None, 0)],
        "/a/b/d",
        found(2, 1, x="b"),
    ),
    (
        "backtrack-from-literal-to-catchall",
        [(1, [], ["/a/b/c"], None, 0), (2, [], ["/a/{*rest}"], None, 0)],
        "/a/b/x",
        found(2, 1, rest="b/x"),
    ),
    (
        "backtrack-from-param-to-catchall",
        [(1, [], ["/a/{x}/c"], None, 0), (2, [], ["/{*all}"], None, 0)],
        "/a/b/d",
        found(2, 1, all="a/b/d"),
    ),
    (
        "catchall-empty-rest",
        [(1, [], ["/static/{*p}"], None, 0)],
        "/static",
        found(1, 0, p=""),
    ),
    (
        "catchall-slash-rest",
        [(1, [], ["/static/{*p}"], None, 0)],
        "/static/",
        found(1, 0, p=""),
    ),
    (
        "catchall-multi-segment",
        [(1, [], ["/static/{*p}"], None, 0)],
        "/static/a/b",
        found(1, 0, p="a/b"),
    ),
    (
        "catchall-not-a-prefix-match",
        [(1, [], ["/static/{*p}"], None, 0)],
        "/staticx",
        NOT_FOUND,
    ),
    (
        "exact-end-beats-empty-catchall",
        [(1, [], ["/static/{*p}"], None, 0), (2, [], ["/static"], None, 0)],
        "/static",
        found(2, 1),
    ),
    ("root-pattern", [(1, [], ["/"], None, 0)], "/", found(1, 0)),
    ("root-pattern-only-root", [(1, [], ["/"], None, 0)], "/a", NOT_FOUND),
    ("root-catchall", [(1, [], ["/{*p}"], None, 0)], "/", found(1, 0, p="")),
    (
        "many-params",
        [(1, [], ["/{a}/{b}/x/{c}/{*d}"], None, 0)],
        "/1/2/x/3/4/5",
        found(1, 0, a="1", b="2", c="3", d="4/5"),
    ),
    (
        "equal-pattern-lower-route-id-wins",
        [(7, [], ["/x/{a}"], None, 0), (3, [], ["/x/{b}"], None, 0)],
        "/x/1",
        found(3, 1, b="1"),
    ),
    (
        "same-route-earlier-pattern-wins",
        [(1, [], ["/x/{a}", "/x/{b}"], None, 0)],
        "/x/1",
        found(1, 0, a="1"),
    ),
    (
        "priority-beats-literal",
        [(1, [], ["/users/me"], None, 0), (2, [], ["/users/{id}"], None, 5)],
        "/users/me",
        found(2, 1, id="me"),
    ),
    (
        "priority-beats-lower-route-id",
        [(1, [], ["/x"], None, 0), (2, [], ["/x"], None, 1)],
        "/x",
        found(2, 1),
    ),
    (
        "negative-priority-loses",
        [(1, [], ["/{*all}"], None, 0), (2, [], ["/x"], None, -1)],
        "/x",
        found(1, 0, all="x"),
    ),
    (
        "lower-priority-when-higher-misses",
        [(1, [], ["/a"], None, 0), (2, [], ["/b"], None, 9)],
        "/a",
        found(1, 0),
    ),
    ("relative-path", USERS, "users", NOT_FOUND),
    (
        "percent-encoded-literal",
        [(1, [], ["/a%20b"], None, 0)],
        "/a%20b",
        found(1, 0),
    ),
]


@pytest.mark.parametrize(
    ("routes", "path", "expected"),
    [case[1:] for case in PATH_CASES],
    ids=[case[0] for case in PATH_CASES],
)
def test_path_precedence(kind: str, routes: list[RouteSpec], path: str, expected: Any) -> None:
    assert build(kind, routes).lookup("GET", "example.org", path) == expected


HOSTS = [
    (1, ["api.example.com"], ["/x"], None, 0),
    (2, ["*.example.com"], ["/x", "/w"], None, 0),
    (3, ["*.eu.example.com"], ["/x"], None, 0),
    (4, [], ["/x", "/y", "/w"], None, 0),
    (5, ["API.Other.org"], ["/x"], None, 0),
]

HOST_CASES = [
    ("exact-first", "api.example.com", "/x", found(1, 0)),
    ("wildcard-one-label", "www.example.com", "/x", found(2, 1)),
    ("wildcard-longest-suffix", "a.eu.example.com", "/x", found(3, 3)),
    ("wildcard-many-labels", "a.b.us.example.com", "/x", found(2, 1)),
    ("wildcard-not-apex", "example.com", "/x", found(4, 4)),
    ("wildcard-shorter-suffix-level", "a.eu.example.com", "/w", found(2, 2)),
    ("falls-through-to-hostless", "api.example.com", "/y", found(4, 5)),
    ("exact-host-lowercased-at-add", "api.other.org", "/x", found(5, 7)),
    ("unknown-host", "nope.test", "/x", found(4, 4)),
    ("empty-host", "", "/x", found(4, 4)),
    ("suffix-is-not-a-label-boundary", "xexample.com", "/x", found(4, 4)),
    ("not-found-anywhere", "api.example.com", "/z", NOT_FOUND),
]


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [case[1:] for case in HOST_CASES],
    ids=[case[0] for case in HOST_CASES],
)
def test_host_precedence(kind: str, host: str, path: str, expected: Any) -> None:
    assert build(kind, HOSTS).lookup("GET", host, path) == expected


def test_priority_overrides_host_level(kind: str) -> None:
    router = build(kind, [(1, ["api.example.com"], ["/x"], None, 0), (2, [], ["/x"], None, 1)])
    assert router.lookup("GET", "api.example.com", "/x") == found(2, 1)


METHOD_ROUTES = [
    (1, ["api.example.com"], ["/items/{id}"], ["POST"], 0),
    (2, [], ["/items/{id}"], ["GET", "delete"], 0),
    (3, [], ["/items/new"], ["PUT"], 0),
    (4, [], ["/any"], None, 0),
    (5, [], ["/any"], ["GET"], 0),
    (6, [], ["/pair"], ["GET"], 0),
    (7, [], ["/pair"], ["PATCH"], 0),
    (8, [], ["/trace"], ["GET", "TRACE"], 0),
]

METHOD_CASES = [
    ("method-allowed", "GET", "h.test", "/items/1", found(2, 1, id="1")),
    ("method-case-normalised-at-add", "DELETE", "h.test", "/items/1", found(2, 1, id="1")),
    ("405-allow-list", "PUT", "h.test", "/items/1", ("method_not_allowed", ["GET", "DELETE"])),
    (
        "405-union-on-one-level",
        "OPTIONS",
        "h.test",
        "/items/new",
        ("method_not_allowed", ["GET", "PUT", "DELETE"]),
    ),
    ("backtrack-on-method", "GET", "h.test", "/items/new", found(2, 1, id="new")),
    ("literal-when-method-fits", "PUT", "h.test", "/items/new", found(3, 2)),
    ("exact-host-level-first", "POST", "api.example.com", "/items/1", found(1, 0, id="1")),
    ("falls-to-next-level-on-method", "GET", "api.example.com", "/items/1", found(2, 1, id="1")),
    (
        "405-from-most-specific-level",
        "PATCH",
        "api.example.com",
        "/items/1",
        ("method_not_allowed", ["POST"]),
    ),
    ("any-method-route", "PURGE", "h.test", "/any", found(4, 3)),
    ("any-method-wins-by-route-id", "GET", "h.test", "/any", found(4, 3)),
    (
        "nonstandard-method-405",
        "PURGE",
        "h.test",
        "/pair",
        ("method_not_allowed", ["GET", "PATCH"]),
    ),
    ("second-route-same-pattern", "PATCH", "h.test", "/pair", found(7, 6)),
    ("head-is-not-get", "HEAD", "h.test", "/pair", ("method_not_allowed", ["GET", "PATCH"])),
    ("404-when-no-path-match", "GET", "h.test", "/nope", NOT_FOUND),
    # TRACE echoes the request: a route takes it only by naming it
    (
        "trace-not-taken-by-any-method-route",
        "TRACE",
        "h.test",
        "/any",
        ("method_not_allowed", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    ),
    ("trace-on-a-route-naming-it", "TRACE", "h.test", "/trace", found(8, 7)),
]


@pytest.mark.parametrize(
    ("method", "host", "path", "expected"),
    [case[1:] for case in METHOD_CASES],
    ids=[case[0] for case in METHOD_CASES],
)
def test_methods(kind: str, method: str, host: str, path: str, expected: Any) -> None:
    assert build(kind, METHOD_ROUTES).lookup(method, host, path) == expected


def test_many_static_children_use_the_hash_table(kind: str) -> None:
    routes: list[RouteSpec] = [(i, [], [f"/svc{i}/v1/{{id}}"], None, 0) for i in range(300)]
    routes.append((1000, [], ["/{name}/v1/{id}"], ["GET"], 0))
    router = build(kind, routes)
    for i in (0, 7, 8, 9, 150, 299):
        assert router.lookup("GET", "", f"/svc{i}/v1/x") == found(i, i, id="x")
    assert router.lookup("GET", "", "/svc300/v1/x") == found(1000, 300, name="svc300", id="x")
    assert router.lookup("POST", "", "/svc300/v1/x") == ("method_not_allowed", ["GET"])


def test_many_hosts(kind: str) -> None:
    routes: list[RouteSpec] = [(i, [f"h{i}.example.com"], ["/x"], None, 0) for i in range(100)]
    routes += [(100 + i, [f"*.w{i}.example.com"], ["/x"], None, 0) for i in range(100)]
    router = build(kind, routes)
    assert router.lookup("GET", "h57.example.com", "/x") == found(57, 57)
    assert router.lookup("GET", "a.b.w42.example.com", "/x") == found(142, 142)
    assert router.lookup("GET", "w42.example.com", "/x") == NOT_FOUND


def test_pattern_ids_params_and_text() -> None:
    router = Router()
    assert router.add(9, [], ["/a/{x}", "/b/{*rest}"]) == [0, 1]
    assert router.add(3, ["a.test"], ["/c/{y}/{z}"], ["GET"], 2) == [2]
    router.compile()
    assert router.pattern_params(2) == ["y", "z"]
    assert router.pattern_params(1) == ["rest"]
    assert router.pattern_text(0) == "/a/{x}"
    for unknown in (-1, 3):
        with pytest.raises(IndexError, match="unknown pattern id"):
            router.pattern_params(unknown)
    assert router.describe() == [
        {
            "route_id": 9,
            "pattern_id": 0,
            "hosts": [],
            "pattern": "/a/{x}",
            "methods": None,
            "priority": 0,
        },
        {
            "route_id": 9,
            "pattern_id": 1,
            "hosts": [],
            "pattern": "/b/{*rest}",
            "methods": None,
            "priority": 0,
        },
        {
            "route_id": 3,
            "pattern_id": 2,
            "hosts": ["a.test"],
            "pattern": "/c/{y}/{z}",
            "methods": ["GET"],
            "priority": 2,
        },
    ]


def test_lifecycle_errors() -> None:
    router = Router()
    router.add(1, [], ["/a"])
    with pytest.raises(ValueError, match="added twice"):
        router.add(1, [], ["/b"])
    with pytest.raises(RuntimeError, match="compile"):
        router.lookup("GET", "", "/a")
    router.compile()
    router.compile()
    with pytest.raises(RuntimeError, match="after compile"):
        router.add(2, [], ["/b"])
    assert router.lookup("GET", "", "/a") == found(1, 0)


def test_empty_router() -> None:
    router = Router()
    with pytest.raises(RuntimeError, match="compile"):
        router.shadowed()
    router.compile()
    assert router.lookup("GET", "a.test", "/") == NOT_FOUND
    assert router.shadowed() == []


BAD_PATTERNS = [
    ("no-leading-slash", "users", "must start with '/'"),
    ("empty", "", "must start with '/'"),
    ("empty-segment", "/a//b", "empty segment"),
    ("mixed-segment", "/a{x}b", "mixes literal text"),
    ("half-brace", "/a/{x", "mixes literal text"),
    ("catchall-not-last", "/a/{*x}/b", "must be the last segment"),
    ("empty-name", "/a/{}", "not an identifier"),
    ("bad-name", "/a/{1x}", "not an identifier"),
    ("empty-catchall-name", "/a/{*}", "not an identifier"),
    ("duplicate-name", "/{x}/{x}", "appears twice"),
    ("too-many-captures", "/" + "/".join(f"{{p{i}}}" for i in range(17)), "at most 16"),
    ("space", "/a b", "not allowed"),
    ("query", "/a?b", "not allowed"),
    ("too-many-segments", "/a" * 257, "at most 256"),
    ("long-segment", "/" + "a" * 1025, "longer than 1024"),
    ("bad-percent", "/a%zz", "percent-escape"),
    ("short-percent", "/a%2", "percent-escape"),
]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [case[1:] for case in BAD_PATTERNS],
    ids=[case[0] for case in BAD_PATTERNS],
)
def test_invalid_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Router().add(1, [], [pattern])


def test_pattern_errors_list_every_bad_pattern_and_leave_no_trace() -> None:
    router = Router()
    with pytest.raises(RoutePatternError) as info:
        router.add(1, ["bad host:1"], ["/ok", "/a//b", "/{x}/{x}", "/fine/{y}"])
    assert [index for index, _ in info.value.errors] == [1, 2]
    assert "empty segment" in info.value.errors[0][1]
    assert "appears twice" in info.value.errors[1][1]
    assert str(info.value) == info.value.errors[0][1]
    with pytest.raises(ValueError, match="port"):  # hosts are checked after the patterns
        router.add(1, ["bad host:1"], ["/ok"])
    assert router.add(1, [], ["/ok/{z}"]) == [0]
    router.compile()
    assert router.lookup("GET", "h", "/ok/7") == found(1, 0, z="7")
    assert router.describe()[0]["pattern"] == "/ok/{z}"


PATTERN_PIECES = ["/", "a", "%2F", "%2", "%zz", "{", "}", "{x}", "{*r}", "{1}", "{x", "é", " ", "_"]


@settings(max_examples=500, deadline=None)
@given(pieces=st.lists(st.sampled_from(PATTERN_PIECES), max_size=8))
def test_add_accepts_exactly_what_the_pattern_parser_accepts(pieces: list[str]) -> None:
    pattern = "".join(pieces)
    try:
        _segments, names = _parse_route_pattern(pattern)
    except ValueError as exc:
        with pytest.raises(RoutePatternError) as info:
            Router().add(1, [], [pattern])
        assert info.value.errors == [(0, str(exc))]
    else:
        router = Router()
        assert router.add(1, [], [pattern]) == [0]
        assert router.pattern_params(0) == names


BAD_ROUTES = [
    ("no-patterns", {"patterns": []}, "non-empty list"),
    ("patterns-as-string", {"patterns": "/a"}, "non-empty list"),
    ("hosts-as-string", {"hosts": "a.test"}, "list of host names"),
    ("bare-star-host", {"hosts": ["*"]}, "omit hosts"),
    ("inner-star-host", {"hosts": ["a.*.test"]}, "first label"),
    ("host-with-port", {"hosts": ["a.test:80"]}, "port"),
    ("host-with-slash", {"hosts": ["a/b"]}, "not a valid host"),
    ("empty-host", {"hosts": [""]}, "non-empty"),
    ("empty-label", {"hosts": ["a..test"]}, "not a valid host"),
    ("not-a-token", {"methods": ["GE T"]}, "not a method name"),
    ("empty-method", {"methods": [""]}, "not a method name"),
    ("methods-as-string", {"methods": "GET"}, "list of method names"),
    ("non-ascii-host", {"hosts": ["bücher.example"]}, "punycode"),
    ("deep-wildcard", {"hosts": ["*." + "a." * 32 + "test"]}, "at most 32 labels"),
]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [case[1:] for case in BAD_ROUTES],
    ids=[case[0] for case in BAD_ROUTES],
)
def test_invalid_routes(overrides: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"hosts": [], "patterns": ["/a"], "methods": None}
    arguments.update(overrides)
    with pytest.raises(ValueError, match=message):
        Router().add(1, **arguments)


def test_valid_host_forms() -> None:
    router = Router()
    router.add(1, ["127.0.0.1", "[::1]", "xn--bcher-kva.example", "*.A.Test"], ["/"])
    router.compile()
    assert router.lookup("GET", "[::1]", "/") == found(1, 0)
    assert router.lookup("GET", "b.a.test", "/") == found(1, 0)


def test_explain_names_winner_and_reason() -> None:
    router = build(
        "compiled",
        [
            (1, [], ["/users/{id}"], ["GET"], 0),
            (2, [], ["/users/me"], ["POST"], 0),
            (3, ["api.example.com"], ["/other"], None, 0),
        ],
    )
    lines = router.explain("GET", "api.example.com", "/users/me")
    text = "\n".join(lines)
    assert "[priority 0, exact 'api.example.com'] no path pattern matches" in text
    assert "route 2 '/users/me' (POST): GET not allowed" in text
    assert "winner: route 1 '/users/{id}'" in text
    assert "the path patterns before it do not allow GET" in text

    lines = build("compiled", USERS).explain("GET", "", "/users/me")
    assert "  over route 1 '/users/{id}': a literal segment beats {param} at segment 2" in lines
    # With the config's names, as `fastgw routes --explain` shows them.
    named = build("compiled", USERS).explain("GET", "", "/users/me", {1: "by-id", 2: "me"})
    assert "  over route 'by-id' '/users/{id}': a literal segment beats {param} at segment 2" in (
        named
    )


def test_methods_beyond_the_standard_ones() -> None:
    router = build(
        "compiled",
        [(1, [], ["/cache/{*rest}"], ["PURGE", "GET"], 0), (2, [], ["/dav"], ["PROPFIND"], 0)],
    )
    assert router.lookup("PURGE", "", "/cache/x")[0] == "found"
    assert router.lookup("PROPFIND", "", "/dav")[:2] == ("found", 2)
    # Methods are case-sensitive (RFC 9110 9.1): "purge" is another method.
    assert router.lookup("purge", "", "/cache/x") == ("method_not_allowed", ["GET", "PURGE"])
    assert router.lookup("PROPFIND", "", "/cache/x") == ("method_not_allowed", ["GET", "PURGE"])
    assert router.lookup("MKCOL", "", "/dav") == ("method_not_allowed", ["PROPFIND"])


def test_too_many_methods_beyond_the_standard_ones() -> None:
    router = Router()
    for i in range(22):
        router.add(i, [], [f"/m{i}"], [f"M{i}"])
    with pytest.raises(ValueError, match="at most 22 methods"):
        router.add(22, [], ["/m22"], ["M22"])


def test_explain_405_and_404() -> None:
    router = build("compiled", USERS)
    assert "result: 405 method not allowed; Allow from [priority 0, any host]: GET" in (
        router.explain("PUT", "", "/users/7")
    )
    assert "result: 404 no route matches" in router.explain("GET", "", "/nothing")


SHADOW_CASES = [
    ("duplicate-pattern", [(1, [], ["/a/{x}"], None, 0), (2, [], ["/a/{y}"], None, 0)], [(2, 1)]),
    (
        "methods-covered",
        [(1, [], ["/a"], ["GET", "POST"], 0), (2, [], ["/a"], ["GET"], 0)],
        [(2, 1)],
    ),
    ("methods-not-covered", [(1, [], ["/a"], ["GET"], 0), (2, [], ["/a"], ["POST"], 0)], []),
    ("any-method-not-covered", [(1, [], ["/a"], ["GET"], 0), (2, [], ["/a"], None, 0)], []),
    (
        "later-added-lower-id-shadows",
        [(5, [], ["/a"], None, 0), (2, [], ["/a"], None, 0)],
        [(5, 2)],
    ),
    (
        "different-host-not-shadowed",
        [(1, ["a.test"], ["/a"], None, 0), (2, ["b.test"], ["/a"], None, 0)],
        [],
    ),
    (
        "host-subset-same-priority-not-shadowed",
        [(1, [], ["/a"], None, 0), (2, ["b.test"], ["/a"], None, 0)],
        [],
    ),
    (
        "priority-catchall",
        [(1, [], ["/{*all}"], None, 1), (2, ["b.test"], ["/a/b"], ["GET"], 0)],
        [(2, 1)],
    ),
    (
        "priority-param-over-literal",
        [(1, ["*.test"], ["/a/{x}"], None, 1), (2, ["b.test", "c.d.test"], ["/a/b"], None, 0)],
        [(2, 1)],
    ),
    (
        "priority-but-narrower-host",
        [(1, ["b.test"], ["/{*all}"], None, 1), (2, [], ["/a"], None, 0)],
        [],
    ),
    (
        "priority-param-does-not-cover-empty",
        [(1, [], ["/a/{x}"], None, 1), (2, [], ["/a/{*rest}"], None, 0)],
        [],
    ),
    (
        "same-priority-general-does-not-shadow",
        [(1, [], ["/{*all}"], None, 0), (2, [], ["/a"], None, 0)],
        [],
    ),
    (
        "all-patterns-must-be-covered",
        [(1, [], ["/a"], None, 0), (2, [], ["/a", "/b"], None, 0)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("routes", "expected"),
    [case[1:] for case in SHADOW_CASES],
    ids=[case[0] for case in SHADOW_CASES],
)
def test_shadowed(kind: str, routes: list[RouteSpec], expected: list[tuple[int, int]]) -> None:
    assert build(kind, routes).shadowed() == expected


def test_shadowed_names_the_first_shadower() -> None:
    routes: list[RouteSpec] = [
        (7, [], ["/a"], None, 0),
        (3, [], ["/b", "/a"], None, 0),
        (9, ["x.test"], ["/{*all}"], None, 2),
        (4, [], ["/{*all}"], None, 2),
        (5, ["*.test"], ["/x/{p}"], None, 3),
        (8, ["x.test"], ["/x/y", "/a"], ["GET"], 1),
        (6, ["x.test"], ["/q"], None, 0),
    ]
    # 7: same shape, lower id, before any higher tier; 8: its first pair decides; 6: of two
    # higher routes of one priority, the one added first.
    expected = [(3, 4), (6, 9), (7, 3), (8, 5)]
    assert build("compiled", routes).shadowed() == expected
    assert build("reference", routes).shadowed() == expected


# --- compiled router vs reference twin ------------------------------------------------

LITERALS = ["a", "b", "", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"]
HOST_CHOICES = ["a.x.test", "b.x.test", "*.x.test", "*.a.x.test", "x.test"]
REQUEST_HOSTS = ["a.x.test", "b.x.test", "c.a.x.test", "x.test", "other.test", ""]
REQUEST_METHODS = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "PURGE",
    "PROPFIND",
]


@st.composite
def patterns(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 4))
    parts = []
    for index in range(count):
        last = index == count - 1
        choice = draw(
            st.sampled_from(["lit", "lit", "param", "rest"] if last else ["lit", "param"])
        )
        if choice == "lit":
            literal = draw(st.sampled_from(LITERALS if last else LITERALS[:2] + LITERALS[3:]))
            parts.append(literal)
        elif choice == "param":
            parts.append(f"{{p{index}}}")
        else:
            parts.append(f"{{*r{index}}}")
    return "/" + "/".join(parts)


@st.composite
def route_sets(draw: st.DrawFn) -> list[RouteSpec]:
    count = draw(st.integers(1, 12))
    routes: list[RouteSpec] = []
    for route_id in draw(st.permutations(range(count))):
        hosts = draw(st.lists(st.sampled_from(HOST_CHOICES), max_size=2))
        pattern_list = draw(st.lists(patterns(), min_size=1, max_size=3))
        methods = draw(
            # PURGE and PROPFIND: methods without a standard id take a bit of their own.
            st.none() | st.lists(st.sampled_from(REQUEST_METHODS), min_size=1, max_size=3)
        )
        priority = draw(st.sampled_from([0, 0, 0, 1]))
        routes.append((route_id, hosts, pattern_list, methods, priority))
    return routes


request_paths = st.lists(st.sampled_from([*LITERALS, "zz"]), max_size=5).map(
    lambda parts: "/" + "/".join(parts)
)


def path_for(pattern: str, data: st.DataObject) -> str:
    """A request path built from a route's pattern, so that literal routes get hit too."""
    parts: list[str] = []
    for segment in pattern[1:].split("/"):
        if segment.startswith("{*"):
            parts += data.draw(st.lists(st.sampled_from(["a", "s1", "zz", ""]), max_size=2))
        elif segment.startswith("{"):
            parts.append(data.draw(st.sampled_from(["a", "s2", "zz"])))
        else:
            parts.append(segment)
    return "/" + "/".join(parts)


@settings(max_examples=300, deadline=None)
@given(routes=route_sets(), data=st.data())
def test_compiled_router_agrees_with_reference(
    routes: list[RouteSpec], data: st.DataObject
) -> None:
    compiled = build("compiled", routes)
    reference = build("reference", routes)
    route_patterns = [pattern for route in routes for pattern in route[2]]
    requests = []
    for _ in range(10):
        method = data.draw(st.sampled_from(REQUEST_METHODS))
        host = data.draw(st.sampled_from(REQUEST_HOSTS))
        if data.draw(st.booleans()):
            path = data.draw(request_paths)
        else:
            path = path_for(data.draw(st.sampled_from(route_patterns)), data)
        requests.append((method, host, path))
        assert compiled.lookup(method, host, path) == reference.lookup(method, host, path)
    assert compiled.shadowed() == reference.shadowed()
    # explain() re-walks the compiled tables in Python; its verdict must be match()'s.
    method, host, path = requests[0]
    result = compiled.lookup(method, host, path)
    lines = compiled.explain(method, host, path)
    if result[0] == "found":
        expected = f"winner: route {result[1]} {compiled.pattern_text(result[2])!r} "
    elif result[0] == "method_not_allowed":
        expected = "result: 405 method not allowed"
    else:
        expected = "result: 404 no route matches"
    assert any(line.startswith(expected) for line in lines), lines
    if result[0] == "method_not_allowed":
        assert next(line for line in lines if line.startswith(expected)).endswith(
            ": " + ", ".join(result[1])
        )


# -- route conditions: match.headers / match.query --------------------------------------

CONDITION_ROUTES = [
    # (route_id, patterns, methods, headers, query)
    (0, ["/api/{*rest}"], None, None, None),
    (1, ["/api/{*rest}"], None, {"X-Canary": "yes"}, None),
    (2, ["/api/{*rest}"], ["GET"], None, {"v": "2"}),
    (3, ["/api/{*rest}"], None, {"x-any": "*"}, {"flag": "*"}),
    (4, ["/only/{id}"], None, {"x-key": "k"}, None),
]


@pytest.fixture(scope="module")
def condition_router() -> Router:
    router = Router()
    for route_id, patterns, methods, headers, query in CONDITION_ROUTES:
        router.add(route_id, [], patterns, methods, 0, headers, query)
    router.compile()
    return router


@pytest.mark.parametrize(
    ("method", "path", "headers", "query", "expected"),
    [
        pytest.param("GET", "/api/x", [], None, ("found", 0), id="no-condition-met"),
        pytest.param("GET", "/api/x", [("x-canary", "yes")], None, ("found", 1), id="header"),
        pytest.param(
            "GET", "/api/x", [("X-CANARY", "yes")], None, ("found", 1), id="header-name-any-case"
        ),
        pytest.param(
            "GET", "/api/x", [("x-canary", "YES")], None, ("found", 0), id="header-value-exact"
        ),
        pytest.param("GET", "/api/x", [], "a=1&v=2", ("found", 2), id="query-value"),
        pytest.param("GET", "/api/x", [], "v=22", ("found", 0), id="query-value-exact"),
        pytest.param("GET", "/api/x", [], "xv=2", ("found", 0), id="query-name-exact"),
        pytest.param("POST", "/api/x", [], "v=2", ("found", 0), id="condition-and-method"),
        pytest.param(
            "GET",
            "/api/x",
            [("x-any", "")],
            "flag",
            ("found", 3),
            id="any-value-needs-presence-only",
        ),
        pytest.param(
            "GET",
            "/api/x",
            [("x-any", "1")],
            "flags=1",
            ("found", 0),
            id="all-conditions-must-hold",
        ),
        pytest.param(
            "GET", "/only/7", [], None, ("not_found",), id="unmet-condition-is-404-not-405"
        ),
        pytest.param("GET", "/only/7", [("x-key", "k")], None, ("found", 4), id="only-route"),
    ],
)
def test_conditions(
    condition_router: Router,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    query: str | None,
    expected: tuple[Any, ...],
) -> None:
    result = condition_router.lookup(method, "h", path, headers=headers, query=query)
    assert result[: len(expected)] == expected


def test_conditional_route_goes_first_whatever_its_order() -> None:
    router = Router()
    router.add(0, [], ["/a"])
    router.add(1, [], ["/a"], headers={"x-beta": "1"})
    router.compile()
    assert router.lookup("GET", "h", "/a", headers=[("x-beta", "1")])[1] == 1
    assert router.lookup("GET", "h", "/a")[1] == 0
    assert router.shadowed() == []


def test_conditional_route_below_an_unconditional_higher_priority_is_shadowed() -> None:
    router = Router()
    router.add(0, [], ["/{*rest}"], priority=5)
    router.add(1, [], ["/a"], headers={"x-beta": "1"})
    router.compile()
    assert router.shadowed() == [(1, 0)]
