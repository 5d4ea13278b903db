"""Faults on both sides: upstreams that refuse, reset, stall, truncate or send garbage,
and clients that are slow. The gateway answers with the right JSON error, never presents a
broken body as complete, and keeps serving afterwards."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

UPSTREAM_READ = 0.5
CLIENT_HEADER = 1.0
CLIENT_BODY_IDLE = 1.0


@pytest.fixture(scope="module")
def stack(module_upstream, module_gateway, http) -> Any:
    refused_sock, refused_port = http.refused_port()
    ups = {
        "echo": module_upstream("echo", name="echo"),
        "closer": module_upstream("echo", name="closer", silent_close=True),
        "reset": module_upstream("reset"),
        "rst": module_upstream("reset", rst=True),
        "slow": module_upstream("slow", delay=2.0),
        "late": module_upstream("slow", delay=1.0),
        "trunc": module_upstream("truncate"),
        "trunc_chunked": module_upstream("truncate-chunked"),
        "bad_status": module_upstream("garbage", payload=b"HTTP/1.1 2x0 NotAStatus\r\n\r\n"),
        "not_http": module_upstream("garbage", payload=b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
        "bad_header": module_upstream(
            "garbage", payload=b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n"
        ),
        "ctl_header": module_upstream(
            "garbage", payload=b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n"
        ),
        "cl_and_te": module_upstream(
            "garbage",
            payload=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        "bad_cl": module_upstream(
            "garbage", payload=b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nabc"
        ),
        "gzip_te": module_upstream(
            "garbage", payload=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz"
        ),
    }
    upstreams: dict[str, Any] = dict(ups)
    upstreams["down"] = f"http://127.0.0.1:{refused_port}"
    routes = [http.route(name, [f"/{name}", f"/{name}/{{*rest}}"], name) for name in upstreams]
    gw = module_gateway(
        routes=routes,
        upstreams=upstreams,
        timeouts={
            "upstream_read": f"{int(UPSTREAM_READ * 1000)}ms",
            "client_header": f"{int(CLIENT_HEADER * 1000)}ms",
            "client_body_idle": f"{int(CLIENT_BODY_IDLE * 1000)}ms",
        },
    )

    class Stack:
        pass

    st = Stack()
    st.gw, st.up, st.refused_sock = gw, ups, refused_sock
    yield st
    refused_sock.close()


def assert_alive(stack) -> None:
    resp = stack.gw.request("GET", "/echo/alive")
    assert resp.status == 200 and resp.json()["target"] == "/echo/alive"


@pytest.mark.parametrize(
    ("path", "status", "codes"),
    [
        ("/down", 502, {"upstream_connect_failed"}),
        ("/reset", 502, {"upstream_reset"}),
        ("/rst", 502, {"upstream_reset"}),
        ("/bad_status", 502, {"upstream_bad_status_line"}),
        ("/not_http", 502, {"upstream_bad_status_line"}),
        ("/bad_header", 502, {"upstream_bad_header"}),
        ("/ctl_header", 502, {"upstream_bad_header"}),
        ("/cl_and_te", 502, {"upstream_bad_framing"}),
        ("/bad_cl", 502, {"upstream_bad_framing", "upstream_bad_header"}),
        ("/gzip_te", 502, {"upstream_bad_framing"}),
    ],
    ids=[
        "connect-refused",
        "closed-after-head",
        "rst-after-head",
        "bad-status-line",
        "not-http",
        "space-in-header-name",
        "ctl-in-header-value",
        "cl-and-te",
        "bad-cl",
        "coding-other-than-chunked",
    ],
)
def test_upstream_failure_is_a_json_gateway_error(
    stack, path: str, status: int, codes: set[str]
) -> None:
    resp = stack.gw.request("GET", path, [("X-Request-ID", "fault-1")])
    assert resp.status == status
    err = resp.error()
    assert err["code"] in codes
    assert err["request_id"] == "fault-1"
    assert_alive(stack)


@pytest.mark.parametrize("name", ["bad_status", "bad_header", "cl_and_te"])
def test_garbage_upstream_connection_is_discarded(stack, name: str) -> None:
    up = stack.up[name]
    assert stack.gw.request("GET", f"/{name}").status == 502
    assert up.wait_all_closed(2.0), "the gateway kept a broken upstream connection open"


def test_pooled_connection_closed_by_upstream_is_not_reused(stack) -> None:
    closer = stack.up["closer"]
    for n in range(5):
        resp = stack.gw.request("GET", f"/closer/{n}")
        assert resp.status == 200, resp
        time.sleep(0.05)  # the upstream's FIN reaches the gateway's idle pool
    assert closer.connections == 5


def test_upstream_timeout_is_504(stack) -> None:
    started = time.monotonic()
    resp = stack.gw.request("GET", "/slow")
    elapsed = time.monotonic() - started
    assert resp.status == 504
    assert resp.error()["code"] == "upstream_timeout"
    assert UPSTREAM_READ * 0.8 <= elapsed < UPSTREAM_READ + 1.0
    assert_alive(stack)


def test_late_response_never_reaches_the_next_request(stack) -> None:
    late = stack.up["late"]
    assert stack.gw.request("GET", "/late/first").status == 504
    time.sleep(0.8)  # the upstream now answers /late/first on the old connection
    late.opts["delay"] = 0
    try:
        resp = stack.gw.request("GET", "/late/second")
    finally:
        late.opts["delay"] = 1.0
    assert resp.status == 200
    assert resp.json()["target"] == "/late/second"


def test_truncated_content_length_body_is_not_presented_complete(stack, http) -> None:
    with stack.gw.connect() as client:
        client.send(http.build_request("GET", "/trunc"))
        try:
            resp = client.read_final()
        except http.IncompleteResponse as exc:
            partial = exc.partial
            assert partial is not None and partial.status == 200
            assert partial.framing in ("length", "chunked")
            assert len(partial.body) < 100
        else:
            # only acceptable if no byte of the broken response was forwarded
            assert resp.status == 502, f"a truncated body was presented as complete: {resp}"
            assert resp.error()["code"] == "upstream_truncated"
        assert client.wait_closed(2.0)
    assert_alive(stack)


def test_truncated_chunked_body_gets_no_terminating_chunk(stack, http) -> None:
    with stack.gw.connect() as client:
        client.send(http.build_request("GET", "/trunc_chunked"))
        with pytest.raises(http.IncompleteResponse) as info:
            client.read_final()
        partial = info.value.partial
        assert partial is not None and partial.status == 200
        assert partial.framing == "chunked"
        assert partial.body == b"hello"
        assert client.wait_closed(2.0)
    assert_alive(stack)


def test_slow_client_header_gets_408_and_closed(stack) -> None:
    sock = socket.create_connection((stack.gw.host, stack.gw.port), timeout=5)
    trickle = b"GET /echo/slow HTTP/1.1\r\nHost: gw.test\r\nX-Slow: " + b"a" * 100
    started = time.monotonic()
    received = b""
    try:
        for byte in trickle:
            sock.settimeout(0.1)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                data = None
            if data is not None:
                received = data
                break
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            assert time.monotonic() - started < CLIENT_HEADER + 3.0, "never timed out"
        sock.settimeout(3.0)
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                break
            received += data
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert CLIENT_HEADER * 0.8 <= elapsed < CLIENT_HEADER + 2.0
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b'"client_header_timeout"' in received
    assert all(r.target != "/echo/slow" for r in stack.up["echo"].requests)
    assert_alive(stack)


def test_idle_connection_without_a_request_is_closed(stack) -> None:
    with stack.gw.connect() as client:
        assert client.wait_closed(CLIENT_HEADER + 2.0)


def test_stalled_request_body_times_out(stack, http) -> None:
    with stack.gw.connect() as client:
        client.send(http.build_request("POST", "/echo/stall", [("Content-Length", "100")]))
        client.send(b"x" * 10)
        started = time.monotonic()
        resp = client.read_final()
        elapsed = time.monotonic() - started
        assert resp.status == 408
        assert resp.error()["code"] == "client_body_timeout"
        assert CLIENT_BODY_IDLE * 0.8 <= elapsed < CLIENT_BODY_IDLE + 2.0
        assert client.wait_closed(2.0)
    assert_alive(stack)


def test_client_disconnect_mid_request_does_not_hurt(stack, http) -> None:
    for _ in range(3):
        with stack.gw.connect() as client:
            client.send(http.build_request("GET", "/slow/gone"))
    with stack.gw.connect() as client:
        client.send(http.build_request("POST", "/echo/half", [("Content-Length", "1000")]))
        client.send(b"y" * 100)
    assert_alive(stack)
