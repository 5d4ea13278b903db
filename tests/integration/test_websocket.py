"""WebSocket upgrade tunnelled through the gateway to a `websockets` echo server."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def stack(module_upstream, module_gateway, http) -> Any:
    ws_up = module_upstream("ws-echo")
    plain = module_upstream("echo")
    gw = module_gateway(
        routes=[
            http.route("ws", ["/ws/{*rest}"], "ws"),
            http.route("plain", ["/plain/{*rest}"], "plain"),
        ],
        upstreams={"ws": ws_up, "plain": plain},
    )

    class Stack:
        pass

    st = Stack()
    st.gw, st.ws_up, st.plain = gw, ws_up, plain
    return st


def ws_connect(stack, path: str = "/ws/echo") -> Any:
    return connect(
        f"ws://{stack.gw.host}:{stack.gw.port}{path}",
        open_timeout=5,
        close_timeout=5,
        max_size=None,
    )


def test_text_and_binary_messages_echo(stack) -> None:
    with ws_connect(stack) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01\xffbinary")
        assert ws.recv(timeout=5) == b"\x00\x01\xffbinary"
        for n in range(20):
            ws.send(f"msg {n}")
        assert [ws.recv(timeout=5) for _ in range(20)] == [f"msg {n}" for n in range(20)]
    assert stack.ws_up.last.target == "/ws/echo"


def test_large_binary_message(stack) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    with ws_connect(stack) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload


def test_client_close_handshake_completes(stack) -> None:
    with ws_connect(stack) as ws:
        ws.send("before close")
        assert ws.recv(timeout=5) == "before close"
        ws.close(code=1000, reason="done")
        # the upstream's close frame came back through the tunnel
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1000


def test_server_close_reaches_the_client(stack) -> None:
    with ws_connect(stack) as ws:
        ws.send("close-me")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")


def test_upgrade_refused_by_upstream_is_a_normal_response(stack) -> None:
    # The plain upstream answers 200 to an upgrade request: no tunnel, a normal response.
    with pytest.raises(InvalidStatus) as info:
        ws_connect(stack, "/plain/not-ws")
    assert info.value.response.status_code == 200


def test_plain_requests_still_work_after_tunnels(stack) -> None:
    resp = stack.gw.request("GET", "/plain/after")
    assert resp.status == 200 and resp.json()["target"] == "/plain/after"


def test_idle_tunnel_is_closed_after_upstream_read_and_a_busy_one_is_not(
    upstream, gateway, http
) -> None:
    ws_up = upstream("ws-echo")
    gw = gateway(
        routes=[http.route("ws", ["/ws/{*rest}"], "ws")],
        upstreams={"ws": ws_up},
        timeouts={"upstream_read": "600ms"},
    )
    url = f"ws://{gw.host}:{gw.port}/ws/echo"
    with connect(url, open_timeout=5, close_timeout=2, ping_interval=None) as busy:
        for n in range(6):  # traffic every 0.2 s keeps the tunnel open past 0.6 s
            busy.send(f"m{n}")
            assert busy.recv(timeout=2) == f"m{n}"
            time.sleep(0.2)
    with (
        connect(url, open_timeout=5, close_timeout=2, ping_interval=None) as idle,
        pytest.raises(ConnectionClosed),
    ):
        idle.recv(timeout=3)  # nothing to say: the gateway closes the tunnel
