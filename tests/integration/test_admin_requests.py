"""The admin listener reads requests with the proxy's strict parser: what the proxy refuses,
the admin API refuses with the same status and code, in the JSON error format."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop

from fastgw import Gateway


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


HEALTH = b"GET /health HTTP/1.1\r\nHost: a\r\n"

REFUSED = [
    pytest.param(
        HEALTH + "Content-Length: ²\r\n\r\n".encode(),
        400,
        "bad_content_length",
        id="superscript-digit-length",
    ),
    pytest.param(HEALTH + b"Content-Length: +3\r\n\r\nabc", 400, "bad_content_length", id="sign"),
    pytest.param(
        HEALTH + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        400,
        "duplicate_content_length",
        id="two-lengths",
    ),
    pytest.param(HEALTH + b"Content-Length: 65537\r\n\r\n", 413, "body_too_large", id="too-big"),
    pytest.param(
        b"POST /reload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "bad_request",
        id="chunked",
    ),
    pytest.param(b"GET /health HTTP/1.1\nHost: a\n\n", 400, "bare_lf", id="bare-lf"),
    pytest.param(b"GET /health HTTP/1.1\r\n\r\n", 400, "missing_host", id="no-host"),
    pytest.param(HEALTH + b"X-A: 1\r\n  folded\r\n\r\n", 400, "obs_fold", id="obs-fold"),
    pytest.param(
        HEALTH + b"X-A : 1\r\n\r\n", 400, "header_name_whitespace", id="space-before-colon"
    ),
    pytest.param(b"GET /health HTTP/2.0\r\nHost: a\r\n\r\n", 505, "version_not_supported", id="h2"),
    pytest.param(
        HEALTH + b"X-Big: " + b"a" * 17000 + b"\r\n\r\n",
        431,
        "header_too_large",
        id="head-too-large",
    ),
    pytest.param(
        b"GET /%2e%2e/health HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path_above_root", id="dots"
    ),
]


def exchange(http: Any, address: tuple[str, int], raw: bytes) -> tuple[Any, bytes]:
    """Send `raw`; the response and whatever followed it before the close."""
    with http.RawClient(*address) as client:
        client.send(raw)
        response = client.read_response()
        assert client.wait_closed(3.0)
        return response, bytes(client.buf)


def with_admin(http: Any, upstream: Any, check: Any) -> None:
    up = upstream("echo")
    config = http.gateway_config(
        routes=[http.route("main", ["/{*rest}"], "main")],
        upstreams={"main": up},
        admin={"listen": "127.0.0.1:0"},
    )

    async def main() -> None:
        gw = Gateway(config)
        await gw.start()
        try:
            assert gw.admin is not None and gw.admin.address is not None
            await asyncio.to_thread(check, gw.admin.address)
        finally:
            await gw.stop()

    run(main())


@pytest.mark.parametrize(("raw", "status", "code"), REFUSED)
def test_refused_like_the_proxy(
    http: Any, upstream: Any, raw: bytes, status: int, code: str
) -> None:
    def check(address: tuple[str, int]) -> None:
        response, rest = exchange(http, address, raw)
        assert response.status == status
        assert response.header("content-type") == "application/json"
        error = response.json()["error"]
        assert (error["status"], error["code"]) == (status, code)
        assert error["message"] and error["request_id"]
        assert rest == b""

    with_admin(http, upstream, check)


def test_accepted_requests(http: Any, upstream: Any) -> None:
    def check(address: tuple[str, int]) -> None:
        # A body is read and ignored; the path is normalised as the proxy routes it.
        response, _ = exchange(http, address, HEALTH + b"Content-Length: 3\r\n\r\nabc")
        assert (response.status, response.json()) == (200, {"status": "ok"})
        response, _ = exchange(http, address, b"GET /x/../health?q=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert response.status == 200
        # The body in pieces, sent after the head.
        with http.RawClient(*address) as client:
            client.send(b"GET /ready HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n")
            client.send(b"\r\nab")
            client.send(b"cd")
            assert client.read_response().json() == {"ready": True}
        # One request per connection: a pipelined second one is not answered.
        response, rest = exchange(
            http, address, HEALTH + b"\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert response.status == 200
        assert rest == b""

    with_admin(http, upstream, check)
