"""Shared fixtures: real upstream servers, the real gateway process, small HTTP clients.

Built on the public test kit, fastgw.testing: its message framing (request_bytes, parse_head,
body_framing, chunk_size), its LoopThread and its echo payload. What is added here is what the
project's own tests need beyond it: a blocking byte-exact client for malformed input, upstreams
that misbehave on purpose, and the gateway as a subprocess.

Everything talks over loopback sockets. Upstreams run on one asyncio loop in a background
thread so a test (and an in-process gateway on the main thread) can block freely while they
serve. The gateway runs as `python -m fastgw run -c FILE` in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastgw.testing import (
    HeaderMap,
    LoopThread,
    body_framing,
    chunk_size,
    chunked_body,
    echo_payload,
    parse_head,
    request_bytes,
)

LOOPBACK = "127.0.0.1"
LISTENING_RE = re.compile(r"listening on http://([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
GATEWAY_START_TIMEOUT = 10.0
# A block of every byte value, repeated: "big" downloads stream it, uploads reuse it.
PATTERN_BLOCK = bytes(range(256)) * 256


def pattern_bytes(n: int) -> Iterator[bytes]:
    """Yield `n` bytes of PATTERN_BLOCK in 64 KiB pieces."""
    while n > 0:
        piece = PATTERN_BLOCK[: min(n, len(PATTERN_BLOCK))]
        n -= len(piece)
        yield piece


def pattern_sha256(n: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern_bytes(n):
        digest.update(piece)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Client side: request builder and a minimal response reader over a blocking socket
# --------------------------------------------------------------------------------------


class IncompleteResponse(Exception):
    """The peer closed the connection before the message was complete."""

    def __init__(self, message: str, partial: Response | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    framing: str = "none"  # "length" | "chunked" | "close" | "none"
    complete: bool = True
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def connection_tokens(self) -> set[str]:
        return {t.strip().lower() for v in self.header_all("connection") for t in v.split(",") if t}

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> dict[str, Any]:
        """The `error` object of a locally generated response, with its shape checked."""
        ctype = self.header("content-type") or ""
        assert ctype.split(";")[0].strip().lower() == "application/json", self
        doc = self.json()
        assert set(doc) == {"error"}, doc
        err = doc["error"]
        assert err["status"] == self.status, doc
        for key in ("code", "message", "request_id"):
            assert isinstance(err[key], str) and err[key], doc
        return err


def build_request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    version: str = "HTTP/1.1",
    host: str | None = "gw.test",
) -> bytes:
    """Serialise a request; adds Host and Content-Length (for a non-empty body) unless given
    or disabled. Nothing else is added: tests state every byte they mean to send."""
    return request_bytes(
        method, target, headers, body, host=host, version=version, length_if_empty=False
    )


chunked = chunked_body


class RawClient:
    """One blocking client connection with a bounded timeout on every operation."""

    def __init__(
        self, host: str, port: int, timeout: float = 5.0, source: str | None = None
    ) -> None:
        """`source`: the local address to connect from (e.g. 127.0.0.2, another peer)."""
        source_address = (source, 0) if source is not None else None
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=source_address
        )
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, *args: Any, **kwargs: Any) -> Response:
        """Send one request and read its final response."""
        method = args[0] if args else kwargs.get("method", "GET")
        self.send(build_request(*args, **kwargs))
        return self.read_final(method=method)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, sep: bytes) -> bytes | None:
        start = 0
        while True:
            idx = self.buf.find(sep, start)
            if idx >= 0:
                end = idx + len(sep)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            start = max(0, len(self.buf) - len(sep) + 1)
            if not self._fill():
                return None

    def _take(self, n: int) -> bytes:
        while not self.buf and self._fill():
            pass
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self) -> Response:
        raw = self._read_until(b"\r\n\r\n")
        if raw is None:
            raise IncompleteResponse(f"closed before a response head; got {bytes(self.buf)!r}")
        status_line, fields = parse_head(raw)
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        return Response(version=version, status=int(code), reason=reason, headers=fields.pairs)

    def read_response(
        self, method: str = "GET", sink: Callable[[bytes], None] | None = None
    ) -> Response:
        """Read the next response (1xx included). Body bytes go to `sink` when given.

        Raises IncompleteResponse (with .partial) if the connection closes mid-body.
        """
        resp = self.read_head()
        parts: list[bytes] = []
        emit = sink or parts.append
        # one framing only (RFC 9112 6.3), whatever the upstream sent
        no_body = method == "HEAD" or resp.status < 200 or resp.status in (204, 304)
        try:
            resp.framing, length = body_framing(HeaderMap(resp.headers), no_body=no_body)
        except ValueError as exc:
            raise AssertionError(f"{exc}: {resp}") from exc
        if resp.framing == "chunked":
            self._read_chunked(resp, emit, parts)
        elif resp.framing == "length":
            cl = remaining = length
            while remaining:
                piece = self._take(remaining)
                if not piece:
                    resp.body = b"".join(parts)
                    resp.complete = False
                    raise IncompleteResponse(f"{remaining} of {cl} body bytes missing", resp)
                remaining -= len(piece)
                emit(piece)
        elif resp.framing == "close":
            while True:
                piece = self._take(262144)
                if not piece:
                    break
                emit(piece)
        resp.body = b"".join(parts)
        return resp

    def _read_chunked(
        self, resp: Response, emit: Callable[[bytes], None], parts: list[bytes]
    ) -> None:
        def incomplete(what: str) -> IncompleteResponse:
            resp.body = b"".join(parts)
            resp.complete = False
            return IncompleteResponse(f"closed inside chunked body ({what})", resp)

        while True:
            line = self._read_until(b"\r\n")
            if line is None:
                raise incomplete("chunk size")
            size = chunk_size(line)
            if size == 0:
                break
            remaining = size
            while remaining:
                piece = self._take(remaining)
                if not piece:
                    raise incomplete("chunk data")
                remaining -= len(piece)
                emit(piece)
            if self._read_until(b"\r\n") != b"\r\n":
                raise incomplete("chunk terminator")
        while True:
            line = self._read_until(b"\r\n")
            if line is None:
                raise incomplete("trailers")
            if line == b"\r\n":
                return
            name, _, value = line[:-2].decode("latin-1").partition(":")
            resp.trailers.append((name, value.strip()))

    def read_final(self, method: str = "GET") -> Response:
        """Read responses until a final (non-1xx) one."""
        for _ in range(10):
            resp = self.read_response(method=method)
            if resp.status >= 200:
                return resp
        raise AssertionError("more than 10 interim responses")

    def wait_closed(self, timeout: float = 2.0) -> bool:
        """True if the peer closes within `timeout` (unread data is discarded)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                self._fill()
        return True

    def has_pending_data(self, timeout: float = 0.2) -> bool:
        if self.buf:
            return True
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready) and self._fill()


def exchange(host: str, port: int, data: bytes, method: str = "GET", timeout: float = 5.0):
    """Send raw bytes on a fresh connection; return (final response, closed-afterwards)."""
    with RawClient(host, port, timeout) as client:
        client.send(data)
        resp = client.read_final(method=method)
        return resp, client.wait_closed(1.0)


# --------------------------------------------------------------------------------------
# Upstream servers on a background asyncio loop
# --------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    conn: int
    body_len: int = -1  # -1 until the body was fully read
    body_sha256: str = ""

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


class UpstreamServer:
    """A small HTTP/1.1 (or WebSocket) server whose behaviour a test selects.

    Behaviours (options in brackets):
      echo      200 + JSON of what it received [delay, read_delay, silent_close]
      fixed     [status, reason, headers, body, no_length]
      chunked   chunked response of [chunks, headers, trailers]
      close     close-delimited response of [body]
      big       streams [size] pattern bytes [chunked]
      slow      sleeps [delay] then echoes
      reset     closes after reading the head [rst: RST instead of FIN]
      truncate  `Content-Length: 100` then 10 bytes, waits [delay], closes
      truncate-chunked  one chunk, waits [delay], closes without the 0-chunk
      garbage   sends [payload] (an invalid status line by default)
      ws-echo   a `websockets` server echoing messages; "close-me" closes with 4000
    Every option can also be changed between requests through `opts`.
    Records every request head (`requests`), counts accepted connections (`connections`)
    and bytes read (`bytes_received`); `closed_connections` counts finished connections.
    """

    def __init__(self, loop: LoopThread, behaviour: str = "echo", name: str = "", **opts: Any):
        self.loop = loop
        self.behaviour = behaviour
        self.opts = opts
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.closed_connections = 0
        self.violations: list[str] = []  # malformed heads the gateway sent us
        self.bytes_received = 0
        self.name = name
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> UpstreamServer:
        self.loop.run(self._start())
        self.name = self.name or f"up{self.port}"
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run(self._close())

    def clear(self) -> None:
        self.requests.clear()

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least `n` request heads were recorded."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.requests) >= n, f"upstream saw {len(self.requests)} requests, want {n}"
        return self.requests

    def wait_all_closed(self, timeout: float = 3.0) -> bool:
        """Wait until every accepted connection was closed (by either side)."""
        deadline = time.monotonic() + timeout
        while self.closed_connections < self.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.closed_connections >= self.connections

    @property
    def last(self) -> RecordedRequest:
        assert self.requests, "the upstream received no request"
        return self.requests[-1]

    async def _start(self) -> None:
        if self.behaviour == "ws-echo":
            from websockets.asyncio.server import serve

            self._server = await serve(
                self._ws_handler,
                LOOPBACK,
                0,
                max_size=None,
                process_request=self._ws_record,
            )
        else:
            self._server = await asyncio.start_server(self._handle, LOOPBACK, 0, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    # -- websocket ---------------------------------------------------------------------

    def _ws_record(self, connection: Any, request: Any) -> None:
        self.connections += 1
        self.requests.append(
            RecordedRequest(
                method="GET",
                target=request.path,
                version="HTTP/1.1",
                headers=list(request.headers.raw_items()),
                conn=self.connections,
                body_len=0,
            )
        )

    async def _ws_handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if message == "close-me":
                    await ws.close(4000, "bye")
                    return
                await ws.send(message)

    # -- HTTP/1.1 ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        serial = self.connections
        self._writers.add(writer)
        try:
            while True:
                req = await self._read_head(reader, serial)
                if req is None:
                    break
                self.requests.append(req)
                if not await self._respond(req, reader, writer):
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self.closed_connections += 1

    async def _read_head(self, reader: asyncio.StreamReader, serial: int) -> RecordedRequest | None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self.bytes_received += len(exc.partial)
            if exc.partial:
                raise
            return None
        self.bytes_received += len(raw)
        try:
            request_line, fields = parse_head(raw)
            method, target, version = request_line.split(" ")
            body_framing(fields)
        except ValueError as exc:
            self.violations.append(f"{exc}: {raw[:500]!r}")
            raise ConnectionError("malformed request head") from exc
        return RecordedRequest(method, target, version, fields.pairs, serial)

    async def _read_body(self, req: RecordedRequest, reader: asyncio.StreamReader) -> None:
        digest = hashlib.sha256()
        total = 0
        framing, length = body_framing(HeaderMap(req.headers))
        if framing == "chunked":
            while True:
                line = await reader.readuntil(b"\r\n")
                self.bytes_received += len(line)
                size = chunk_size(line)
                if size == 0:
                    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                        self.bytes_received += len(line)
                    self.bytes_received += 2
                    break
                data = await reader.readexactly(size + 2)
                self.bytes_received += len(data)
                digest.update(data[:-2])
                total += size
        elif framing == "length":
            remaining = length
            while remaining:
                data = await reader.read(min(remaining, 262144))
                if not data:
                    raise asyncio.IncompleteReadError(b"", remaining)
                self.bytes_received += len(data)
                digest.update(data)
                total += len(data)
                remaining -= len(data)
        req.body_len = total
        req.body_sha256 = digest.hexdigest()

    def _echo_body(self, req: RecordedRequest) -> bytes:
        return echo_payload(
            self.name,
            req.method,
            req.target,
            req.version,
            HeaderMap(req.headers),
            req.body_len,
            body_sha256=req.body_sha256,
            conn=req.conn,
        )

    async def _respond(
        self, req: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; return whether the connection stays open."""
        opts = self.opts
        behaviour = self.behaviour
        if behaviour == "reset":
            if opts.get("rst"):
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            return False
        if (req.header("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if opts.get("read_delay"):
            await asyncio.sleep(opts["read_delay"])
        await self._read_body(req, reader)
        conn_tokens = {
            t.strip().lower() for v in req.header_all("connection") for t in v.split(",")
        }
        keep = "close" not in conn_tokens and (
            req.version == "HTTP/1.1" or "keep-alive" in conn_tokens
        )
        head_only = req.method == "HEAD"

        if behaviour in ("echo", "slow"):
            delay = opts.get("delay", 2.0 if behaviour == "slow" else 0)
            if delay:
                await asyncio.sleep(delay)
            body = self._echo_body(req)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"x-upstream: %s\r\ncontent-length: %d\r\n\r\n" % (self.name.encode(), len(body))
            )
            if not head_only:
                writer.write(body)
        elif behaviour == "fixed":
            body = opts.get("body", b"")
            headers = list(opts.get("headers", []))
            names = {k.lower() for k, _ in headers}
            if not opts.get("no_length") and not names & {"content-length", "transfer-encoding"}:
                headers.append(("Content-Length", str(len(body))))
            head = f"HTTP/1.1 {opts.get('status', 200)} {opts.get('reason', 'OK')}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
            writer.write(head.encode("latin-1"))
            if not head_only:
                writer.write(body)
        elif behaviour == "chunked":
            headers = list(opts.get("headers", [])) + [("Transfer-Encoding", "chunked")]
            head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
            writer.write(head.encode("latin-1"))
            if not head_only:
                for piece in opts.get("chunks", [b"hello ", b"chunked ", b"world"]):
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                trailers = "".join(f"{k}: {v}\r\n" for k, v in opts.get("trailers", []))
                writer.write(b"0\r\n" + trailers.encode("latin-1") + b"\r\n")
        elif behaviour == "close":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
            if not head_only:
                writer.write(opts.get("body", b"close-delimited body"))
            await writer.drain()
            return False
        elif behaviour == "big":
            size = opts["size"]
            framing = (
                "transfer-encoding: chunked" if opts.get("chunked") else f"content-length: {size}"
            )
            writer.write(f"HTTP/1.1 200 OK\r\n{framing}\r\n\r\n".encode())
            if not head_only:
                for piece in pattern_bytes(size):
                    writer.write(
                        b"%x\r\n%s\r\n" % (len(piece), piece) if opts.get("chunked") else piece
                    )
                    await writer.drain()
                if opts.get("chunked"):
                    writer.write(b"0\r\n\r\n")
        elif behaviour == "truncate":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
            await writer.drain()
            await asyncio.sleep(opts.get("delay", 0.2))
            return False
        elif behaviour == "truncate-chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(opts.get("delay", 0.2))
            return False
        elif behaviour == "garbage":
            writer.write(opts.get("payload", b"HTTP/1.1 2x0 NotAStatus\r\n\r\n"))
            await writer.drain()
            # Stay open until the gateway gives up on us, so the error is the garbage's.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(), 5)
            return False
        else:
            raise AssertionError(f"unknown upstream behaviour {behaviour!r}")
        await writer.drain()
        # silent_close: drop the connection after answering, as an idle timeout would
        return keep and not opts.get("silent_close")


def refused_port() -> tuple[socket.socket, int]:
    """A bound, never-listening socket: connecting to its port is refused."""
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    return sock, sock.getsockname()[1]


class UpstreamFactory:
    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.servers: list[UpstreamServer] = []

    def __call__(self, behaviour: str = "echo", name: str = "", **opts: Any) -> UpstreamServer:
        server = UpstreamServer(self.loop, behaviour, name, **opts).start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.close()
        violations = [v for server in self.servers for v in server.violations]
        assert not violations, f"the gateway sent malformed request heads: {violations}"


# --------------------------------------------------------------------------------------
# The gateway process
# --------------------------------------------------------------------------------------


def route(name: str, paths: list[str], upstream: str, **extra: Any) -> dict[str, Any]:
    """A route entry; `methods`/`hosts`/`headers`/`query` go into match, the rest is a route
    key."""
    match: dict[str, Any] = {"paths": paths}
    for key in ("methods", "hosts", "headers", "query"):
        if key in extra:
            match[key] = extra.pop(key)
    return {"name": name, "match": match, "upstream": upstream, **extra}


def gateway_config(
    routes: list[dict[str, Any]],
    upstreams: dict[str, UpstreamServer | str],
    **top: Any,
) -> dict[str, Any]:
    """A full config dict; `timeouts`/`limits` given here are merged over test defaults;
    `keepalive` (if given) applies to every upstream."""
    timeouts = {"upstream_connect": "2s", "drain": "5s", **top.pop("timeouts", {})}
    keepalive = top.pop("keepalive", None)
    config: dict[str, Any] = {
        "listen": [f"{LOOPBACK}:0"],
        "timeouts": timeouts,
        "upstreams": {
            name: {"targets": [{"url": up if isinstance(up, str) else up.url}]}
            for name, up in upstreams.items()
        },
        "routes": routes,
    }
    if keepalive is not None:
        for upstream in config["upstreams"].values():
            upstream["keepalive"] = keepalive
    if "limits" in top:
        config["limits"] = top.pop("limits")
    config.update(top)
    return config


class GatewayProcess:
    """`python -m fastgw run -c FILE` in a subprocess: stderr collected by a thread, stdout
    (the "listening on" and "admin on" lines, access logs sent there) written to a file."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.stdout_path = workdir / "stdout"
        self.stderr_lines: list[str] = []
        self.addresses: list[tuple[str, int]] = []
        with open(self.stdout_path, "w") as stdout:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastgw", "run", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
            )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _listening(self) -> bool:
        listen = self.config.get("listen", [])
        expected = 1 if isinstance(listen, str) else max(1, len(listen))
        found = LISTENING_RE.findall(self.stdout)
        self.addresses = [(host.strip("[]"), int(port)) for host, port in found]
        return len(self.addresses) >= expected

    def wait_listening(self, timeout: float = GATEWAY_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(1)
                state = (
                    f"exited with {self.proc.returncode}"
                    if self.proc.poll() is not None
                    else f"did not report listening within {timeout}s"
                )
                self.terminate()
                pytest.fail(f"gateway {state}; stderr:\n{self.stderr}", pytrace=False)
            time.sleep(0.02)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    @property
    def host(self) -> str:
        return self.addresses[0][0]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connect(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.host, self.port, timeout)

    def request(self, *args: Any, **kwargs: Any) -> Response:
        """One request on a fresh connection."""
        with self.connect() as client:
            return client.request(*args, **kwargs)

    def exchange(self, data: bytes, method: str = "GET") -> tuple[Response, bool]:
        return exchange(self.host, self.port, data, method)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def terminate(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        return self.proc.returncode


class GatewayFactory:
    """Call with a config dict, or with routes=/upstreams= (and top-level keys)."""

    route = staticmethod(route)
    config = staticmethod(gateway_config)

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[GatewayProcess] = []
        self.start_failure = ""

    def __call__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> GatewayProcess:
        if config is None:
            config = gateway_config(**kwargs)
        workdir = self.workdir / f"gw{len(self.processes)}"
        workdir.mkdir(parents=True, exist_ok=True)
        if self.start_failure:
            # a module-scoped stack that failed once fails its other tests at once
            pytest.fail(self.start_failure, pytrace=False)
        proc = GatewayProcess(config, workdir)
        self.processes.append(proc)
        try:
            proc.wait_listening()
        except pytest.fail.Exception as exc:
            self.start_failure = str(exc)
            raise
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.terminate()
            # Shown by pytest only when the test failed.
            print(f"--- gateway pid {proc.pid} exit {proc.proc.returncode} stderr ---")
            print(proc.stderr)


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream_loop() -> Iterator[LoopThread]:
    loop = LoopThread(asyncio.new_event_loop)
    yield loop
    loop.close()


@pytest.fixture
def upstream(upstream_loop: LoopThread) -> Iterator[UpstreamFactory]:
    factory = UpstreamFactory(upstream_loop)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_upstream(upstream_loop: LoopThread) -> Iterator[UpstreamFactory]:
    factory = UpstreamFactory(upstream_loop)
    yield factory
    factory.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path_factory.mktemp("gateway"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def http() -> Any:
    """Client helpers for test modules (conftest is not importable by name)."""

    class Helpers:
        RawClient = RawClient
        Response = Response
        IncompleteResponse = IncompleteResponse
        build_request = staticmethod(build_request)
        chunked = staticmethod(chunked)
        exchange = staticmethod(exchange)
        pattern_bytes = staticmethod(pattern_bytes)
        pattern_sha256 = staticmethod(pattern_sha256)
        refused_port = staticmethod(refused_port)
        route = staticmethod(route)
        gateway_config = staticmethod(gateway_config)
        LOOPBACK = LOOPBACK

    return Helpers


def pytest_configure(config: pytest.Config) -> None:
    # Subprocess gateways inherit this; it keeps their stderr unbuffered line by line.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
