"""Answers the gateway writes itself, over real sockets: a response to HEAD carries the
headers but no body (RFC 9110 9.3.2), and every status line uses RFC 9110's reason phrase."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fastgw._core import ERROR_TABLE, STATUS_PHRASES
from fastgw.policy.builtins import REDIRECT_STATUSES

H = "Host: example.com\r\n"
# Every status a direct_response policy may answer with (200-599) that has a phrase.
RESPOND_STATUSES = sorted(s for s in STATUS_PHRASES if 200 <= s <= 599)


@pytest.fixture(scope="module")
def stack(module_upstream, module_gateway, http) -> Any:
    refused, refused_port = http.refused_port()
    ups = {"echo": module_upstream("echo", name="echo"), "down": f"http://127.0.0.1:{refused_port}"}
    route = http.route
    routes = [
        route("echo", ["/echo/{*rest}"], "echo"),
        route("get-only", ["/get-only"], "echo", methods=["GET"]),
        route("post-only", ["/post-only"], "echo", methods=["POST"]),
        route("down", ["/down"], "down"),
        *(
            route(
                f"status-{s}",
                [f"/status/{s}"],
                "echo",
                policies=[{"direct_response": {"status": s}}],
            )
            for s in RESPOND_STATUSES
        ),
        *(
            route(
                f"redirect-{s}",
                [f"/redirect/{s}"],
                "echo",
                policies=[{"redirect": {"location": "/echo/there", "status": s}}],
            )
            for s in REDIRECT_STATUSES
        ),
    ]
    gw = module_gateway(routes=routes, upstreams=ups, timeouts={"client_header": "500ms"})
    yield gw, ups["echo"]
    refused.close()


def read_to_close(client: Any) -> bytes:
    assert client.wait_closed(3.0), "the gateway kept the connection open"
    return bytes(client.buf)


def error_body_length(status: int, code: str, request_id: str) -> int:
    """Bytes of the JSON error body a GET of the same request gets."""
    message = next(m for st, c, m in ERROR_TABLE.values() if (st, c) == (status, code))
    doc = {"error": {"status": status, "code": code, "message": message, "request_id": request_id}}
    return len(json.dumps(doc, separators=(",", ":")).encode())


# -- HEAD refused by the parser: headers, no body, connection closed, upstream untouched -----

HEAD_REFUSED = [
    (
        "cl-list",
        f"HEAD /echo/a HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\nhello",
        400,
        "bad_content_length",
    ),
    (
        "cl-duplicate",
        f"HEAD /echo/a HTTP/1.1\r\n{H}Content-Length: 0\r\nContent-Length: 0\r\n\r\n",
        400,
        "duplicate_content_length",
    ),
    ("ctl-in-value", f"HEAD /echo/a HTTP/1.1\r\n{H}X-A: a\x01b\r\n\r\n", 400, "bad_header_value"),
    ("missing-host", "HEAD /echo/a HTTP/1.1\r\n\r\n", 400, "missing_host"),
    ("encoded-slash", f"HEAD /echo/a%2Fb HTTP/1.1\r\n{H}\r\n", 400, "encoded_separator"),
    ("target-too-long", f"HEAD /echo/{'a' * 9000} HTTP/1.1\r\n{H}\r\n", 414, "uri_too_long"),
    (
        "header-too-large",
        f"HEAD /echo/a HTTP/1.1\r\n{H}X-B: {'b' * 40000}\r\n\r\n",
        431,
        "header_too_large",
    ),
    ("version-2", f"HEAD /echo/a HTTP/2.0\r\n{H}\r\n", 505, "version_not_supported"),
    ("expect", f"HEAD /echo/a HTTP/1.1\r\n{H}Expect: teapot\r\n\r\n", 417, "expectation_failed"),
]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [case[1:] for case in HEAD_REFUSED],
    ids=[case[0] for case in HEAD_REFUSED],
)
def test_head_refused_by_the_parser_gets_no_body(stack, http, raw, status, code) -> None:
    gw, echo = stack
    echo.clear()
    with gw.connect() as client:
        client.send(raw.encode("latin-1"))
        resp = client.read_head()
        rest = read_to_close(client)
    assert (resp.status, resp.reason) == (status, STATUS_PHRASES[status])
    assert rest == b"", "a response to HEAD carried body bytes"
    # RFC 9110 8.6: the length a GET of the same request would get
    length = error_body_length(status, code, resp.header("x-request-id"))
    assert resp.header("content-length") == str(length)
    assert resp.header("content-type") == "application/json"
    assert "close" in resp.connection_tokens()
    assert echo.requests == []


def test_head_header_timeout_gets_no_body(stack) -> None:
    gw, _ = stack
    with gw.connect() as client:
        client.send(f"HEAD /echo/slow HTTP/1.1\r\n{H}".encode())
        resp = client.read_head()
        rest = read_to_close(client)
    assert (resp.status, resp.reason) == (408, "Request Timeout")
    assert int(resp.header("content-length")) > 0
    assert rest == b""


def test_get_refused_by_the_parser_still_gets_its_body(stack) -> None:
    gw, _ = stack
    resp, closed = gw.exchange(f"GET /echo/a HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\n".encode())
    assert resp.error()["code"] == "bad_content_length" and closed
    assert len(resp.body) == int(resp.header("content-length"))


# -- HEAD answered locally on a kept connection: the next exchange stays in step -------------


@pytest.mark.parametrize(
    ("path", "status", "has_length"),
    [
        ("/nowhere", 404, True),
        # a GET would get 200 here, so no length is claimed (RFC 9110 8.6)
        ("/get-only", 405, False),
        # a GET gets the same 405
        ("/post-only", 405, True),
        ("/status/503", 503, True),
        ("/redirect/308", 308, True),
    ],
    ids=["no-route", "405-get-allowed", "405-get-refused", "policy", "redirect"],
)
def test_head_answered_locally_keeps_the_connection(stack, path, status, has_length) -> None:
    gw, _ = stack
    with gw.connect() as client:
        for _ in range(2):
            resp = client.request("HEAD", path)
            assert (resp.status, resp.body) == (status, b"")
            assert ("content-length" in {k.lower() for k, _ in resp.headers}) == has_length
            assert "close" not in resp.connection_tokens()
            assert not client.has_pending_data(), "body bytes after the HEAD answer"
        follow = client.request("GET", "/echo/after")
        assert follow.status == 200 and follow.json()["target"] == "/echo/after"


def test_head_upstream_failure_gets_no_body(stack) -> None:
    gw, _ = stack
    with gw.connect() as client:
        client.send(f"HEAD /down HTTP/1.1\r\n{H}\r\n".encode())
        resp = client.read_head()
        # the request was not read to its end when the connect failed: the gateway closes
        rest = read_to_close(client)
    assert resp.status in (502, 503)  # 503 once the refused target is marked down
    assert int(resp.header("content-length")) > 0
    assert rest == b""


# -- reason phrases -------------------------------------------------------------------------


@pytest.mark.parametrize("status", RESPOND_STATUSES)
def test_policy_answers_carry_the_rfc9110_phrase(stack, status: int) -> None:
    gw, _ = stack
    resp = gw.request("GET", f"/status/{status}")
    assert (resp.status, resp.reason) == (status, STATUS_PHRASES[status])


@pytest.mark.parametrize("status", REDIRECT_STATUSES)
def test_redirects_carry_the_rfc9110_phrase(stack, status: int) -> None:
    gw, _ = stack
    resp = gw.request("GET", f"/redirect/{status}")
    assert (resp.status, resp.reason) == (status, STATUS_PHRASES[status])


CORE_ERRORS = [
    ("414", f"GET /echo/{'a' * 9000} HTTP/1.1\r\n{H}\r\n", 414, "URI Too Long"),
    (
        "413",
        f"POST /echo/a HTTP/1.1\r\n{H}Content-Length: 99999999999\r\n\r\n",
        413,
        "Content Too Large",
    ),
    (
        "431",
        f"GET /echo/a HTTP/1.1\r\n{H}X-B: {'b' * 40000}\r\n\r\n",
        431,
        "Request Header Fields Too Large",
    ),
    ("505", f"GET /echo/a HTTP/2.0\r\n{H}\r\n", 505, "HTTP Version Not Supported"),
    ("501", f"CONNECT a:443 HTTP/1.1\r\n{H}\r\n", 501, "Not Implemented"),
    ("417", f"GET /echo/a HTTP/1.1\r\n{H}Expect: x\r\n\r\n", 417, "Expectation Failed"),
    ("404", f"GET /nowhere HTTP/1.1\r\n{H}\r\n", 404, "Not Found"),
    ("405", f"DELETE /get-only HTTP/1.1\r\n{H}\r\n", 405, "Method Not Allowed"),
    ("502", f"GET /down HTTP/1.1\r\n{H}\r\n", 502, "Bad Gateway"),
]


@pytest.mark.parametrize(
    ("raw", "status", "phrase"), [c[1:] for c in CORE_ERRORS], ids=[c[0] for c in CORE_ERRORS]
)
def test_core_errors_carry_the_rfc9110_phrase(stack, raw: str, status: int, phrase: str) -> None:
    gw, _ = stack
    resp, _ = gw.exchange(raw.encode())
    assert (resp.status, resp.reason) == (status, phrase)
