"""cors over real sockets: preflights answered by the gateway (before key_auth, never
forwarded), the preflight table of allowed and refused origins, methods and headers, the
fields an actual response gets (Vary joined to the upstream's, the upstream's own CORS fields
replaced), `*` and `null`, and what local answers carry."""

from __future__ import annotations

from typing import Any

import pytest

ALICE = "alice-key-0123456789abcdef"
APP = "https://app.example.com"
CORS = {
    "origins": [APP, "https://*.example.com", "http://localhost:3000"],
    "credentials": True,
    "methods": ["GET", "POST"],
    "headers": ["content-type", "authorization"],
    "expose_headers": ["x-request-id"],
    "max_age": "10m",
}
VARY_PREFLIGHT = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


@pytest.fixture(scope="module")
def stack(module_gateway: Any, module_upstream: Any) -> Any:
    echo = module_upstream("echo", name="be")
    own = module_upstream(
        "fixed",
        name="own",
        body=b"{}",
        headers=[
            ("Content-Type", "application/json"),
            ("Vary", "Accept-Encoding"),
            ("Access-Control-Allow-Origin", "https://upstream-says.test"),
            ("Access-Control-Allow-Credentials", "true"),
        ],
    )
    star = module_upstream("fixed", name="star", body=b"{}", headers=[("Vary", "*")])
    proc = module_gateway(
        consumers=[{"name": "alice", "credentials": [{"key_auth": {"key": ALICE}}]}],
        routes=[
            module_gateway.route("cors", ["/cors/{*rest}"], "be", policies=[{"cors": CORS}]),
            # key_auth is listed first: cors still answers the preflight before it.
            module_gateway.route(
                "keyed", ["/keyed"], "be", policies=[{"key_auth": {}}, {"cors": CORS}]
            ),
            module_gateway.route(
                "limited",
                ["/limited"],
                "be",
                policies=[
                    {"cors": CORS},
                    {"rate_limit": {"limits": [{"rate": 1, "per": "1m"}], "key": "route"}},
                ],
            ),
            module_gateway.route(
                "public", ["/public"], "be", policies=[{"cors": {"origins": ["*"], "headers": "*"}}]
            ),
            module_gateway.route(
                "sandboxed", ["/sandboxed"], "be", policies=[{"cors": {"origins": ["null"]}}]
            ),
            module_gateway.route("own", ["/own"], "own", policies=[{"cors": {"origins": [APP]}}]),
            module_gateway.route(
                "vary-star", ["/vary-star"], "star", policies=[{"cors": {"origins": [APP]}}]
            ),
        ],
        upstreams={"be": echo, "own": own, "star": star},
    )
    proc.echo = echo
    return proc


def send(http: Any, stack: Any, method: str, target: str, headers: list[tuple[str, str]]) -> Any:
    with http.RawClient(stack.host, stack.port) as client:
        return client.request(method, target, headers)


def preflight(
    http: Any,
    stack: Any,
    target: str,
    origin: str | None,
    method: str = "POST",
    headers: str | None = None,
) -> Any:
    fields = [("Access-Control-Request-Method", method)]
    if origin is not None:
        fields.append(("Origin", origin))
    if headers is not None:
        fields.append(("Access-Control-Request-Headers", headers))
    return send(http, stack, "OPTIONS", target, fields)


def cors_fields(response: Any) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in response.headers
        if name.lower().startswith("access-control-")
    }


def test_an_allowed_preflight_is_answered_by_the_gateway(http: Any, stack: Any) -> None:
    seen = len(stack.echo.requests)
    response = preflight(http, stack, "/cors/orders", APP, "POST", "Content-Type, Authorization")
    assert response.status == 204, response
    assert response.body == b""
    # RFC 9110 8.6: a 204 carries no Content-Length.
    assert response.header("content-length") is None
    assert cors_fields(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "content-type, authorization",
        "access-control-allow-credentials": "true",
        "access-control-max-age": "600",
    }
    assert response.header("vary") == VARY_PREFLIGHT
    assert response.header("x-request-id")
    assert len(stack.echo.requests) == seen  # never forwarded


PREFLIGHTS = [
    ("exact", APP, "GET", None, APP),
    ("exact-uppercase", "HTTPS://APP.EXAMPLE.COM", "GET", None, APP),
    ("default-port", "https://app.example.com:443", "GET", None, APP),
    ("subdomain", "https://api.example.com", "POST", "content-type", "https://api.example.com"),
    ("deep-subdomain", "https://a.b.example.com", "GET", None, "https://a.b.example.com"),
    ("localhost-port", "http://localhost:3000", "GET", None, "http://localhost:3000"),
    ("no-headers-asked", APP, "POST", "", APP),
    ("bare-domain", "https://example.com", "GET", None, None),
    ("lookalike", "https://evil-example.com", "GET", None, None),
    ("suffix", "https://app.example.com.evil.test", "GET", None, None),
    ("other-scheme", "http://app.example.com", "GET", None, None),
    ("other-port", "https://app.example.com:8443", "GET", None, None),
    ("localhost-other-port", "http://localhost:3001", "GET", None, None),
    ("null", "null", "GET", None, None),
    ("garbage-origin", "app.example.com", "GET", None, None),
    ("method-not-allowed", APP, "DELETE", None, None),
    ("method-lowercase", APP, "post", None, APP),
    ("header-not-allowed", APP, "POST", "content-type, x-secret", None),
    ("header-not-a-token", APP, "POST", "content-type, x(y)", None),
]


@pytest.mark.parametrize(
    ("origin", "method", "asked", "allowed"),
    [v[1:] for v in PREFLIGHTS],
    ids=[v[0] for v in PREFLIGHTS],
)
def test_preflight_table(
    http: Any, stack: Any, origin: str, method: str, asked: str | None, allowed: str | None
) -> None:
    seen = len(stack.echo.requests)
    response = preflight(http, stack, "/cors/x", origin, method, asked)
    if allowed is None:
        assert response.status == 403, response
        assert response.error()["code"] == "cors_origin_forbidden"
        assert cors_fields(response) == {}
    else:
        assert response.status == 204, response
        assert cors_fields(response)["access-control-allow-origin"] == allowed
    assert response.header("vary") == VARY_PREFLIGHT
    assert len(stack.echo.requests) == seen


def test_a_preflight_needs_no_key_even_with_key_auth_listed_first(http: Any, stack: Any) -> None:
    seen = len(stack.echo.requests)
    response = preflight(http, stack, "/keyed", APP, "GET", "authorization")
    assert response.status == 204, response
    assert cors_fields(response)["access-control-allow-origin"] == APP
    assert cors_fields(response)["access-control-allow-headers"] == "content-type, authorization"
    assert len(stack.echo.requests) == seen
    # A refused preflight is the cors answer too, not key_auth's 401.
    refused = preflight(http, stack, "/keyed", "https://evil.test", "GET")
    assert refused.error()["code"] == "cors_origin_forbidden"


def test_the_actual_request_still_needs_its_key(http: Any, stack: Any) -> None:
    ok = send(http, stack, "GET", "/keyed", [("Origin", APP), ("X-API-Key", ALICE)])
    assert ok.status == 200, ok
    assert cors_fields(ok)["access-control-allow-origin"] == APP
    refused = send(http, stack, "GET", "/keyed", [("Origin", APP)])
    assert refused.status == 401
    assert refused.error()["code"] == "credentials_missing"


def test_local_answers_after_cors_carry_the_cors_fields(http: Any, stack: Any) -> None:
    """A 401 or 429 from a later policy (a local answer: response hooks do not run) still
    carries the fields, so the page can read the status instead of a network error."""
    expected = {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-request-id",
    }
    refused = send(http, stack, "GET", "/keyed", [("Origin", APP)])
    assert refused.status == 401
    assert cors_fields(refused) == expected
    assert refused.header_all("vary") == ["Origin"]
    first = send(http, stack, "GET", "/limited", [("Origin", APP)])
    assert first.status == 200
    assert cors_fields(first)["access-control-allow-origin"] == APP
    assert first.header_all("vary") == ["Origin"]  # an upstream answer: once, not twice
    limited = send(http, stack, "GET", "/limited", [("Origin", APP)])
    assert limited.status == 429
    assert cors_fields(limited) == expected
    # A disallowed origin's local answer carries none.
    evil = send(http, stack, "GET", "/keyed", [("Origin", "https://evil.test")])
    assert evil.status == 401 and cors_fields(evil) == {}


def test_an_actual_request_from_an_allowed_origin_gets_the_fields(http: Any, stack: Any) -> None:
    response = send(http, stack, "POST", "/cors/orders", [("Origin", "https://shop.example.com")])
    assert response.status == 200, response
    assert cors_fields(response) == {
        "access-control-allow-origin": "https://shop.example.com",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-request-id",
    }
    assert response.header_all("vary") == ["Origin"]
    # The upstream got the request as it was, Origin included.
    assert ("Origin", "https://shop.example.com") in stack.echo.last.headers


@pytest.mark.parametrize(
    "origin", ["https://evil.test", "https://example.com", "null", "https://a.test, " + APP]
)
def test_a_disallowed_origin_goes_on_without_fields(http: Any, stack: Any, origin: str) -> None:
    response = send(http, stack, "GET", "/cors/x", [("Origin", origin)])
    assert response.status == 200  # browsers enforce CORS: the request itself goes on
    assert cors_fields(response) == {}
    assert response.header_all("vary") == ["Origin"]


def test_two_origin_fields_are_refused(http: Any, stack: Any) -> None:
    response = send(http, stack, "GET", "/cors/x", [("Origin", APP), ("Origin", APP)])
    assert response.status == 200
    assert cors_fields(response) == {}
    fields = [("Origin", APP), ("Origin", APP), ("Access-Control-Request-Method", "GET")]
    assert send(http, stack, "OPTIONS", "/cors/x", fields).status == 403


def test_a_request_without_origin_only_gets_vary(http: Any, stack: Any) -> None:
    response = send(http, stack, "GET", "/cors/x", [])
    assert response.status == 200
    assert cors_fields(response) == {}
    assert response.header_all("vary") == ["Origin"]


def test_an_options_request_that_is_no_preflight_is_forwarded(http: Any, stack: Any) -> None:
    response = send(http, stack, "OPTIONS", "/cors/x", [("Origin", APP)])
    assert response.status == 200
    assert stack.echo.last.method == "OPTIONS"
    assert cors_fields(response)["access-control-allow-origin"] == APP


def test_the_upstreams_own_cors_fields_are_replaced(http: Any, stack: Any) -> None:
    allowed = send(http, stack, "GET", "/own", [("Origin", APP)])
    assert allowed.status == 200
    assert allowed.header_all("access-control-allow-origin") == [APP]
    # Not configured here: the upstream's credentials field does not survive either.
    assert allowed.header("access-control-allow-credentials") is None
    assert allowed.header_all("vary") == ["Accept-Encoding, Origin"]
    refused = send(http, stack, "GET", "/own", [("Origin", "https://evil.test")])
    assert cors_fields(refused) == {}
    assert refused.header_all("vary") == ["Accept-Encoding, Origin"]


def test_vary_star_is_left_alone(http: Any, stack: Any) -> None:
    response = send(http, stack, "GET", "/vary-star", [("Origin", APP)])
    assert response.header_all("vary") == ["*"]
    assert response.header("access-control-allow-origin") == APP


def test_star_answers_star_and_reflects_asked_headers(http: Any, stack: Any) -> None:
    response = preflight(http, stack, "/public", "https://anyone.test", "GET", "X-Foo, x-bar")
    assert response.status == 204
    fields = cors_fields(response)
    assert fields["access-control-allow-origin"] == "*"
    assert fields["access-control-allow-headers"] == "x-foo, x-bar"
    assert "access-control-allow-credentials" not in fields
    actual = send(http, stack, "GET", "/public", [("Origin", "https://anyone.test")])
    assert cors_fields(actual) == {"access-control-allow-origin": "*"}


def test_null_passes_only_where_listed(http: Any, stack: Any) -> None:
    response = preflight(http, stack, "/sandboxed", "null", "GET")
    assert response.status == 204
    assert cors_fields(response)["access-control-allow-origin"] == "null"
    assert preflight(http, stack, "/sandboxed", APP, "GET").status == 403
