"""Resource audit: after a burst of normal, failing, pipelined and abandoned exchanges, the
engine's live client connections return to zero and every upstream socket is either idle in
its pool (within max_idle) or closed. Counters come from the running engine, in process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import uvloop

from fastgw import Gateway


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


def traffic(http: Any, address: tuple[str, int]) -> None:
    for i in range(20):
        with http.RawClient(*address) as client:
            assert client.request("GET", f"/ok/{i}").status == 200
            assert client.request("POST", "/ok/body", body=b"x" * 5000).status == 200
    with http.RawClient(*address) as client:
        client.send(b"".join(http.build_request("GET", f"/ok/p{i}") for i in range(5)))
        assert [client.read_response().status for _ in range(5)] == [200] * 5
    for _ in range(5):
        with http.RawClient(*address) as client:
            assert client.request("GET", "/reset").status == 502
            assert client.request("GET", "/nowhere").status == 404
    for _ in range(5):
        # Clients that give up halfway: mid-head, and mid-body with a slow upstream.
        with socket.create_connection(address, timeout=2) as sock:
            sock.sendall(b"GET /ok/x HTTP/1.1\r\nHost: a\r\n")
        with socket.create_connection(address, timeout=2) as sock:
            sock.sendall(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")


def test_connections_and_upstream_sockets_return_to_baseline(upstream, http) -> None:
    ok, reset, slow = upstream("echo", name="ok"), upstream("reset"), upstream("slow", delay=0.3)
    config = http.gateway_config(
        routes=[
            http.route("ok", ["/ok/{*rest}"], "ok"),
            http.route("reset", ["/reset"], "reset"),
            http.route("slow", ["/slow"], "slow"),
        ],
        upstreams={"ok": ok, "reset": reset, "slow": slow},
    )
    config["upstreams"]["ok"]["keepalive"] = {"max_idle": 4, "idle_timeout": "60s"}

    async def main() -> None:
        async with Gateway(config) as gw:
            await asyncio.to_thread(traffic, http, gw.addresses[0])
            engine = gw.engine
            for _ in range(100):
                if engine.active_connections == 0:
                    break
                await asyncio.sleep(0.05)
            assert engine.active_connections == 0
            assert engine.busy_connections == 0
            for target in gw.plan.pools["ok"].target_list:
                assert target.open_connections == target.idle_count <= 4
            for name in ("reset", "slow"):
                for target in gw.plan.pools[name].target_list:
                    for _ in range(40):
                        if target.open_connections == target.idle_count:
                            break
                        await asyncio.sleep(0.05)
                    assert target.open_connections == target.idle_count

    run(main())
