"""100 reloads in a row while clients keep sending: no request fails, none is reset, and each
reload's routes take effect. In process (Gateway.reload), clients in threads, loopback only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import uvloop

from fastgw import Gateway

RELOADS = 100


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


def config(http: Any, up_a: Any, up_b: Any, generation: int) -> dict[str, Any]:
    # Every generation moves /gen/{*rest} between two upstreams and renames a header.
    cfg = http.gateway_config(
        routes=[
            http.route("steady", ["/steady/{*rest}"], "a"),
            http.route("gen", ["/gen/{*rest}"], "b" if generation % 2 else "a"),
        ],
        upstreams={"a": up_a, "b": up_b},
    )
    cfg["routes"][1]["policies"] = [{"request_headers": {"set": {"x-generation": str(generation)}}}]
    return cfg


def fetch(http: Any, address: tuple[str, int], path: str) -> Any:
    with http.RawClient(*address) as conn:
        return conn.request("GET", path)


def client(http: Any, address: tuple[str, int], stop: threading.Event, result: dict) -> None:
    """Keep-alive requests, and a fresh connection every 20, until told to stop."""
    sent = 0
    try:
        while not stop.is_set():
            with http.RawClient(*address, timeout=5) as conn:
                for _ in range(20):
                    path = "/steady/x" if sent % 2 else "/gen/x"
                    response = conn.request("GET", path)
                    sent += 1
                    if response.status != 200:
                        result.setdefault("bad", []).append((path, response.status))
    except Exception as exc:  # a reset or a truncated response: reported below
        result["error"] = repr(exc)
    result["sent"] = sent


def test_hundred_reloads_under_load_lose_nothing(upstream, http) -> None:
    up_a, up_b = upstream("echo", name="a"), upstream("echo", name="b")

    async def main() -> None:
        async with Gateway(config(http, up_a, up_b, 0)) as gw:
            address = gw.addresses[0]
            stop = threading.Event()
            results = [{} for _ in range(3)]
            threads = [
                threading.Thread(target=client, args=(http, address, stop, result))
                for result in results
            ]
            for thread in threads:
                thread.start()
            try:
                for generation in range(1, RELOADS + 1):
                    await gw.reload(config(http, up_a, up_b, generation))
                    await asyncio.sleep(0.01)
            finally:
                stop.set()
                await asyncio.to_thread(lambda: [t.join(20) for t in threads])
            for result in results:
                assert "error" not in result, result["error"]
                assert not result.get("bad"), result["bad"][:5]
                assert result["sent"] > 0
            assert sum(result["sent"] for result in results) >= RELOADS
            final = await asyncio.to_thread(fetch, http, address, "/gen/y")
            assert final.json()["upstream"] == "a"  # generation 100 is even
            assert up_a.requests[-1].header("x-generation") == str(RELOADS)

    run(main())
