"""The embedding API in-process on a uvloop loop: start, addresses, requests, reload while
a request is in flight, stop. Clients are blocking sockets run in worker threads so the
gateway keeps the event loop to itself."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop
import yaml

import fastgw


def gateway_class() -> Any:
    # imported per test so a missing API fails these tests, not the whole collection
    from fastgw import Gateway

    return Gateway


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


def fetch(http: Any, address: tuple[str, int], path: str) -> Any:
    with http.RawClient(*address) as client:
        return client.request("GET", path)


def one_route(http: Any, upstream: Any) -> dict[str, Any]:
    return http.gateway_config(
        routes=[http.route("main", ["/r/{*rest}"], "main")], upstreams={"main": upstream}
    )


def assert_refused(address: tuple[str, int]) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2).close()


def test_start_serve_stop(upstream, http) -> None:
    up = upstream("echo", name="A")

    async def main() -> None:
        gw = gateway_class()(one_route(http, up))
        await gw.start()
        try:
            assert len(gw.addresses) == 1
            host, port = gw.addresses[0]
            assert host == "127.0.0.1" and port > 0
            resp = await asyncio.to_thread(fetch, http, (host, port), "/r/x?y=1")
            assert resp.status == 200
            assert resp.json()["target"] == "/r/x?y=1"
        finally:
            await gw.stop()
        assert_refused((host, port))

    run(main())


def test_from_file_and_async_with(upstream, http, tmp_path) -> None:
    up = upstream("echo", name="A")
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(one_route(http, up)))

    async def main() -> None:
        async with gateway_class().from_file(str(path)) as gw:
            address = gw.addresses[0]
            resp = await asyncio.to_thread(fetch, http, address, "/r/file")
            assert resp.json()["upstream"] == "A"
        assert_refused(address)

    run(main())


def test_reload_swaps_plan_without_dropping_in_flight(upstream, http, tmp_path) -> None:
    old = upstream("slow", name="old", delay=0)
    new = upstream("echo", name="new")

    async def main() -> None:
        gw = gateway_class()(one_route(http, old))
        await gw.start()
        try:
            address = gw.addresses[0]
            keep_alive = http.RawClient(*address)
            first = await asyncio.to_thread(keep_alive.request, "GET", "/r/k1")
            assert first.json()["upstream"] == "old"

            old.opts["delay"] = 2.0
            in_flight = asyncio.ensure_future(
                asyncio.to_thread(fetch, http, address, "/r/in-flight")
            )
            for _ in range(500):
                if any(r.target == "/r/in-flight" for r in old.requests):
                    break
                await asyncio.sleep(0.01)
            assert any(r.target == "/r/in-flight" for r in old.requests)

            await gw.reload(one_route(http, new))

            started = time.monotonic()
            fresh = await asyncio.to_thread(fetch, http, address, "/r/fresh")
            assert fresh.json()["upstream"] == "new"
            assert time.monotonic() - started < 1.5, "new requests waited for the old one"
            reused = await asyncio.to_thread(keep_alive.request, "GET", "/r/k2")
            assert reused.json()["upstream"] == "new"
            keep_alive.close()

            done = await in_flight
            assert done.status == 200
            assert (done.json()["upstream"], done.json()["target"]) == ("old", "/r/in-flight")
            assert not any(r.target == "/r/in-flight" for r in new.requests)

            # reload from a file path, back to the old upstream
            old.opts["delay"] = 0
            path = tmp_path / "back.yaml"
            path.write_text(yaml.safe_dump(one_route(http, old)))
            await gw.reload(str(path))
            back = await asyncio.to_thread(fetch, http, address, "/r/back")
            assert back.json()["upstream"] == "old"
        finally:
            await gw.stop()

    run(main())


def test_invalid_reload_keeps_the_running_plan(upstream, http) -> None:
    up = upstream("echo", name="A")
    broken = one_route(http, up)
    broken["routes"][0]["upstream"] = "missing"
    error = getattr(fastgw, "ConfigError", Exception)

    async def main() -> None:
        async with gateway_class()(one_route(http, up)) as gw:
            with pytest.raises(error):
                await gw.reload(broken)
            resp = await asyncio.to_thread(fetch, http, gw.addresses[0], "/r/still")
            assert resp.status == 200 and resp.json()["upstream"] == "A"

    run(main())


def test_listener_changes_are_reported_as_needing_a_restart(upstream, http) -> None:
    up = upstream("echo", name="A")
    moved = one_route(http, up)
    moved["listen"] = ["127.0.0.1:0", "[::1]:0"]

    async def main() -> None:
        async with gateway_class()(one_route(http, up)) as gw:
            before = list(gw.addresses)
            await gw.reload(moved)
            assert gw.last_reload["result"] == "ok"
            assert gw.last_reload["restart_required"] == ["listen"]
            # The listeners keep their sockets and keep serving.
            assert gw.addresses == before
            resp = await asyncio.to_thread(fetch, http, before[0], "/r/x")
            assert resp.status == 200
            await gw.reload(one_route(http, up))
            assert gw.last_reload["restart_required"] == []

    run(main())


def test_reload_with_a_dict_names_no_file(upstream, http, tmp_path) -> None:
    up = upstream("echo", name="A")
    file = tmp_path / "gateway.yaml"
    file.write_text(yaml.safe_dump(one_route(http, up)))
    broken = one_route(http, up)
    broken["routes"][0]["upstream"] = "missing"

    async def main() -> None:
        gw = gateway_class().from_file(file)
        async with gw:
            with pytest.raises(fastgw.ConfigError) as caught:
                await gw.reload(broken)
            assert str(file) not in str(caught.value)
            assert str(caught.value).startswith("$.routes[0].upstream: unknown upstream")
            assert all(str(file) not in line for line in gw.last_reload["errors"])
            # A dict that loads is the config from now on: no file behind it any more.
            await gw.reload(one_route(http, up))
            assert gw.config_file is None

    run(main())


@pytest.mark.parametrize(("workers", "warned"), [(2, True), ("auto", True), (1, False)])
def test_embedding_says_it_runs_one_process(upstream, http, caplog, workers, warned) -> None:
    """`workers:` is for `fastgw run`: an embedded Gateway serves alone and says so."""
    import logging

    up = upstream("echo", name="A")
    config = dict(one_route(http, up), workers=workers)
    log = logging.getLogger("fastgw")
    # An error log configured earlier in this process turns propagation to caplog off.
    handler = None if log.propagate else caplog.handler
    if handler is not None:
        log.addHandler(handler)
    try:

        async def main() -> None:
            async with gateway_class()(config) as gw:
                resp = await asyncio.to_thread(fetch, http, gw.addresses[0], "/r/one")
                assert resp.status == 200

        with caplog.at_level(logging.WARNING, logger="fastgw"):
            run(main())
    finally:
        if handler is not None:
            log.removeHandler(handler)
    messages = [r.getMessage() for r in caplog.records if r.name == "fastgw"]
    expected = (
        f"workers: {workers} is not applied: an embedded Gateway serves in this one process "
        "(`fastgw run` starts worker processes)"
    )
    assert messages == ([expected] if warned else [])


def test_status_shows_the_config_file_absolute(upstream, http, tmp_path, monkeypatch) -> None:
    up = upstream("echo", name="A")
    config = dict(one_route(http, up), admin={"listen": "127.0.0.1:0"})
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)

    async def main() -> None:
        async with gateway_class().from_file("gw.yaml") as gw:
            resp = await asyncio.to_thread(fetch, http, gw.admin.address, "/status")
            assert resp.json()["config_file"] == str(tmp_path / "gw.yaml")

    run(main())
