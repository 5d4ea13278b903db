"""Proxying through the real gateway process: methods, framing, rewriting, forwarded
headers, hop-by-hop removal, HTTP/1.0, keep-alive, pipelining, pooling, Expect, rejection."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
from typing import Any

import pytest

HOP_RESPONSE_HEADERS = [
    ("Connection", "X-Up-Hop"),
    ("X-Up-Hop", "secret"),
    ("Keep-Alive", "timeout=5, max=7"),
    ("Proxy-Connection", "keep-alive"),
    ("Upgrade", "foo/1"),
    ("Trailer", "X-Up-Trailer"),
    ("X-End-To-End", "kept"),
]
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


@pytest.fixture(scope="module")
def stack(module_upstream, module_gateway, http) -> Any:
    """One gateway in front of several upstreams, shared by the module's tests."""
    ups = {
        "echo": module_upstream("echo", name="echo"),
        "chunked": module_upstream("chunked", name="chunked"),
        "close": module_upstream("close", name="close", body=b"all of it until close"),
        "hop": module_upstream("fixed", name="hop", headers=HOP_RESPONSE_HEADERS, body=b"hop"),
        "sentinel": module_upstream("echo", name="sentinel"),
    }
    route = http.route
    routes = [
        route("echo", ["/echo", "/echo/{*rest}"], "echo"),
        route(
            "users",
            ["/users/{id}", "/users"],
            "echo",
            methods=["GET", "POST"],
            strip_prefix="/users",
        ),
        route("accounts", ["/accounts/{id}"], "echo", rewrite="/v2/accounts/{id}"),
        route("preserve", ["/preserve/{*rest}"], "echo", preserve_host=True),
        route("chunked", ["/chunked"], "chunked"),
        route("close", ["/close"], "close"),
        route("hop", ["/hop"], "hop"),
        route("sentinel", ["/sentinel/{*rest}"], "sentinel"),
    ]
    gw = module_gateway(routes=routes, upstreams=ups)

    class Stack:
        pass

    st = Stack()
    st.gw = gw
    st.up = ups
    return st


def upstream_view(resp) -> dict[str, Any]:
    """The echo upstream's JSON, with a header lookup helper."""
    assert resp.status == 200, (resp.status, resp.body[:300])
    doc = resp.json()
    doc["h"] = lambda name: [v for k, v in doc["headers"] if k.lower() == name.lower()]
    return doc


# -- methods and bodies ---------------------------------------------------------------


def test_get_is_proxied(stack) -> None:
    resp = stack.gw.request("GET", "/echo/hello")
    seen = upstream_view(resp)
    assert (seen["method"], seen["target"], seen["body_len"]) == ("GET", "/echo/hello", 0)
    assert resp.header("x-upstream") == "echo"
    assert seen["h"]("content-length") in ([], ["0"])
    assert seen["h"]("transfer-encoding") == []


def test_head_has_no_body_and_keeps_the_connection(stack) -> None:
    with stack.gw.connect() as client:
        head = client.request("HEAD", "/echo/head")
        assert head.status == 200 and head.body == b""
        assert stack.up["echo"].last.method == "HEAD"
        follow = client.request("GET", "/echo/after-head")
        assert upstream_view(follow)["target"] == "/echo/after-head"


def test_post_content_length_body(stack) -> None:
    body = bytes(range(256)) * 1000
    resp = stack.gw.request("POST", "/echo/upload", [("Content-Type", "x/y")], body)
    seen = upstream_view(resp)
    assert seen["method"] == "POST"
    assert seen["body_len"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    framing = (seen["h"]("content-length"), seen["h"]("transfer-encoding"))
    assert framing in (([str(len(body))], []), ([], ["chunked"]))


def test_post_chunked_body(stack, http) -> None:
    pieces = [b"a" * 10, b"b" * 70000, b"c"]
    data = http.build_request(
        "POST", "/echo/chunked-up", [("Transfer-Encoding", "chunked")], http.chunked(*pieces)
    )
    with stack.gw.connect() as client:
        client.send(data)
        seen = upstream_view(client.read_final())
    body = b"".join(pieces)
    assert seen["body_len"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    # exactly one framing reaches the upstream (DESIGN principle 3)
    assert bool(seen["h"]("content-length")) != bool(seen["h"]("transfer-encoding"))


def test_chunked_request_trailers_are_not_merged_into_headers(stack, http) -> None:
    data = http.build_request(
        "POST",
        "/echo/trailers",
        [("Transfer-Encoding", "chunked")],
        b"3\r\nabc\r\n0\r\nX-Sneaky: 1\r\n\r\n",
    )
    with stack.gw.connect() as client:
        client.send(data)
        seen = upstream_view(client.read_final())
    assert seen["body_len"] == 3
    assert seen["h"]("x-sneaky") == []


def test_chunked_download(stack) -> None:
    resp = stack.gw.request("GET", "/chunked")
    assert resp.status == 200
    assert resp.body == b"hello chunked world"
    assert resp.framing in ("chunked", "length")


def test_close_delimited_download_is_reframed(stack) -> None:
    with stack.gw.connect() as client:
        resp = client.request("GET", "/close")
        assert resp.status == 200
        assert resp.body == b"all of it until close"
        if resp.framing == "close":
            assert client.wait_closed(2.0)
        else:
            assert resp.framing == "chunked"
            assert upstream_view(client.request("GET", "/echo/next")).get("target") == "/echo/next"


# -- targets: query, normalisation, strip_prefix, rewrite, Host -------------------------


def test_query_string_is_forwarded(stack) -> None:
    seen = upstream_view(stack.gw.request("GET", "/echo/q?a=1&b=two%20x&c=/../"))
    assert seen["target"] == "/echo/q?a=1&b=two%20x&c=/../"


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ("/echo/a/./b/../c", "/echo/a/c"),
        ("/echo/./x", "/echo/x"),
        ("/echo/a/b/..", "/echo/a/"),
        ("/echo/a/../b?x=/../y", "/echo/b?x=/../y"),
        ("/x/../echo/y", "/echo/y"),
    ],
    ids=["dot-and-dotdot", "leading-dot", "trailing-dotdot", "query-untouched", "route-after"],
)
def test_dot_segments_resolved_before_forwarding(stack, sent: str, forwarded: str) -> None:
    assert upstream_view(stack.gw.request("GET", sent))["target"] == forwarded


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [("/users/42", "/42"), ("/users", "/"), ("/users/42?x=1", "/42?x=1")],
    ids=["param", "bare-prefix", "with-query"],
)
def test_strip_prefix(stack, sent: str, forwarded: str) -> None:
    assert upstream_view(stack.gw.request("GET", sent))["target"] == forwarded


def test_rewrite_with_param(stack) -> None:
    seen = upstream_view(stack.gw.request("GET", "/accounts/7?x=1"))
    assert seen["target"] == "/v2/accounts/7?x=1"


def test_host_is_the_target_by_default(stack) -> None:
    seen = upstream_view(stack.gw.request("GET", "/echo/h", host="client.example:8080"))
    assert seen["h"]("host") == [f"127.0.0.1:{stack.up['echo'].port}"]
    assert seen["h"]("x-forwarded-host") == ["client.example:8080"]


def test_preserve_host(stack) -> None:
    seen = upstream_view(stack.gw.request("GET", "/preserve/h", host="client.example:8080"))
    assert seen["h"]("host") == ["client.example:8080"]


# -- local responses ----------------------------------------------------------------------


def test_unknown_path_is_404_json(stack) -> None:
    stack.up["sentinel"].clear()
    resp = stack.gw.request("GET", "/nowhere", [("X-Request-ID", "rid-404")])
    assert resp.status == 404
    err = resp.error()
    assert err["code"] == "route_not_found"
    assert err["request_id"] == "rid-404"
    assert resp.header("x-request-id") == "rid-404"


def test_wrong_method_is_405_with_allow(stack) -> None:
    before = len(stack.up["echo"].requests)
    with stack.gw.connect() as client:
        resp = client.request("DELETE", "/users/1")
        assert resp.status == 405
        assert resp.error()["code"] == "method_not_allowed"
        allowed = {m.strip() for m in (resp.header("allow") or "").split(",")}
        assert {"GET", "POST"} <= allowed and "DELETE" not in allowed
        # a routing refusal is not a framing error: the connection stays usable
        assert client.request("GET", "/users/1").status == 200
    assert [r.method for r in stack.up["echo"].requests[before:]] == ["GET"]


# -- headers the gateway adds and removes ------------------------------------------------


def test_forwarded_headers(stack) -> None:
    seen = upstream_view(stack.gw.request("GET", "/echo/xf", host="api.example"))
    assert seen["h"]("x-forwarded-for") == ["127.0.0.1"]
    assert seen["h"]("x-forwarded-proto") == ["http"]
    assert seen["h"]("x-forwarded-host") == ["api.example"]


def test_untrusted_forwarded_headers_are_replaced(stack) -> None:
    spoofed = [
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
    ]
    seen = upstream_view(stack.gw.request("GET", "/echo/xf", spoofed, host="api.example"))
    assert seen["h"]("x-forwarded-for") == ["127.0.0.1"]
    assert seen["h"]("x-forwarded-proto") == ["http"]
    assert seen["h"]("x-forwarded-host") == ["api.example"]


def test_trusted_proxy_forwarded_for_is_kept_as_prefix(upstream, gateway, http) -> None:
    up = upstream("echo")
    gw = gateway(
        routes=[http.route("all", ["/{*rest}"], "up")],
        upstreams={"up": up},
        trusted_proxies=["127.0.0.0/8"],
    )
    seen = upstream_view(gw.request("GET", "/t", [("X-Forwarded-For", "1.2.3.4")]))
    xff = [p.strip() for v in seen["h"]("x-forwarded-for") for p in v.split(",")]
    assert xff == ["1.2.3.4", "127.0.0.1"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123.X:y_z", True),
        ("a" * 200, True),
        ("a" * 201, False),
        ("has space", False),
        ("semi;colon", False),
        (None, False),
    ],
    ids=["valid", "200-chars", "201-chars", "space", "semicolon", "absent"],
)
def test_request_id(stack, sent: str | None, kept: bool) -> None:
    headers = [("X-Request-ID", sent)] if sent is not None else []
    resp = stack.gw.request("GET", "/echo/rid", headers)
    seen = upstream_view(resp)
    forwarded = seen["h"]("x-request-id")
    assert len(forwarded) == 1
    assert resp.header_all("x-request-id") == forwarded
    assert REQUEST_ID_RE.match(forwarded[0])
    if kept:
        assert forwarded[0] == sent
    else:
        assert forwarded[0] != sent


def test_generated_request_ids_differ(stack) -> None:
    ids = {stack.gw.request("GET", "/echo/rid").header("x-request-id") for _ in range(5)}
    assert None not in ids and len(ids) == 5


def test_hop_by_hop_request_headers_are_removed(stack) -> None:
    headers = [
        ("Connection", "keep-alive, X-Named-Hop"),
        ("X-Named-Hop", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Proxy-Connection", "keep-alive"),
        ("X-End-To-End", "kept"),
    ]
    seen = upstream_view(stack.gw.request("GET", "/echo/hop", headers))
    names = {k.lower() for k, _ in seen["headers"]}
    leaked = names & {"x-named-hop", "keep-alive", "te", "trailer", "proxy-connection"}
    assert not leaked
    conn = " ".join(seen["h"]("connection")).lower()
    assert "x-named-hop" not in conn
    assert seen["h"]("x-end-to-end") == ["kept"]


def test_h2c_upgrade_is_never_forwarded(stack) -> None:
    stack.up["echo"].clear()
    headers = [
        ("Connection", "Upgrade, HTTP2-Settings"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    ]
    resp = stack.gw.request("GET", "/echo/h2c", headers)
    if resp.status == 200:
        seen = upstream_view(resp)
        names = {k.lower() for k, _ in seen["headers"]}
        assert not names & {"upgrade", "http2-settings"}
        assert resp.status != 101
    else:
        assert 400 <= resp.status < 500
        assert stack.up["echo"].requests == []


def test_hop_by_hop_response_headers_are_removed(stack) -> None:
    resp = stack.gw.request("GET", "/hop")
    assert resp.status == 200 and resp.body == b"hop"
    names = {k.lower() for k, _ in resp.headers}
    assert not names & {"x-up-hop", "proxy-connection", "upgrade", "trailer"}
    assert "timeout=5, max=7" not in resp.header_all("keep-alive")
    assert "x-up-hop" not in resp.connection_tokens()
    assert resp.header("x-end-to-end") == "kept"


# -- HTTP/1.0 clients -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/chunked", "/echo/ten", "/close"], ids=["chunked-up", "cl-up", "close-up"]
)
def test_http10_client_gets_no_chunked_and_close(stack, http, path: str) -> None:
    with stack.gw.connect() as client:
        client.send(http.build_request("GET", path, version="HTTP/1.0"))
        resp = client.read_final()
        assert resp.status == 200
        assert resp.header("transfer-encoding") is None
        assert resp.framing in ("length", "close")
        assert resp.body
        assert client.wait_closed(2.0), "HTTP/1.0 without keep-alive must be closed"


def test_http10_keep_alive_client(stack, http) -> None:
    with stack.gw.connect() as client:
        for n in range(2):
            client.send(
                http.build_request(
                    "GET", f"/echo/k{n}", [("Connection", "keep-alive")], version="HTTP/1.0"
                )
            )
            resp = client.read_final()
            assert resp.framing == "length"
            assert upstream_view(resp)["target"] == f"/echo/k{n}"


# -- connections -------------------------------------------------------------------------------


def test_client_keep_alive(stack) -> None:
    with stack.gw.connect() as client:
        for n in range(5):
            resp = client.request("GET", f"/echo/ka{n}")
            assert upstream_view(resp)["target"] == f"/echo/ka{n}"
            assert "close" not in resp.connection_tokens()


def test_client_connection_close_is_honoured(stack) -> None:
    with stack.gw.connect() as client:
        resp = client.request("GET", "/echo/bye", [("Connection", "close")])
        assert resp.status == 200
        assert client.wait_closed(2.0)


def test_pipelined_requests_answered_in_order(stack, http) -> None:
    batch = (
        http.build_request("GET", "/echo/p1")
        + http.build_request("POST", "/echo/p2", body=b"x" * 5000)
        + http.build_request("GET", "/nowhere/p3")
        + http.build_request("GET", "/chunked")
        + http.build_request("GET", "/echo/p5")
    )
    with stack.gw.connect() as client:
        client.send(batch)
        first = upstream_view(client.read_final())
        second = upstream_view(client.read_final())
        third = client.read_final()
        fourth = client.read_final()
        fifth = upstream_view(client.read_final())
    assert first["target"] == "/echo/p1"
    assert (second["target"], second["body_len"]) == ("/echo/p2", 5000)
    assert third.status == 404
    assert fourth.body == b"hello chunked world"
    assert fifth["target"] == "/echo/p5"


def test_every_listener_serves(upstream, gateway, http) -> None:
    up = upstream("echo")
    gw = gateway(
        routes=[http.route("all", ["/{*rest}"], "up")],
        upstreams={"up": up},
        listen=["127.0.0.1:0", "127.0.0.1:0"],
    )
    assert len(gw.addresses) == 2 and gw.addresses[0] != gw.addresses[1]
    for host, port in gw.addresses:
        with http.RawClient(host, port) as client:
            assert upstream_view(client.request("GET", f"/on/{port}"))["target"] == f"/on/{port}"


def test_upstream_connection_is_reused(upstream, gateway, http) -> None:
    up = upstream("echo")
    gw = gateway(routes=[http.route("all", ["/{*rest}"], "up")], upstreams={"up": up})
    for n in range(10):
        assert upstream_view(gw.request("GET", f"/n{n}"))["target"] == f"/n{n}"
    with gw.connect() as client:
        for n in range(10):
            assert client.request("GET", f"/k{n}").status == 200
    assert up.connections == 1
    assert {r.conn for r in up.requests} == {1}


def test_idle_upstream_connection_closed_after_idle_timeout(upstream, gateway, http) -> None:
    up = upstream("echo")
    gw = gateway(
        routes=[http.route("all", ["/{*rest}"], "up")],
        upstreams={"up": up},
        keepalive={"max_idle": 8, "idle_timeout": "300ms"},
    )
    assert gw.request("GET", "/first").status == 200
    assert up.wait_all_closed(2.0), "the idle pooled connection outlived its idle_timeout"
    assert gw.request("GET", "/second").status == 200
    assert up.connections == 2


def test_pool_keeps_at_most_max_idle(upstream, gateway, http) -> None:
    up = upstream("slow", delay=0.3)
    gw = gateway(
        routes=[http.route("all", ["/{*rest}"], "up")],
        upstreams={"up": up},
        keepalive={"max_idle": 2, "idle_timeout": "60s"},
    )
    threads = [threading.Thread(target=gw.request, args=("GET", f"/c{i}")) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert up.connections == 5
    deadline = time.monotonic() + 2
    while up.connections - up.closed_connections > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.connections - up.closed_connections == 2


# -- Expect: 100-continue --------------------------------------------------------------------


def test_expect_100_continue_answered_before_body(stack, http) -> None:
    body = b"z" * 100_000
    head = http.build_request(
        "POST",
        "/echo/expect",
        [("Expect", "100-continue"), ("Content-Length", str(len(body)))],
    )
    with stack.gw.connect() as client:
        client.send(head)
        interim = client.read_response()
        assert interim.status == 100
        client.send(body)
        seen = upstream_view(client.read_final())
    assert seen["body_len"] == len(body)


def test_expect_100_continue_with_curl(stack, tmp_path) -> None:
    payload = tmp_path / "payload.bin"
    data = bytes(range(256)) * 4096
    payload.write_bytes(data)
    out = subprocess.run(
        [
            "/usr/bin/curl",
            "-sS",
            "-v",
            "--max-time",
            "10",
            "--expect100-timeout",
            "8",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            f"@{payload}",
            stack.gw.url("/echo/curl"),
        ],
        capture_output=True,
        timeout=15,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert b"HTTP/1.1 100 Continue" in out.stderr
    seen = json.loads(out.stdout)
    assert seen["body_len"] == len(data)
    assert seen["body_sha256"] == hashlib.sha256(data).hexdigest()


# -- rejected requests: 400 family, JSON, closed, upstream untouched -------------------------

H = "Host: gw.test\r\n"
BAD_REQUESTS = [
    (
        "cl-and-te",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Content-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {"content_length_and_transfer_encoding"},
    ),
    ("missing-host", "GET /sentinel/a HTTP/1.1\r\n\r\n", {"missing_host"}),
    ("duplicate-host", f"GET /sentinel/a HTTP/1.1\r\n{H}{H}\r\n", {"duplicate_host"}),
    ("bare-lf", "GET /sentinel/a HTTP/1.1\nHost: gw.test\n\n", {"bare_lf"}),
    ("encoded-slash", f"GET /sentinel/a%2Fb HTTP/1.1\r\n{H}\r\n", {"encoded_separator"}),
    ("encoded-backslash", f"GET /sentinel/a%5cb HTTP/1.1\r\n{H}\r\n", {"encoded_separator"}),
    ("encoded-nul", f"GET /sentinel/a%00b HTTP/1.1\r\n{H}\r\n", {"encoded_separator"}),
    ("raw-backslash", f"GET /sentinel/a\\b HTTP/1.1\r\n{H}\r\n", {"backslash_in_path"}),
    ("bad-percent", f"GET /sentinel/%zz HTTP/1.1\r\n{H}\r\n", {"bad_percent_encoding"}),
    ("fragment", f"GET /sentinel/a#f HTTP/1.1\r\n{H}\r\n", {"fragment_in_target"}),
    ("above-root", f"GET /sentinel/../../x HTTP/1.1\r\n{H}\r\n", {"path_above_root"}),
    ("garbage-line", "GARBAGE\r\n\r\n", {"bad_request_line"}),
    ("http09", "GET /sentinel/a\r\n\r\n", {"bad_request_line", "bad_version"}),
    ("bad-method", f"G(T /sentinel/a HTTP/1.1\r\n{H}\r\n", {"bad_method"}),
    ("bad-version", f"GET /sentinel/a HTTP/1.x\r\n{H}\r\n", {"bad_version"}),
    ("http2-version", f"GET /sentinel/a HTTP/2.0\r\n{H}\r\n", {"version_not_supported"}),
    (
        "name-whitespace",
        f"GET /sentinel/a HTTP/1.1\r\n{H}X-A : 1\r\n\r\n",
        {"header_name_whitespace"},
    ),
    ("obs-fold", f"GET /sentinel/a HTTP/1.1\r\n{H}X-A: 1\r\n 2\r\n\r\n", {"obs_fold"}),
    (
        "leading-whitespace",
        f"GET /sentinel/a HTTP/1.1\r\n X-A: 1\r\n{H}\r\n",
        {"leading_whitespace", "obs_fold"},
    ),
    ("empty-name", f"GET /sentinel/a HTTP/1.1\r\n{H}: x\r\n\r\n", {"bad_header_name"}),
    ("ctl-in-value", f"GET /sentinel/a HTTP/1.1\r\n{H}X-A: a\x01b\r\n\r\n", {"bad_header_value"}),
    (
        "bare-cr",
        f"GET /sentinel/a HTTP/1.1\r\n{H}X-A: a\rb\r\n\r\n",
        {"bare_cr", "bad_header_value"},
    ),
    (
        "bad-content-length",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\nhello",
        {"bad_content_length"},
    ),
    (
        "conflicting-cl",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        {"duplicate_content_length"},
    ),
    (
        "duplicate-equal-cl",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        {"duplicate_content_length"},
    ),
    (
        "cl-list-of-equal-values",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Content-Length: 1000,1000\r\n\r\n" + "x" * 1000,
        {"bad_content_length"},
    ),
    (
        "te-not-chunked-last",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Transfer-Encoding: chunked, gzip\r\n\r\n",
        {"transfer_encoding_not_chunked", "unsupported_transfer_coding"},
    ),
    (
        "te-on-http10",
        f"POST /sentinel/a HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {"transfer_encoding_on_http10"},
    ),
    (
        "connection-names-cl",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Connection: content-length\r\nContent-Length: 1\r\n\r\nx",
        {"connection_nominates_framing"},
    ),
    (
        "body-too-large",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Content-Length: 10485761\r\n\r\n",
        {"body_too_large"},
    ),
    ("target-too-long", f"GET /sentinel/{'a' * 9000} HTTP/1.1\r\n{H}\r\n", {"uri_too_long"}),
    (
        "header-too-large",
        f"GET /sentinel/a HTTP/1.1\r\n{H}X-Big: {'b' * 40000}\r\n\r\n",
        {"header_too_large"},
    ),
    (
        "too-many-headers",
        f"GET /sentinel/a HTTP/1.1\r\n{H}" + "".join(f"X-H{n}: v\r\n" for n in range(120)) + "\r\n",
        {"too_many_headers"},
    ),
    (
        "expect-unknown",
        f"POST /sentinel/a HTTP/1.1\r\n{H}Expect: teapot\r\nContent-Length: 1\r\n\r\nx",
        {"expectation_failed"},
    ),
]


@pytest.mark.parametrize(
    ("raw", "codes"),
    [(raw, codes) for _, raw, codes in BAD_REQUESTS],
    ids=[name for name, _, _ in BAD_REQUESTS],
)
def test_bad_request_rejected_and_upstream_untouched(stack, raw: str, codes: set[str]) -> None:
    sentinel = stack.up["sentinel"]
    sentinel.clear()
    received = sentinel.bytes_received
    resp, closed = stack.gw.exchange(raw.encode("latin-1"))
    assert 400 <= resp.status < 600
    err = resp.error()
    assert err["code"] in codes, err
    assert closed, "the connection must be closed after a rejected request"
    assert sentinel.requests == []
    assert sentinel.bytes_received == received


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nab\r\n0\r\n\r\n",
        b"3\r\nabcXY0\r\n\r\n",
        b"3;" + b"e" * 1000 + b"\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["bad-chunk-size", "missing-chunk-crlf", "huge-chunk-extension"],
)
def test_bad_chunked_body_rejected(stack, http, body: bytes) -> None:
    data = http.build_request("POST", "/sentinel/c", [("Transfer-Encoding", "chunked")], body)
    resp, closed = stack.gw.exchange(data)
    assert resp.status == 400
    assert resp.error()["code"] in {
        "bad_chunk_size",
        "bad_chunk_terminator",
        "chunk_extension_too_long",
    }
    assert closed
    # the upstream never gets a complete request out of it
    assert all(r.body_len == -1 for r in stack.up["sentinel"].requests if r.target == "/sentinel/c")


def test_gateway_still_serves_after_rejections(stack) -> None:
    assert upstream_view(stack.gw.request("GET", "/echo/alive"))["target"] == "/echo/alive"
