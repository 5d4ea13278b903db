"""Response body stages (the body seam, fastgw/_native/body.pxi) over real sockets.

A second implementation of the seam, written in Python (PythonBodyStage), is plugged into
routes of an in-process gateway: observers see every body byte of length-framed, chunked and
close-delimited responses and hear complete=True, or complete=False when the body was cut
short, while the client gets the very bytes a route without stages sends; transforms reach
the client reframed (chunked to HTTP/1.1, close-delimited to 1.0, nothing for HEAD and 304)
without a content-length.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastgw import _core
from fastgw.testing import running_gateway

BIG = 100_000  # larger than a body that shares the head's write
SMALL = b"a small body, framed by its length"
CHUNKS = [b"hello ", b"chunked ", b"world"]
CLOSE_BODY = b"all of it until the upstream closes"
PARTIAL = b"p" * 100  # what the partial upstreams send of the 1000 bytes they promise
REQUEST_ID_LINE = re.compile(rb"x-request-id: [^\r]*\r\n")


# --- the second implementation ------------------------------------------------------------


class Tee(_core.PythonBodyFilter):
    """An observer: records what passes and how the body ended."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.ends: list[bool] = []

    def on_data(self, chunk: bytes) -> bytes:
        self.chunks.append(chunk)
        return b"an observer's result is ignored"

    def on_end(self, complete: bool) -> None:
        self.ends.append(complete)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class Upper(Tee):
    """A transform: the body in upper case, a field added, the upstream's ETag removed."""

    def __init__(self) -> None:
        _core.PythonBodyFilter.__init__(
            self, transforms=True, fields=[("x-body-stage", "upper")], remove=["ETag"]
        )
        self.chunks = []
        self.ends = []

    def on_data(self, chunk: bytes) -> bytes:
        self.chunks.append(chunk)
        return chunk.upper()


class Wrap(Tee):
    """A transform that holds bytes back and sends its last ones at the end: [body]."""

    def __init__(self) -> None:
        _core.PythonBodyFilter.__init__(self, transforms=True)
        self.chunks = []
        self.ends = []

    def on_data(self, chunk: bytes) -> bytes | None:
        first = not self.chunks
        self.chunks.append(chunk)
        return b"[" + chunk if first else chunk

    def on_end(self, complete: bool) -> bytes:
        self.ends.append(complete)
        return b"]" if self.chunks else b"[]"


class Boom(Tee):
    """An observer with a bug."""

    def on_data(self, chunk: bytes) -> bytes:
        raise RuntimeError("a bug in a body stage")


class Stage(_core.PythonBodyStage):
    """Opens one filter per response from `makers` (chained in this order); keeps them."""

    def __init__(self, *makers: Callable[[], Tee]) -> None:
        self.makers = makers
        self.opened: list[tuple[int, bool, Any]] = []
        self.filters: list[Tee] = []

    def open(self, status: int, headers: Any, has_body: bool) -> Tee | None:
        self.opened.append((status, has_body, headers))
        if not self.makers:
            return None  # asked, and declines every response
        made = self.makers[len(self.filters) % len(self.makers)]()
        self.filters.append(made)
        return made

    def last(self) -> Tee:
        assert self.filters, "the stage opened no filter"
        return self.filters[-1]


class NotAFilter(_core.PythonBodyStage):
    def open(self, status: int, headers: Any, has_body: bool) -> Any:
        return "not a filter"


class SameFilter(_core.PythonBodyStage):
    """Hands the one filter it has to every response: wrong, a filter serves one."""

    def __init__(self) -> None:
        self.filter = Tee()

    def open(self, status: int, headers: Any, has_body: bool) -> Tee:
        return self.filter


def stage_set() -> dict[str, Callable[[], list[_core.BodyStage]]]:
    """Route prefix -> the stages its routes get (a fresh set per route)."""
    return {
        "plain": lambda: [],
        "tee": lambda: [Stage(Tee)],
        "decline": lambda: [Stage()],
        "upper": lambda: [Stage(Upper)],
        "wrap": lambda: [Stage(Wrap)],
        "upper-tee": lambda: [Stage(Upper), Stage(Tee)],
        "tee-upper": lambda: [Stage(Tee), Stage(Upper)],
        "boom": lambda: [Stage(Boom)],
        "notfilter": lambda: [NotAFilter()],
        "same": lambda: [SameFilter()],
    }


# --- upstreams that break mid-body -------------------------------------------------------


class PartialUpstream:
    """Promises 1000 body bytes, sends PARTIAL, then resets the connection (`rst`) or
    stalls until closed."""

    def __init__(self, loop: Any, rst: bool) -> None:
        self.loop = loop
        self.rst = rst
        self.server: asyncio.AbstractServer | None = None
        self.closing: asyncio.Event | None = None
        self.port = 0

    def start(self) -> PartialUpstream:
        async def start() -> None:
            self.closing = asyncio.Event()
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

        self.loop.run(start())
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + PARTIAL)
            await writer.drain()
            if self.rst:
                await asyncio.sleep(0.1)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            assert self.closing is not None
            await self.closing.wait()
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        async def close() -> None:
            assert self.server is not None and self.closing is not None
            self.closing.set()
            self.server.close()
            await self.server.wait_closed()

        self.loop.run(close())


# --- the gateway ---------------------------------------------------------------------------


class Harness:
    def __init__(self, running: Any, stages: dict[str, list[Any]], http: Any) -> None:
        self.running = running
        self.stages = stages
        self.http = http
        self.address = running.address

    def stage(self, route: str, index: int = 0) -> Any:
        return self.stages[route][index]

    def connect(self) -> Any:
        return self.http.RawClient(*self.address)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self.connect() as client:
            return client.request(method, path, **kwargs)

    def raw(self, method: str, path: str, version: str = "HTTP/1.1") -> bytes:
        """Every byte of the response to one request on its own connection, up to the
        close; the request id (new each time) is cut out."""
        headers = [("Connection", "close")] if version == "HTTP/1.1" else []
        request = self.http.build_request(method, path, headers, version=version)
        with socket.create_connection(self.address, timeout=5) as sock:
            sock.sendall(request)
            data = bytearray()
            while piece := sock.recv(65536):
                data += piece
        return REQUEST_ID_LINE.sub(b"", bytes(data))


@pytest.fixture(scope="module")
def gw(module_upstream: Any, upstream_loop: Any, http: Any) -> Iterator[Harness]:
    rst = PartialUpstream(upstream_loop, rst=True).start()
    stall = PartialUpstream(upstream_loop, rst=False).start()
    upstreams: dict[str, Any] = {
        "len": module_upstream(
            "fixed", body=SMALL, headers=[("ETag", '"v1"'), ("Content-Type", "text/plain")]
        ),
        "empty": module_upstream("fixed", body=b""),
        "big": module_upstream("big", size=BIG),
        "bigchunked": module_upstream("big", size=BIG, chunked=True),
        "chunked": module_upstream("chunked", chunks=CHUNKS),
        "close": module_upstream("close", body=CLOSE_BODY),
        "notmod": module_upstream(
            "fixed",
            status=304,
            reason="Not Modified",
            headers=[("ETag", '"v1"'), ("Content-Length", "42")],
        ),
        "trunc": module_upstream("truncate", delay=0.1),
        "trunc_chunked": module_upstream("truncate-chunked", delay=0.1),
        "rst": rst.url,
        "stall": stall.url,
    }
    makers = stage_set()
    routes = [
        http.route(f"{prefix}-{kind}", [f"/{prefix}/{kind}"], kind)
        for prefix in makers
        for kind in upstreams
    ]
    config = http.gateway_config(routes, upstreams)
    stack = contextlib.AsyncExitStack()
    running = upstream_loop.run(stack.enter_async_context(running_gateway(config)))
    stages: dict[str, list[Any]] = {}
    try:
        for action in running.gateway.plan.core.actions:
            prefix = action.name.rsplit("-", 1)[0]
            stages[action.name] = makers[prefix]()
            action._set_body_stages(stages[action.name])
        yield Harness(running, stages, http)
    finally:
        upstream_loop.run(stack.aclose())
        rst.close()
        stall.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def expected_body(kind: str, http: Any) -> bytes:
    return {
        "len": SMALL,
        "empty": b"",
        "big": b"".join(http.pattern_bytes(BIG)),
        "bigchunked": b"".join(http.pattern_bytes(BIG)),
        "chunked": b"".join(CHUNKS),
        "close": CLOSE_BODY,
    }[kind]


# --- observers: every byte, and how the body ended ------------------------------------------

WHOLE = ["len", "empty", "big", "bigchunked", "chunked", "close"]


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("kind", WHOLE)
def test_an_observer_sees_the_whole_body_and_the_client_gets_the_same_bytes(
    gw: Harness, http: Any, kind: str, version: str
) -> None:
    plain = gw.raw("GET", f"/plain/{kind}", version)
    assert gw.raw("GET", f"/tee/{kind}", version) == plain
    assert gw.raw("GET", f"/decline/{kind}", version) == plain
    tee = gw.stage(f"tee-{kind}").last()
    assert (tee.body, tee.ends) == (expected_body(kind, http), [True])
    declined = gw.stage(f"decline-{kind}")
    assert declined.opened and declined.opened[-1][:2] == (200, True)
    assert not declined.filters


@pytest.mark.parametrize("kind", ["len", "chunked", "close"])
def test_an_observer_of_a_head_response_hears_only_the_end(gw: Harness, kind: str) -> None:
    plain = gw.raw("HEAD", f"/plain/{kind}")
    assert gw.raw("HEAD", f"/tee/{kind}") == plain
    stage = gw.stage(f"tee-{kind}")
    assert stage.opened[-1][:2] == (200, False)
    assert (stage.last().chunks, stage.last().ends) == ([], [True])


def test_an_observer_sees_the_fields_the_client_gets(gw: Harness) -> None:
    gw.request("GET", "/tee/len")
    status, _, headers = gw.stage("tee-len").opened[-1]
    assert status == 200
    assert headers.get("etag") == '"v1"' and headers.get("content-type") == "text/plain"
    assert "content-length" not in headers  # framing is the relay's, not a field


@pytest.mark.parametrize(
    ("kind", "arrived"),
    [("trunc", b"x" * 10), ("trunc_chunked", b"hello"), ("rst", PARTIAL)],
    ids=["length-fin", "chunked-fin", "length-rst"],
)
def test_an_upstream_that_breaks_mid_body_is_never_complete(
    gw: Harness, http: Any, kind: str, arrived: bytes
) -> None:
    for prefix in ("plain", "tee"):
        with gw.connect() as client, pytest.raises(http.IncompleteResponse) as info:
            client.request("GET", f"/{prefix}/{kind}")
        assert info.value.partial is not None and info.value.partial.body == arrived
    tee = gw.stage(f"tee-{kind}").last()
    assert (tee.body, tee.ends) == (arrived, [False])


def test_a_client_that_leaves_mid_body_cuts_the_body_short(gw: Harness, http: Any) -> None:
    stage = gw.stage("tee-stall")
    with gw.connect() as client:
        client.send(http.build_request("GET", "/tee/stall"))
        head = client.read_head()
        assert head.status == 200
        assert wait_for(lambda: bool(stage.filters) and stage.last().body == PARTIAL)
        # A reset: a client that only half-closes still gets the rest of its response.
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert wait_for(lambda: stage.last().ends == [False]), stage.last().ends
    assert gw.request("GET", "/tee/len").status == 200  # the gateway carries on


# --- transforms: new bytes, new framing -----------------------------------------------------


@pytest.mark.parametrize("kind", WHOLE)
def test_a_transform_reaches_an_http11_client_chunked(gw: Harness, http: Any, kind: str) -> None:
    with gw.connect() as client:
        resp = client.request("GET", f"/upper/{kind}")
        after = client.request("GET", "/plain/len")  # the connection is kept
    assert resp.status == 200 and resp.framing == "chunked"
    assert resp.body == expected_body(kind, http).upper()
    assert resp.header("content-length") is None
    assert resp.header("x-body-stage") == "upper"
    assert "close" not in resp.connection_tokens()
    assert (after.status, after.body) == (200, SMALL)
    assert gw.stage(f"upper-{kind}").last().ends == [True]


def test_a_transform_can_remove_upstream_fields(gw: Harness) -> None:
    plain = gw.request("GET", "/plain/len")
    upper = gw.request("GET", "/upper/len")
    assert plain.header("etag") == '"v1"' and upper.header("etag") is None
    assert upper.header("content-type") == "text/plain"


@pytest.mark.parametrize("kind", ["len", "chunked", "close"])
def test_a_transform_reaches_an_http10_client_close_delimited(
    gw: Harness, http: Any, kind: str
) -> None:
    raw = gw.raw("GET", f"/upper/{kind}", "HTTP/1.0")
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = head.lower().split(b"\r\n")[1:]
    assert b"connection: close" in fields
    assert not [f for f in fields if f.startswith((b"content-length", b"transfer-encoding"))]
    assert body == expected_body(kind, http).upper()


def test_a_transformed_head_response_has_no_length_and_no_body(gw: Harness) -> None:
    plain = gw.request("HEAD", "/plain/len")
    assert plain.header("content-length") == str(len(SMALL))
    with gw.connect() as client:
        head = client.request("HEAD", "/upper/len")
        after = client.request("GET", "/plain/len")
    assert (head.status, head.body, head.framing) == (200, b"", "none")
    assert head.header("content-length") is None and head.header("transfer-encoding") is None
    assert head.header("x-body-stage") == "upper"
    assert (after.status, after.body) == (200, SMALL)


def test_a_transformed_304_has_no_length_and_no_body(gw: Harness) -> None:
    plain = gw.request("GET", "/plain/notmod")
    assert (plain.status, plain.header("content-length")) == (304, "42")
    with gw.connect() as client:
        resp = client.request("GET", "/wrap/notmod")
        after = client.request("GET", "/plain/len")
    assert (resp.status, resp.body) == (304, b"")
    assert resp.header("content-length") is None and resp.header("transfer-encoding") is None
    assert after.body == SMALL  # nothing the transform emitted got between the two
    stage = gw.stage("wrap-notmod")
    assert stage.opened[-1][:2] == (304, False)
    assert stage.last().ends == [True]


@pytest.mark.parametrize("kind", ["len", "empty", "bigchunked"])
def test_a_transform_sends_its_last_bytes_at_the_end(gw: Harness, http: Any, kind: str) -> None:
    resp = gw.request("GET", f"/wrap/{kind}")
    expected = expected_body(kind, http)
    assert resp.framing == "chunked"
    assert resp.body == (b"[" + expected + b"]" if expected else b"[]")


def test_stages_run_in_order(gw: Harness) -> None:
    first = gw.request("GET", "/upper-tee/chunked")
    second = gw.request("GET", "/tee-upper/chunked")
    assert first.body == second.body == b"HELLO CHUNKED WORLD"
    # A stage sees what the stages before it made of the body.
    assert gw.stage("upper-tee-chunked", 1).last().body == b"HELLO CHUNKED WORLD"
    assert gw.stage("tee-upper-chunked", 0).last().body == b"hello chunked world"
    for route in ("upper-tee-chunked", "tee-upper-chunked"):
        assert [gw.stage(route, i).last().ends for i in (0, 1)] == [[True], [True]]


def test_a_transform_of_a_broken_body_never_ends_it(gw: Harness, http: Any) -> None:
    with gw.connect() as client, pytest.raises(http.IncompleteResponse) as info:
        client.request("GET", "/upper/trunc_chunked")
    assert info.value.partial is not None and info.value.partial.body == b"HELLO"
    assert gw.stage("upper-trunc_chunked").last().ends == [False]


# --- stages with bugs ---------------------------------------------------------------------


def test_a_failing_stage_costs_its_connection_only(gw: Harness, http: Any) -> None:
    before = _core.internal_error_counts()["upstream"]
    with gw.connect() as client:
        client.send(http.build_request("GET", "/boom/len"))
        with pytest.raises(http.IncompleteResponse):
            client.read_final()
    stage = gw.stage("boom-len")
    assert wait_for(lambda: stage.last().ends == [False]), stage.last().ends
    assert _core.internal_error_counts()["upstream"] == before + 1
    assert gw.request("GET", "/tee/len").status == 200


@pytest.mark.parametrize("route", ["notfilter", "same"])
def test_a_stage_that_opens_no_proper_filter_gets_a_500(gw: Harness, route: str) -> None:
    if route == "same":
        assert gw.request("GET", "/same/len").body == SMALL  # its first response is fine
    resp = gw.request("GET", f"/{route}/len")
    assert resp.status == 500 and resp.error()["code"] == "internal_error"


def test_only_body_stages_and_safe_fields_are_taken() -> None:
    action = _core.RouteAction(
        "r", 0, None, None, None, False, None,
        connect_timeout=1.0, read_timeout=1.0, send_timeout=1.0, max_body_bytes=1,
    )  # fmt: skip
    assert action.body_stages is None
    stage = Stage(Tee)
    action._set_body_stages([stage])
    assert action.body_stages == (stage,)
    action._set_body_stages(())
    assert action.body_stages is None
    with pytest.raises(TypeError, match="BodyStage"):
        action._set_body_stages([object()])
    with pytest.raises(ValueError, match="managed by the gateway"):
        _core.PythonBodyFilter(transforms=True, fields=[("Content-Length", "1")])
    with pytest.raises(ValueError, match="invalid header value"):
        _core.PythonBodyFilter(fields=[("x-a", "b\r\nc: d")])
