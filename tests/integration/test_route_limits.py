"""Per-route upstream timeouts (connect, read, send) and body limits over real sockets: a
route's own value applies to it alone, every other route keeps the global one, and a limit
hit on a route's value answers with the same code as the global limit."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

READ_SHORT = 0.3
READ_GLOBAL = 3.0
SLOW_UPSTREAM = 1.2  # between the two: the short route times out, the global one does not
CONNECT_SHORT = 0.3
CONNECT_GLOBAL = 1.0
CLIENT_BODY_IDLE = 0.6  # shorter than a connect timeout: the client's clock must not run then
SEND_SHORT = 0.5
SEND_GLOBAL = 1.5
STALLED_READ = 30.0  # the stalled upstream reads no body byte for this long
SEND_BODY = 48 * 1024 * 1024  # far more than the socket buffers on both sides hold

# The engine's clock advances once per 100 ms tick, so a deadline may fire up to one tick
# early or late.
TICK = 0.1

MAX_BODY_GLOBAL = 4096
MAX_BODY_SMALL = 1024
MAX_BODY_BIG = 65536
MAX_BODY_POLICY = 32  # below the BodySigner policy's needs_body (64)
MAX_BODY_SEND = 64 * 1024 * 1024

BODY_SIGNER = "tests.policies_for_tests:BodySigner"


@pytest.fixture(scope="module")
def backlog_port() -> Iterator[int]:
    """A listening socket whose accept queue is full and never drained.

    Loopback answers every SYN, so no address here is a blackhole; but Linux drops a SYN
    for a listener whose accept queue is full, and the connect hangs as it would against
    a silent host until the gateway's connect timeout gives up.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.fixture(scope="module")
def stack(module_upstream, module_gateway, http, backlog_port) -> Any:
    echo = module_upstream("echo", name="echo")
    ups: dict[str, Any] = {
        "echo": echo,
        "slow": module_upstream("slow", name="slow", delay=SLOW_UPSTREAM),
        "stalled": module_upstream("echo", name="stalled", read_delay=STALLED_READ),
        "blackhole": f"http://127.0.0.1:{backlog_port}",
    }
    route = http.route
    send_limit = {"max_body_bytes": MAX_BODY_SEND}
    routes = [
        route("read-short", ["/read-short"], "slow", timeouts={"read": f"{READ_SHORT}s"}),
        route("read-global", ["/read-global"], "slow"),
        route(
            "connect-short",
            ["/connect-short"],
            "blackhole",
            timeouts={"connect": f"{int(CONNECT_SHORT * 1000)}ms"},
        ),
        route("connect-global", ["/connect-global"], "blackhole"),
        route(
            "send-short",
            ["/send-short"],
            "stalled",
            timeouts={"send": f"{int(SEND_SHORT * 1000)}ms"},
            limits=send_limit,
        ),
        route("send-global", ["/send-global"], "stalled", limits=send_limit),
        route("small", ["/small"], "echo", limits={"max_body_bytes": MAX_BODY_SMALL}),
        route("big", ["/big"], "echo", limits={"max_body_bytes": MAX_BODY_BIG}),
        route("default", ["/default"], "echo"),
        route(
            "policy",
            ["/policy"],
            "echo",
            limits={"max_body_bytes": MAX_BODY_POLICY},
            policies=[{BODY_SIGNER: {}}],
        ),
        route("policy-wide", ["/policy-wide"], "echo", policies=[{BODY_SIGNER: {}}]),
    ]
    gw = module_gateway(
        routes=routes,
        upstreams=ups,
        limits={"max_body_bytes": MAX_BODY_GLOBAL},
        admin={"listen": "127.0.0.1:0"},
        timeouts={
            "upstream_read": f"{READ_GLOBAL}s",
            "upstream_connect": f"{CONNECT_GLOBAL}s",
            "upstream_send": f"{SEND_GLOBAL}s",
            "client_body_idle": f"{int(CLIENT_BODY_IDLE * 1000)}ms",
        },
    )

    class Stack:
        pass

    st = Stack()
    st.gw, st.echo = gw, echo
    return st


def timed(stack: Any, path: str) -> tuple[Any, float]:
    started = time.monotonic()
    resp = stack.gw.request("GET", path)
    return resp, time.monotonic() - started


# --- read -------------------------------------------------------------------------------


def test_route_read_timeout_fires_at_its_own_value(stack) -> None:
    resp, elapsed = timed(stack, "/read-short")
    assert resp.status == 504
    assert resp.error()["code"] == "upstream_timeout"
    assert READ_SHORT - TICK - 0.02 <= elapsed < READ_SHORT + 0.5


def test_route_without_a_read_timeout_keeps_the_global_one(stack) -> None:
    resp, elapsed = timed(stack, "/read-global")
    assert resp.status == 200, resp
    assert resp.json()["target"] == "/read-global"
    assert SLOW_UPSTREAM * 0.9 <= elapsed < READ_GLOBAL


# --- connect ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "timeout"),
    [("/connect-short", CONNECT_SHORT), ("/connect-global", CONNECT_GLOBAL)],
    ids=["route-value", "global-value"],
)
def test_connect_timeout_is_the_routes_on_a_shared_target(stack, path: str, timeout: float):
    # Both routes use the same target: the timeout cannot be the target's. The global one
    # is longer than client_body_idle, which must not cut the connect short with a 408.
    resp, elapsed = timed(stack, path)
    assert resp.status == 504
    assert resp.error()["code"] == "upstream_connect_timeout"
    assert timeout - 0.05 <= elapsed < timeout + 0.5  # asyncio's own timer, not the tick


# --- send -------------------------------------------------------------------------------


def post_to_stalled_upstream(stack: Any, http: Any, path: str) -> tuple[Any, float]:
    """POST a body larger than every buffer on the way to an upstream that reads none of
    it; the body is sent from a thread while this one waits for the answer."""
    client = stack.gw.connect(timeout=10)
    head = http.build_request("POST", path, [("Content-Length", str(SEND_BODY))])

    def send_body() -> None:
        try:
            client.send(head)
            for piece in http.pattern_bytes(SEND_BODY):
                client.send(piece)
        except OSError:
            pass  # the gateway gave up and closed: expected

    sender = threading.Thread(target=send_body, daemon=True)
    started = time.monotonic()
    sender.start()
    try:
        resp = client.read_final("POST")
        return resp, time.monotonic() - started
    finally:
        client.close()
        sender.join(5)


@pytest.mark.parametrize(
    ("path", "timeout"),
    [("/send-short", SEND_SHORT), ("/send-global", SEND_GLOBAL)],
    ids=["route-value", "global-value"],
)
def test_upstream_that_stops_reading_the_body_gets_a_send_timeout(
    stack, http, path: str, timeout: float
) -> None:
    resp, elapsed = post_to_stalled_upstream(stack, http, path)
    assert resp.status == 504
    assert resp.error()["code"] == "upstream_send_timeout"
    assert "close" in resp.connection_tokens()
    # The clock starts once the buffers are full, a little after the request starts.
    assert timeout - TICK - 0.02 <= elapsed < timeout + 2.0


# --- body limits ------------------------------------------------------------------------


BODY_CASES = [
    ("/small", MAX_BODY_SMALL, "smaller-than-global"),
    ("/big", MAX_BODY_BIG, "larger-than-global"),
    ("/default", MAX_BODY_GLOBAL, "inherits-global"),
]


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        pytest.param(path, size + extra, status, id=f"{name}-{label}")
        for path, size, name in BODY_CASES
        for extra, status, label in [(0, 200, "at-limit"), (1, 413, "one-over")]
    ],
)
def test_content_length_over_the_route_limit_is_413_before_forwarding(
    stack, http, path: str, size: int, status: int
) -> None:
    target = f"{path}?cl={size}"
    with stack.gw.connect() as client:
        client.send(http.build_request("POST", target, body=b"b" * size))
        resp = client.read_final("POST")
    assert resp.status == status, resp
    if status == 413:
        assert resp.error()["code"] == "body_too_large"
        assert all(r.target != target for r in stack.echo.requests), "it was forwarded"
    else:
        assert resp.json()["body_len"] == size


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        pytest.param(path, size + extra, status, id=f"{name}-{label}")
        for path, size, name in BODY_CASES
        for extra, status, label in [(0, 200, "at-limit"), (1, 413, "one-over")]
    ],
)
def test_chunked_body_growing_past_the_route_limit_is_413(
    stack, http, path: str, size: int, status: int
) -> None:
    # Many small chunks: the body crosses the limit in its last chunk, not in its first.
    pieces = [b"c" * 256] * (size // 256) + [b"c" * (size % 256)]
    request = http.build_request(
        "POST", f"{path}?chunked={size}", [("Transfer-Encoding", "chunked")]
    )
    with stack.gw.connect() as client:
        client.send(request + http.chunked(*[p for p in pieces if p]))
        resp = client.read_final("POST")
    assert resp.status == status, resp
    if status == 413:
        assert resp.error()["code"] == "body_too_large"
    else:
        assert resp.json()["body_len"] == size


def test_a_request_after_a_large_chunked_one_gets_its_own_routes_limit(stack, http) -> None:
    # The big route raises the parser's limit for one request; it must not stay raised.
    with stack.gw.connect() as client:
        client.send(
            http.build_request("POST", "/big", [("Transfer-Encoding", "chunked")])
            + http.chunked(b"x" * 60000)
        )
        assert client.read_final("POST").status == 200
        client.send(
            http.build_request("POST", "/small", [("Transfer-Encoding", "chunked")])
            + http.chunked(b"y" * (MAX_BODY_SMALL + 1))
        )
        resp = client.read_final("POST")
    assert resp.status == 413
    assert resp.error()["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        pytest.param("/policy", MAX_BODY_POLICY, 200, id="route-limit-below-needs-body-at"),
        pytest.param("/policy", MAX_BODY_POLICY + 1, 413, id="route-limit-below-needs-body-over"),
        pytest.param("/policy-wide", 64, 200, id="needs-body-below-route-limit-at"),
        pytest.param("/policy-wide", 65, 413, id="needs-body-below-route-limit-over"),
    ],
)
def test_policy_that_reads_the_body_keeps_working_under_a_route_limit(
    stack, http, path: str, size: int, status: int
) -> None:
    with stack.gw.connect() as client:
        client.send(http.build_request("POST", path, body=b"p" * size))
        resp = client.read_final("POST")
    assert resp.status == status, resp
    if status == 413:
        assert resp.error()["code"] == "body_too_large"
    else:
        seen = resp.json()
        assert seen["body_len"] == size
        forwarded = {name.lower(): value for name, value in seen["headers"]}
        assert forwarded["x-body-length"] == str(size)


ADMIN_RE = re.compile(r"fastgw admin on http://([0-9.]+):(\d+)")


def test_admin_routes_lists_the_effective_values(stack, http) -> None:
    deadline = time.monotonic() + 5
    found = None
    while found is None and time.monotonic() < deadline:
        found = ADMIN_RE.search(stack.gw.stdout)
        time.sleep(0.02)
    assert found is not None, stack.gw.stdout
    with http.RawClient(found.group(1), int(found.group(2))) as client:
        rows = {row["name"]: row for row in client.request("GET", "/routes").json()}
    effective = {
        name: (
            row["connect_timeout"],
            row["read_timeout"],
            row["send_timeout"],
            row["max_body_bytes"],
        )
        for name, row in rows.items()
    }
    assert effective["read-short"] == (CONNECT_GLOBAL, READ_SHORT, SEND_GLOBAL, MAX_BODY_GLOBAL)
    assert effective["connect-short"][0] == CONNECT_SHORT
    assert effective["send-short"] == (CONNECT_GLOBAL, READ_GLOBAL, SEND_SHORT, MAX_BODY_SEND)
    assert effective["small"][3] == MAX_BODY_SMALL
    assert effective["default"] == (CONNECT_GLOBAL, READ_GLOBAL, SEND_GLOBAL, MAX_BODY_GLOBAL)
