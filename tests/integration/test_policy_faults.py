"""Policies under faults: hooks that outlive their exchange, hang, or answer with bad data;
upgrades whose first tunnelled bytes come with the 101. Real sockets, in-process gateway."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from fastgw.testing import running_gateway

ROOT = Path(__file__).resolve().parents[2]
P = "tests.policies_for_tests:"

Handler = Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@pytest.fixture(autouse=True)
def _policies_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    assert sys.path[0] == str(ROOT)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


def response(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def raw_upstream(handler: Handler) -> tuple[asyncio.AbstractServer, int]:
    """An upstream that reads each request head and lets `handler` answer it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                if not await handler(target, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_for(reader: asyncio.StreamReader, seconds: float) -> bytes:
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


async def answer_ok(target: str, reader: Any, writer: asyncio.StreamWriter) -> bool:
    writer.write(response(b"ok"))
    await writer.drain()
    return True


def policy_route(policy: str) -> list[dict[str, Any]]:
    """One catch-all route to the upstream `app` whose chain is the test policy `policy`."""
    return [
        {
            "name": "h",
            "match": {"paths": ["/{*r}"]},
            "upstream": "app",
            "policies": [{P + policy: {}}],
        }
    ]


def config(port: int, routes: list[dict[str, Any]], **timeouts: str) -> dict[str, Any]:
    return {
        "timeouts": timeouts,
        "upstreams": {"app": {"targets": [{"url": f"http://127.0.0.1:{port}"}]}},
        "routes": routes,
    }


def test_response_hook_outliving_its_exchange_never_touches_the_next_one() -> None:
    # A's response hook sleeps past upstream_read: A gets 504. B's response (with a cookie)
    # goes through the same pooled upstream connection A then reuses; when A's old hook
    # finally ends, nothing of it may reach A's next exchange (nor crash the gateway).
    async def handler(target: str, reader: Any, writer: asyncio.StreamWriter) -> bool:
        if target == "/plain/b":
            writer.write(response(b"B-body", b"set-cookie: session=B-SECRET\r\n"))
        elif target == "/plain/a2":
            await asyncio.sleep(0.8)
            writer.write(response(b"A2-body"))
        else:
            writer.write(response(b"A1-body"))
        await writer.drain()
        return True

    async def main() -> None:
        server, port = await raw_upstream(handler)
        routes = [
            {
                "name": "hook",
                "match": {"paths": ["/hook/{*r}"]},
                "upstream": "app",
                "policies": [{P + "SlowHooks": {}}],
            },
            {"name": "plain", "match": {"paths": ["/plain/{*r}"]}, "upstream": "app"},
        ]
        async with server, running_gateway(config(port, routes, upstream_read="1s")) as gw:
            ra, wa = await asyncio.open_connection(*gw.address)
            wa.write(b"GET /hook/1 HTTP/1.1\r\nhost: x\r\nx-slow-response: 2.5\r\n\r\n")
            first = await read_for(ra, 1.6)
            assert first.startswith(b"HTTP/1.1 504 ")
            assert b'"code":"policy_timeout"' in first
            b_response = await gw.request("GET", "/plain/b")
            assert b_response.status == 200
            wa.write(b"GET /plain/a2 HTTP/1.1\r\nhost: x\r\n\r\n")
            second = await read_for(ra, 2.5)
            assert second.count(b"HTTP/1.1 ") == 1, second
            assert b"B-SECRET" not in second and second.endswith(b"A2-body")
            assert (await gw.request("GET", "/plain/b")).status == 200

    run(main())


def test_hanging_request_hook_is_cut_off_at_upstream_read() -> None:
    async def main() -> None:
        server, port = await raw_upstream(answer_ok)
        routes = policy_route("SlowHooks")
        async with server, running_gateway(config(port, routes, upstream_read="500ms")) as gw:
            loop = asyncio.get_running_loop()
            started = loop.time()
            answer = await gw.request("GET", "/a", [("x-slow-request", "5")])
            assert answer.status == 504
            assert answer.json()["error"]["code"] == "policy_timeout"
            assert loop.time() - started < 2.0
            assert (await gw.request("GET", "/a")).status == 200

    run(main())


def test_bytes_after_a_101_in_the_same_read_follow_the_101_head() -> None:
    async def handler(target: str, reader: Any, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            b"sec-websocket-accept: abc\r\n\r\n\x81\x05HELLO"
        )
        await writer.drain()
        await asyncio.sleep(1)
        return False

    async def main() -> None:
        server, port = await raw_upstream(handler)
        routes = [{"name": "ws", "match": {"paths": ["/ws"]}, "upstream": "app"}]
        async with server, running_gateway(config(port, routes)) as gw:
            reader, writer = await asyncio.open_connection(*gw.address)
            writer.write(
                b"GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
                b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            data = await read_for(reader, 0.8)
            assert data.startswith(b"HTTP/1.1 101 ")
            assert data.endswith(b"\r\n\r\n\x81\x05HELLO")
            writer.close()

    run(main())


def test_response_with_headers_changed_to_str_is_a_policy_error() -> None:
    async def main() -> None:
        server, port = await raw_upstream(answer_ok)
        async with server, running_gateway(config(port, policy_route("StrHeaders"))) as gw:
            answer = await gw.request("GET", "/a")
            assert answer.status == 500
            assert answer.json()["error"]["code"] == "policy_error"
            assert b"value-as-str" not in answer.body

    run(main())


def test_expect_continue_on_a_body_reading_chain_gets_one_100() -> None:
    async def handler(target: str, reader: Any, writer: asyncio.StreamWriter) -> bool:
        await reader.readexactly(5)
        writer.write(response(b"ok"))
        await writer.drain()
        return True

    async def main() -> None:
        server, port = await raw_upstream(handler)
        async with server, running_gateway(config(port, policy_route("BodySigner"))) as gw:
            reader, writer = await asyncio.open_connection(*gw.address)
            writer.write(
                b"POST /a HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"
            )
            interim = await read_for(reader, 0.3)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            rest = await read_for(reader, 0.8)
            assert rest.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in rest
            writer.close()

    run(main())
