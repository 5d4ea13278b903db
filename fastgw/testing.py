"""Helpers for testing policies (and whole configs) through a real gateway over loopback.

Everything here uses real sockets on 127.0.0.1: an echo upstream that reports what it
received, the real `fastgw.Gateway` on an ephemeral port and a small HTTP/1.1 client.

One policy, one request::

    from fastgw.testing import run_policy_sync

    result = run_policy_sync({"mypkg.policies:Maintenance": {"message": "soon"}})
    assert result.status == 503
    assert result.upstream_request is None          # the policy answered itself

The same in async code, or a whole config::

    async with EchoUpstream() as upstream, running_gateway(config) as gw:
        response = await gw.request("GET", "/users/7", headers={"x-tenant": "acme"})
        assert response.json()["headers"] ...

With pytest, `pytest_plugins = ["fastgw.testing"]` provides two synchronous fixtures (they do
not need an async test plugin): `fastgw_upstream`, an EchoUpstream, and `fastgw_gateway`, a
factory `make(config) -> SyncGateway`. Both run on one event loop in a background thread and
are closed at teardown::

    pytest_plugins = ["fastgw.testing"]

    def test_tenant(fastgw_upstream, fastgw_gateway):
        gw = fastgw_gateway({"upstreams": {"app": {"targets": [{"url": fastgw_upstream.url}]}},
                             "routes": [...]})
        assert gw.request("GET", "/x").status == 403

The building blocks are public too, for tests that need more than one request at a time:
`LoopThread` (a uvloop loop in a background thread), `request_bytes` and `chunked_body` (the
bytes of a request), `parse_head` and `body_framing` (reading a message as RFC 9112 frames it),
`echo_payload` (what EchoUpstream answers).

PYTEST_DONT_REWRITE: this module asserts nothing, so pytest may load it as a plugin after a
test module imported it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "EchoRequest",
    "EchoUpstream",
    "HeaderMap",
    "LoopThread",
    "PolicyResult",
    "RunningGateway",
    "SyncGateway",
    "TestConnection",
    "TestResponse",
    "body_framing",
    "chunk_size",
    "chunked_body",
    "echo_payload",
    "parse_head",
    "policy_config",
    "request_bytes",
    "run_policy",
    "run_policy_sync",
    "running_gateway",
]

LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT = 10.0
_READ_LIMIT = 1 << 20  # longest head line the helpers accept
_T = TypeVar("_T")

HeadersArg = Mapping[str, str] | Sequence[tuple[str, str]] | None


class HeaderMap(Mapping[str, str]):
    """Header fields as received: a case-insensitive mapping to the first value.

    `getall(name)` gives every value of a repeated field; `pairs` the fields in order, with
    their names as written on the wire.
    """

    __slots__ = ("pairs",)

    def __init__(self, pairs: Sequence[tuple[str, str]] = ()) -> None:
        self.pairs: list[tuple[str, str]] = [(str(k), str(v)) for k, v in pairs]

    def __getitem__(self, name: str) -> str:
        lower = name.lower()
        for key, value in self.pairs:
            if key.lower() == lower:
                return value
        raise KeyError(name)

    def getall(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.pairs if key.lower() == lower]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.getall(name))

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for key, _ in self.pairs:
            seen.setdefault(key.lower())
        return iter(seen)

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self.pairs})

    def __repr__(self) -> str:
        return f"HeaderMap({self.pairs!r})"


@dataclass
class TestResponse:
    """A response the test client read: status, headers, the whole body."""

    __test__ = False  # not a pytest test class

    status: int
    reason: str
    headers: HeaderMap
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class EchoRequest:
    """One request as the echo upstream received it."""

    method: str
    target: str
    version: str
    headers: HeaderMap
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str | None:
        _, mark, query = self.target.partition("?")
        return query if mark else None


# --------------------------------------------------------------------------------------
# HTTP/1.1 message reading shared by the upstream and the client
# --------------------------------------------------------------------------------------


def parse_head(raw: bytes) -> tuple[str, HeaderMap]:
    """Split a message head (start line and fields, up to and with the blank line).

    Only the canonical form is accepted, the one a gateway must send: CRLF line ends, no bare
    CR or LF, `name: value` lines with no whitespace around the name (RFC 9112 5.1). Anything
    else raises ValueError naming the line.
    """
    if not raw.endswith(b"\r\n\r\n"):
        raise ValueError(f"head does not end with an empty line: {raw[-40:]!r}")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    pairs = []
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError(f"bare CR or LF in {line!r}")
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"malformed field line {line!r}")
        pairs.append((name, value.strip(" \t")))
    return lines[0], HeaderMap(pairs)


def body_framing(headers: HeaderMap, *, no_body: bool = False) -> tuple[str, int]:
    """How the body after a head is framed (RFC 9112 6.3): ("none", 0), ("chunked", 0),
    ("length", n) or ("close", 0): no framing field, so a response runs to the end of the
    connection and a request has no body.

    `no_body`: the message has none whatever its fields say (a response to HEAD, a 1xx, 204
    or 304). A message with both Transfer-Encoding and Content-Length, or with two
    Content-Length fields, raises ValueError: a gateway must never send one.
    """
    te = headers.get("transfer-encoding", "").lower()
    lengths = headers.getall("content-length")
    if te and lengths:
        raise ValueError("both Transfer-Encoding and Content-Length")
    if len(lengths) > 1:
        raise ValueError(f"{len(lengths)} Content-Length fields")
    if no_body:
        return "none", 0
    if te:
        if te != "chunked":
            raise ValueError(f"unexpected transfer-encoding {te!r}")
        return "chunked", 0
    if lengths:
        return "length", int(lengths[0])
    return "close", 0


def chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (with its CRLF), chunk extensions ignored (RFC 9112 7.1)."""
    return int(line[:-2].split(b";")[0], 16)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = chunk_size(await reader.readuntil(b"\r\n"))
        if size == 0:
            break
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailer fields: not kept
    return b"".join(parts)


async def _read_body(
    reader: asyncio.StreamReader, headers: HeaderMap, to_eof: bool, no_body: bool = False
) -> bytes:
    framing, length = body_framing(headers, no_body=no_body)
    if framing == "chunked":
        return await _read_chunked(reader)
    if framing == "length":
        return await reader.readexactly(length)
    # A request without framing fields has no body (RFC 9112 6.3 rule 6).
    return await reader.read() if framing == "close" and to_eof else b""


def request_bytes(
    method: str,
    target: str,
    headers: HeadersArg = None,
    body: bytes = b"",
    *,
    host: str | None = LOOPBACK,
    version: str = "HTTP/1.1",
    length_if_empty: bool = True,
) -> bytes:
    """The bytes of one request, fields in the order given.

    Adds `Host: host` first unless given (or `host` is None) and `Content-Length` last unless
    a framing field is given: for a non-empty body, and for an empty POST, PUT or PATCH body
    when `length_if_empty`.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    names = {name.lower() for name, _ in pairs}
    if host is not None and "host" not in names:
        pairs.insert(0, ("Host", host))
    wants_length = body or (length_if_empty and method in ("POST", "PUT", "PATCH"))
    if wants_length and not names & {"content-length", "transfer-encoding"}:
        pairs.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs)
    return head.encode("latin-1") + b"\r\n" + body


def chunked_body(*pieces: bytes) -> bytes:
    """`pieces` as a chunked body (RFC 9112 7.1), the last chunk included; empty pieces are
    left out, since a zero-size chunk ends the body."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"


def echo_payload(
    name: str,
    method: str,
    target: str,
    version: str,
    headers: HeaderMap,
    body_len: int,
    **extra: Any,
) -> bytes:
    """The JSON body EchoUpstream answers: what arrived, headers as [name, value] pairs in
    order; `extra` keys are added after the others."""
    return json.dumps(
        {
            "upstream": name,
            "method": method,
            "target": target,
            "version": version,
            "headers": headers.pairs,
            "body_len": body_len,
            **extra,
        }
    ).encode()


# --------------------------------------------------------------------------------------
# Echo upstream
# --------------------------------------------------------------------------------------


class EchoUpstream:
    """A real HTTP/1.1 server on 127.0.0.1 (ephemeral port) answering 200 with JSON.

    The JSON body says what arrived: `method`, `target`, `version`, `headers` (a list of
    [name, value] pairs in order) and `body_len`. Every request is also kept in `requests`
    as an EchoRequest. Connections are kept alive as HTTP/1.1 allows.
    """

    def __init__(self, name: str = "echo") -> None:
        self.name = name
        self.requests: list[EchoRequest] = []
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("EchoUpstream is not started")
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> EchoUpstream:
        self._server = await asyncio.start_server(
            self._serve, LOOPBACK, 0, limit=_READ_LIMIT, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> EchoUpstream:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            ValueError,
            asyncio.LimitOverrunError,
        ):
            pass  # the peer went away or sent something this small server does not parse
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, headers = parse_head(raw)
        method, target, version = request_line.split(" ", 2)
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await _read_body(reader, headers, to_eof=False)
        self.requests.append(EchoRequest(method, target, version, headers, body))
        payload = echo_payload(self.name, method, target, version, headers, len(body))
        tokens = {t.strip().lower() for v in headers.getall("connection") for t in v.split(",")}
        keep = "close" not in tokens and version == "HTTP/1.1"
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n%s\r\n"
            % (len(payload), b"" if keep else b"connection: close\r\n")
        )
        if method != "HEAD":
            writer.write(payload)
        await writer.drain()
        return keep


# --------------------------------------------------------------------------------------
# Client and in-process gateway
# --------------------------------------------------------------------------------------


class TestConnection:
    """One kept-alive client connection: requests go one after the other on it."""

    __test__ = False

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host
        self.timeout = timeout

    async def request(
        self, method: str, path: str, headers: HeadersArg = None, body: bytes = b""
    ) -> TestResponse:
        """Send one request and read its final response (bounded by `timeout`)."""
        self._writer.write(request_bytes(method, path, headers, body, host=self._host))
        return await asyncio.wait_for(self._send_and_read(method), self.timeout)

    async def send_raw(self, data: bytes, method: str = "GET") -> TestResponse:
        """Send `data` as is (a hand-framed request) and read the final response."""
        self._writer.write(data)
        return await asyncio.wait_for(self._send_and_read(method), self.timeout)

    async def _send_and_read(self, method: str) -> TestResponse:
        await self._writer.drain()
        return await self._read_final(method)

    async def _read_final(self, method: str) -> TestResponse:
        while True:
            raw = await self._reader.readuntil(b"\r\n\r\n")
            status_line, headers = parse_head(raw)
            _, code, reason = (status_line.split(" ", 2) + [""])[:3]
            status = int(code)
            if 100 <= status < 200:
                continue
            no_body = method == "HEAD" or status in (204, 304)
            body = await _read_body(self._reader, headers, to_eof=True, no_body=no_body)
            return TestResponse(status, reason, headers, body)

    async def is_closed(self, timeout: float = 1.0) -> bool:
        """True if the gateway closes this connection within `timeout` seconds."""
        try:
            data = await asyncio.wait_for(self._reader.read(1), timeout)
        except TimeoutError:
            return False
        return data == b""

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class RunningGateway:
    """A started gateway: its address and a client; `gateway` is the fastgw.Gateway."""

    def __init__(self, gateway: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.gateway = gateway
        self.timeout = timeout
        self.address: tuple[str, int] = gateway.addresses[0]

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[TestConnection]:
        """`async with gw.connection() as conn:` several requests on one connection."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*self.address, limit=_READ_LIMIT), self.timeout
        )
        conn = TestConnection(reader, writer, f"{self.address[0]}:{self.address[1]}", self.timeout)
        try:
            yield conn
        finally:
            await conn.close()

    async def request(
        self, method: str, path: str, headers: HeadersArg = None, body: bytes = b""
    ) -> TestResponse:
        """One request on a fresh connection, closed afterwards."""
        async with self.connection() as conn:
            return await conn.request(method, path, headers, body)


def _local_config(config: Mapping[str, Any]) -> dict[str, Any]:
    local = copy.deepcopy(dict(config))
    local["listen"] = [f"{LOOPBACK}:0"]
    local.setdefault("workers", 1)
    return local


@contextlib.asynccontextmanager
async def running_gateway(
    config: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT
) -> AsyncIterator[RunningGateway]:
    """Run `fastgw.Gateway(config)` in the current event loop on 127.0.0.1:0.

    `listen` is replaced; everything else is the config as given (a dict, as in the YAML
    file). Policies that fail to provision disable their routes (503), as in `fastgw run`.
    """
    from fastgw import Gateway

    gateway = Gateway(_local_config(config))
    await gateway.start()
    try:
        yield RunningGateway(gateway, timeout)
    finally:
        await gateway.stop(drain_timeout=2.0)


# --------------------------------------------------------------------------------------
# One policy, one request
# --------------------------------------------------------------------------------------


@dataclass
class PolicyResult:
    """What the client got, and what the upstream received (None if the policy answered)."""

    status: int
    headers: HeaderMap
    body: bytes
    upstream_request: EchoRequest | None
    response: TestResponse = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


def policy_config(
    entry: Mapping[str, Any], upstream_url: str, paths: Sequence[str] = ("/{*rest}",)
) -> dict[str, Any]:
    """A config with one route named "policy" over `paths` whose chain is [entry]."""
    return {
        "upstreams": {"echo": {"targets": [{"url": upstream_url}]}},
        "routes": [
            {
                "name": "policy",
                "match": {"paths": list(paths)},
                "upstream": "echo",
                "policies": [dict(entry)],
            }
        ],
    }


async def run_policy(
    entry: Mapping[str, Any],
    method: str = "GET",
    path: str = "/",
    headers: HeadersArg = None,
    body: bytes = b"",
    paths: Sequence[str] = ("/{*rest}",),
) -> PolicyResult:
    """Send one request through a gateway whose only route runs the chain [entry].

    `entry` is a chain entry as in the config: `{"request_headers": {...}}` or
    `{"mymodule:MyPolicy": {...}}`.
    """
    async with EchoUpstream() as upstream:
        async with running_gateway(policy_config(entry, upstream.url, paths)) as gw:
            response = await gw.request(method, path, headers, body)
        return PolicyResult(
            status=response.status,
            headers=response.headers,
            body=response.body,
            upstream_request=upstream.requests[0] if upstream.requests else None,
            response=response,
        )


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_policy_sync(
    entry: Mapping[str, Any],
    method: str = "GET",
    path: str = "/",
    headers: HeadersArg = None,
    body: bytes = b"",
    paths: Sequence[str] = ("/{*rest}",),
) -> PolicyResult:
    """`run_policy` on a fresh uvloop event loop, for synchronous tests."""
    return _run(run_policy(entry, method, path, headers, body, paths))


# --------------------------------------------------------------------------------------
# Synchronous wrappers and pytest fixtures
# --------------------------------------------------------------------------------------


class LoopThread:
    """An event loop running in a daemon thread, so that blocking test code can drive
    servers on it: `run(coro)` waits for one coroutine's result.

    `loop_factory` makes the loop (uvloop's by default, as the gateway runs on). `close()`
    cancels the tasks still pending, then stops and closes the loop.
    """

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
        if loop_factory is None:
            import uvloop

            loop_factory = uvloop.new_event_loop
        self.loop = loop_factory()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="fastgw-testing", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = DEFAULT_TIMEOUT * 2) -> _T:
        """Run `coro` on the loop and return its result (TimeoutError after `timeout`)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_pending() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_pending(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class SyncGateway:
    """A gateway running on a background loop, with a blocking client."""

    def __init__(self, runner: LoopThread, running: RunningGateway, stop: Any) -> None:
        self._runner = runner
        self.running = running
        self._stop = stop

    @property
    def gateway(self) -> Any:
        return self.running.gateway

    @property
    def address(self) -> tuple[str, int]:
        return self.running.address

    @property
    def url(self) -> str:
        return self.running.url

    def request(
        self, method: str, path: str, headers: HeadersArg = None, body: bytes = b""
    ) -> TestResponse:
        return self._runner.run(self.running.request(method, path, headers, body))

    def reload(self, config: Mapping[str, Any]) -> None:
        self._runner.run(self.gateway.reload(_local_config(config)))

    def close(self) -> None:
        self._runner.run(self._stop())


class _GatewayFactory:
    def __init__(self, runner: LoopThread) -> None:
        self._runner = runner
        self._open: list[SyncGateway] = []

    def __call__(self, config: Mapping[str, Any]) -> SyncGateway:
        async def start() -> SyncGateway:
            stack = contextlib.AsyncExitStack()
            running = await stack.enter_async_context(running_gateway(config))
            return SyncGateway(self._runner, running, stack.aclose)

        gateway = self._runner.run(start())
        self._open.append(gateway)
        return gateway

    def close(self) -> None:
        while self._open:
            self._open.pop().close()


try:
    import pytest
except ImportError:  # pytest is only needed for the fixtures
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def _fastgw_loop() -> Iterator[LoopThread]:
        runner = LoopThread()
        yield runner
        runner.close()

    @pytest.fixture
    def fastgw_upstream(_fastgw_loop: LoopThread) -> Iterator[EchoUpstream]:
        """A started EchoUpstream on the fixtures' background loop."""
        upstream = _fastgw_loop.run(EchoUpstream().start())
        yield upstream
        _fastgw_loop.run(upstream.close())

    @pytest.fixture
    def fastgw_gateway(_fastgw_loop: LoopThread) -> Iterator[_GatewayFactory]:
        """`make(config) -> SyncGateway`; every gateway made is stopped at teardown."""
        factory = _GatewayFactory(_fastgw_loop)
        yield factory
        factory.close()
