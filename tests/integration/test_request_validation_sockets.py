"""request_validation over real sockets: the body limit answered before the body is read
(Content-Length, chunked, Expect: 100-continue), streamed without a schema and buffered with
one, the content-type allow-list, required headers, JSON Schema failures with their paths,
and valid requests reaching the upstream with their body intact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

ORDER_SCHEMA = {
    "type": "object",
    "required": ["items"],
    "additionalProperties": False,
    "properties": {
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer", "minimum": 1},
                },
            },
        },
        "note": {"type": "string", "maxLength": 20},
        "meta data": {"type": "object"},
    },
}
ORDERS = {
    "max_body_bytes": "2KiB",
    "content_types": ["application/json", "application/*+json"],
    "required_headers": ["x-tenant"],
    "json_schema": ORDER_SCHEMA,
}
JSON = ("Content-Type", "application/json")
TENANT = ("X-Tenant", "acme")
GOOD = json.dumps({"items": [{"sku": "a-1", "qty": 2}], "note": "ring twice"}).encode()


@pytest.fixture(scope="module")
def stack(module_gateway: Any, module_upstream: Any, tmp_path_factory: Any) -> Any:
    echo = module_upstream("echo", name="be")
    schema_file = Path(tmp_path_factory.mktemp("schemas")) / "list.json"
    schema_file.write_text(json.dumps({"type": "array", "items": {"type": "integer"}}))
    proc = module_gateway(
        routes=[
            module_gateway.route(
                "orders", ["/orders"], "be", policies=[{"request_validation": ORDERS}]
            ),
            # No schema: the limit is enforced while the body streams, nothing buffered.
            module_gateway.route(
                "upload",
                ["/upload"],
                "be",
                policies=[
                    {
                        "request_validation": {
                            "max_body_bytes": 1024,
                            "content_types": ["application/octet-stream", "text/*"],
                        }
                    }
                ],
            ),
            module_gateway.route(
                "numbers",
                ["/numbers"],
                "be",
                policies=[{"request_validation": {"json_schema_file": str(schema_file)}}],
            ),
            module_gateway.route(
                "required",
                ["/required"],
                "be",
                policies=[{"request_validation": {"json_schema": {}, "require_body": True}}],
            ),
        ],
        upstreams={"be": echo},
    )
    proc.echo = echo
    return proc


def post(
    http: Any,
    stack: Any,
    target: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> Any:
    with http.RawClient(stack.host, stack.port) as client:
        return client.request("POST", target, headers or [], body)


def upstream_saw(response: Any, body: bytes) -> None:
    echoed = response.json()
    assert echoed["body_len"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_a_valid_request_reaches_the_upstream_intact(http: Any, stack: Any) -> None:
    response = post(http, stack, "/orders", GOOD, [JSON, TENANT])
    assert response.status == 200, response
    upstream_saw(response, GOOD)
    assert stack.echo.last.header("content-length") == str(len(GOOD))


def test_a_valid_chunked_body_reaches_the_upstream_intact(http: Any, stack: Any) -> None:
    pieces = (GOOD[:10], GOOD[10:25], GOOD[25:])
    headers = [JSON, TENANT, ("Transfer-Encoding", "chunked")]
    with http.RawClient(stack.host, stack.port) as client:
        response = client.request("POST", "/orders", headers, http.chunked(*pieces))
    assert response.status == 200, response
    upstream_saw(response, GOOD)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"],
)
def test_allowed_content_types(http: Any, stack: Any, content_type: str) -> None:
    response = post(http, stack, "/orders", GOOD, [("Content-Type", content_type), TENANT])
    assert response.status == 200, response


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "json", None])
def test_other_content_types_are_415(http: Any, stack: Any, content_type: str | None) -> None:
    seen = len(stack.echo.requests)
    headers = [TENANT] + ([("Content-Type", content_type)] if content_type else [])
    response = post(http, stack, "/orders", GOOD, headers)
    assert response.status == 415, response
    assert response.error()["code"] == "unsupported_media_type"
    assert len(stack.echo.requests) == seen


@pytest.mark.parametrize("target", ["/orders", "/upload"])
def test_two_content_types_are_415(http: Any, stack: Any, target: str) -> None:
    allowed = "application/json" if target == "/orders" else "text/plain"
    headers = [TENANT, ("Content-Type", allowed), ("Content-Type", allowed)]
    response = post(http, stack, target, GOOD, headers)
    assert response.status == 415, response
    assert response.error()["message"] == (
        "a body with more than one content type is not accepted on this route"
    )


def test_a_request_without_a_body_is_not_checked_for_content_type(http: Any, stack: Any) -> None:
    with http.RawClient(stack.host, stack.port) as client:
        response = client.request("GET", "/orders", [TENANT])
        assert response.status == 200, response
        empty = client.request("POST", "/upload", [("Content-Length", "0")])
        assert empty.status == 200, empty


@pytest.mark.parametrize("tenant", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_missing_required_header_is_400(http: Any, stack: Any, tenant: str | None) -> None:
    headers = [JSON] + ([("X-Tenant", tenant)] if tenant is not None else [])
    response = post(http, stack, "/orders", GOOD, headers)
    assert response.status == 400, response
    error = response.error()
    assert error["code"] == "validation_failed"
    assert "x-tenant" in error["message"]
    assert error["errors"] == [{"header": "x-tenant", "message": "required header is missing"}]


FAILURES = [
    (
        "nested",
        {"items": [{"sku": "a", "qty": 0}, {"qty": 1}]},
        [("$.items[0].qty", "minimum"), ("$.items[1]", "sku")],
    ),
    ("wrong-type", {"items": [{"sku": 7, "qty": "two"}]}, [("$.items[0].sku", "string"), ("$.items[0].qty", "integer")]),  # noqa: E501
    ("missing", {}, [("$", "items")]),
    ("empty-list", {"items": []}, [("$.items", "")]),
    ("extra-key", {"items": [{"sku": "a", "qty": 1}], "coupon": "x"}, [("$", "coupon")]),
    ("quoted-key", {"items": [{"sku": "a", "qty": 1}], "meta data": 5}, [('$["meta data"]', "object")]),  # noqa: E501
    ("not-an-object", [1, 2], [("$", "object")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "expected"), [v[1:] for v in FAILURES], ids=[v[0] for v in FAILURES]
)
def test_schema_failures_list_paths_and_messages(
    http: Any, stack: Any, document: Any, expected: list[tuple[str, str]]
) -> None:
    seen = len(stack.echo.requests)
    response = post(http, stack, "/orders", json.dumps(document).encode(), [JSON, TENANT])
    assert response.status == 400, response
    error = response.error()
    assert error["code"] == "validation_failed"
    listed = error["errors"]
    assert [item["path"] for item in listed] == [path for path, _ in expected]
    for item, (_, word) in zip(listed, expected, strict=True):
        assert word in item["message"], item
    assert listed[0]["path"] in error["message"]
    assert len(stack.echo.requests) == seen


def test_at_most_ten_errors_are_listed(http: Any, stack: Any) -> None:
    document = {"items": [{"sku": i, "qty": 0} for i in range(20)]}
    response = post(http, stack, "/orders", json.dumps(document).encode(), [JSON, TENANT])
    assert len(response.error()["errors"]) == 10


@pytest.mark.parametrize("body", [b"{not json", b'{"items": [', b"\xff\xfe", b"NaN", b"[1] [2]"])
def test_a_body_that_is_not_json_is_400(http: Any, stack: Any, body: bytes) -> None:
    response = post(http, stack, "/orders", body, [JSON, TENANT])
    assert response.status == 400, response
    error = response.error()
    assert error["code"] == "validation_failed"
    assert error["message"].startswith("the body is not valid JSON")


def test_a_body_nested_too_deeply_is_400(http: Any, stack: Any) -> None:
    response = post(http, stack, "/numbers", b"[" * 50000 + b"]" * 50000, [JSON])
    assert response.status == 400, response
    assert response.error()["message"] == "the body is nested too deeply"


def test_a_schema_file(http: Any, stack: Any) -> None:
    assert post(http, stack, "/numbers", b"[1, 2, 3]", [JSON]).status == 200
    response = post(http, stack, "/numbers", b'[1, "x"]', [JSON])
    assert response.status == 400
    assert response.error()["errors"][0]["path"] == "$[1]"


def test_require_body(http: Any, stack: Any) -> None:
    with http.RawClient(stack.host, stack.port) as client:
        response = client.request("POST", "/required", [("Content-Length", "0")])
        assert response.status == 400
        assert response.error()["message"] == "a request body is required"
    assert post(http, stack, "/required", b"{}", [JSON]).status == 200


@pytest.mark.parametrize("target", ["/orders", "/upload"])
def test_a_declared_length_over_the_limit_is_413_before_the_body(
    http: Any, stack: Any, target: str
) -> None:
    seen = len(stack.echo.requests)
    headers = [JSON, TENANT, ("Content-Type", "text/plain"), ("Content-Length", "5000")]
    with http.RawClient(stack.host, stack.port) as client:
        # Only the head: the answer must come without the client sending the body.
        client.send(http.build_request("POST", target, headers))
        response = client.read_final("POST")
        assert response.status == 413, response
        assert response.error()["code"] == "body_too_large"
        assert client.wait_closed()
    assert len(stack.echo.requests) == seen


def test_expect_100_continue_over_the_limit_gets_413_not_100(http: Any, stack: Any) -> None:
    headers = [JSON, TENANT, ("Expect", "100-continue"), ("Content-Length", "4096")]
    with http.RawClient(stack.host, stack.port) as client:
        client.send(http.build_request("POST", "/orders", headers))
        response = client.read_response("POST")
        assert response.status == 413, response


def test_expect_100_continue_then_a_valid_body(http: Any, stack: Any) -> None:
    headers = [JSON, TENANT, ("Expect", "100-continue"), ("Content-Length", str(len(GOOD)))]
    with http.RawClient(stack.host, stack.port) as client:
        client.send(http.build_request("POST", "/orders", headers))
        interim = client.read_response("POST")
        assert interim.status == 100
        client.send(GOOD)
        response = client.read_final("POST")
    assert response.status == 200, response
    upstream_saw(response, GOOD)


def test_a_buffered_chunked_body_over_the_limit_is_413(http: Any, stack: Any) -> None:
    seen = len(stack.echo.requests)
    headers = [JSON, TENANT, ("Transfer-Encoding", "chunked")]
    body = http.chunked(b'{"note": "' + b"x" * 1500, b"y" * 1500 + b'"}')
    with http.RawClient(stack.host, stack.port) as client:
        response = client.request("POST", "/orders", headers, body)
    assert response.status == 413, response
    assert response.error()["code"] == "body_too_large"
    # Buffered for the schema: the upstream never heard of it.
    assert len(stack.echo.requests) == seen


def test_a_streamed_chunked_body_over_the_limit_is_cut_off(http: Any, stack: Any) -> None:
    seen = len(stack.echo.requests)
    headers = [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")]
    with http.RawClient(stack.host, stack.port) as client:
        response = client.request("POST", "/upload", headers, http.chunked(b"a" * 600, b"b" * 600))
        assert response.status == 413, response
        assert response.error()["code"] == "body_too_large"
        assert client.wait_closed()
    # Streamed: the upstream may have seen the head and the first chunk, never a whole body.
    assert all(r.body_len == -1 for r in stack.echo.requests[seen:])


def test_a_streamed_body_within_the_limit_passes(http: Any, stack: Any) -> None:
    body = bytes(range(256)) * 4
    headers = [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")]
    with http.RawClient(stack.host, stack.port) as client:
        response = client.request("POST", "/upload", headers, http.chunked(body[:100], body[100:]))
    assert response.status == 200, response
    upstream_saw(response, body)
    assert post(http, stack, "/upload", body, [("Content-Type", "text/csv")]).status == 200
