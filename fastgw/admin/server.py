"""A small HTTP/1.1 server for the admin API, on the gateway's own event loop.

One request per connection (`connection: close`), JSON in every response, errors in the
proxy's format: {"error": {"status", "code", "message", "request_id"}}. When a token is
configured every endpoint needs `Authorization: Bearer TOKEN`; without one, reads are open
(the listener is loopback-only then, see checks.py) and state-changing calls are refused.

Requests are read by the core's strict request parser, the proxy's own: a request the proxy
would refuse is refused here with the same status and code. Endpoints are a table from
(method, path) to a handler; the gateway is seen only through an AdminView.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastgw._core import ERROR_TABLE, STATUS_PHRASES, RequestParser
from fastgw._version import __version__
from fastgw.admin.view import AdminView
from fastgw.config import parse_listen_address
from fastgw.config.redaction import redacted_config
from fastgw.errors import GatewayError
from fastgw.runtime.listeners import open_socket

__all__ = ["AdminServer", "log_address"]

MAX_HEAD_BYTES = 16384
MAX_BODY_BYTES = 65536
READ_TIMEOUT = 10.0
_READ_SIZE = 4096

# Prometheus text format 0.0.4, what prometheus_client writes.
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The parser's error codes, with the status and message the proxy answers them with.
_PARSER_ERRORS = {code: (status, message) for status, code, message in ERROR_TABLE.values()}


class _Reply(Exception):
    """An error answer: status, stable code, message, extra headers and body fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


@dataclass(frozen=True)
class _Request:
    method: str
    path: str  # normalised, as the proxy routes it
    headers: dict[str, str]  # lowercased names; a repeated field keeps its last value


_Answer = tuple[int, Any]
_Handler = Callable[["AdminServer", _Request], Awaitable[_Answer]]


class AdminServer:
    """Serves the admin endpoints of a gateway (its `view`) on `listen` ("HOST:PORT", port 0
    allowed)."""

    def __init__(self, view: AdminView, listen: str, token: str | None) -> None:
        self.view = view
        self.listen = listen
        self._token = token.encode() if token is not None else None
        self._server: asyncio.AbstractServer | None = None
        self._started = time.time()
        self._reloading = asyncio.Lock()

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        """Listen; GatewayError when the address cannot be had."""
        host, port = parse_listen_address(self.listen)
        sock = open_socket(host, port, f"{self.listen} (admin)")
        try:
            self._server = await asyncio.start_server(self._handle, sock=sock)
        except OSError as exc:
            sock.close()
            raise GatewayError(
                f"cannot listen on {self.listen} (admin): {exc.strerror or exc}"
            ) from exc
        self._started = time.time()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- one connection --------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_id = os.urandom(8).hex()
        method = ""
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT)
                method = request.method
                try:
                    status, body = await self._dispatch(request)
                    extra_headers: tuple[tuple[str, str], ...] = ()
                except _Reply:
                    raise
                except Exception as exc:  # a bug here must still get an answer
                    raise _Reply(500, "admin_internal_error", str(exc)) from exc
            except _Reply as reply:
                status, extra_headers = reply.status, reply.headers
                body = {
                    "error": {
                        "status": reply.status,
                        "code": reply.code,
                        "message": reply.message,
                        "request_id": request_id,
                        **reply.extra,
                    }
                }
            writer.write(_response(status, body, extra_headers, request_id, method == "HEAD"))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, request: _Request) -> _Answer:
        self._authorize(request.headers)
        handler = _ENDPOINTS.get((request.method, request.path))
        if handler is not None:
            return await handler(self, request)
        allowed = _ALLOWED.get(request.path)
        if allowed is not None:
            raise _method_not_allowed(allowed)
        raise _Reply(404, "admin_not_found", f"no admin endpoint {request.path}")

    def _authorize(self, headers: dict[str, str]) -> None:
        if self._token is None:
            return
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # Constant time: the comparison must not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            raise _Reply(
                401,
                "admin_unauthorized",
                "a valid bearer token is required",
                headers=(("www-authenticate", 'Bearer realm="fastgw-admin"'),),
            )

    # -- endpoints -----------------------------------------------------------------------

    async def _health(self, request: _Request) -> _Answer:
        return 200, {"status": "ok"}

    async def _ready(self, request: _Request) -> _Answer:
        ready = self.view.ready()
        return (200 if ready else 503), {"ready": ready}

    async def _status(self, request: _Request) -> _Answer:
        view = self.view
        return 200, {
            "version": __version__,
            "uptime_seconds": round(time.time() - self._started, 3),
            "workers": view.workers(),
            "config_file": view.config_file,
            "config_hash": view.config_hash,
            "last_reload": dict(view.last_reload),
        }

    async def _config(self, request: _Request) -> _Answer:
        return 200, redacted_config(self.view.config)

    async def _routes(self, request: _Request) -> _Answer:
        return 200, json.loads(json.dumps(self.view.routes()))  # tuples as lists

    async def _upstreams(self, request: _Request) -> _Answer:
        return 200, self.view.upstreams()

    async def _metrics(self, request: _Request) -> _Answer:
        return 200, await self.view.metrics()

    async def _reload(self, request: _Request) -> _Answer:
        if self._token is None:
            raise _Reply(
                403,
                "admin_token_required",
                "state-changing calls need admin.token to be configured",
            )
        async with self._reloading:
            errors = await self.view.reload()
        if not errors:
            restart = list(self.view.last_reload.get("restart_required", []))
            return 200, {"result": "ok", "restart_required": restart}
        raise _Reply(
            422,
            "reload_failed",
            "the new config was rejected; the previous one keeps serving",
            errors=errors,
        )


_ENDPOINTS: dict[tuple[str, str], _Handler] = {
    ("GET", "/health"): AdminServer._health,
    ("GET", "/ready"): AdminServer._ready,
    ("GET", "/status"): AdminServer._status,
    ("GET", "/config"): AdminServer._config,
    ("GET", "/routes"): AdminServer._routes,
    ("GET", "/upstreams"): AdminServer._upstreams,
    ("GET", "/metrics"): AdminServer._metrics,
    ("POST", "/reload"): AdminServer._reload,
}
# Per path, the methods it answers: the Allow field of a 405.
_ALLOWED: dict[str, str] = {}
for _method, _path in _ENDPOINTS:
    _ALLOWED[_path] = ", ".join(filter(None, (_ALLOWED.get(_path), _method)))


async def _read_request(reader: asyncio.StreamReader) -> _Request:
    """Read one request through the core's parser; _Reply with the proxy's status and code
    for anything it refuses. The body (POST /reload takes none) is read and ignored."""
    parser = RequestParser(max_header_bytes=MAX_HEAD_BYTES, max_body_bytes=MAX_BODY_BYTES)
    pending = b""
    events: list[Any] = []
    # The parser starts the next request on any byte after this one's end (and forgets this
    # head then), so it is given the bytes up to the end of the head, then the body, never
    # more. A head it accepts ends at the first empty line: no field holds CR or LF.
    while not any(event[0] == "head" for event in events):
        end = pending.find(b"\r\n\r\n")
        if end < 0:
            # Hold back what may be the start of the empty line; the parser takes the rest
            # now (and refuses a bad or oversized head before it is complete).
            _check(parser.feed(pending[:-3]))
            pending = pending[-3:]
            chunk = await reader.read(_READ_SIZE)
            if not chunk:
                raise asyncio.IncompleteReadError(pending, None)
            pending += chunk
            continue
        events = _check(parser.feed(pending[: end + 4]))
        pending = pending[end + 4 :]
    request = _Request(
        parser.method.decode("latin-1"),
        parser.path.decode("latin-1"),
        {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in parser.headers()
        },
    )
    if parser.framing == 2:  # chunked
        raise _Reply(400, "bad_request", "the admin API takes no chunked bodies")
    if not any(event[0] == "done" for event in events):
        missing = parser.content_length - len(pending)
        body = pending[: parser.content_length]
        if missing > 0:
            body += await reader.readexactly(missing)
        _check(parser.feed(body))
    return request


def _check(events: list[Any]) -> list[Any]:
    """`events`, or _Reply if the parser refused the request."""
    if events and events[-1][0] == "error":
        code = events[-1][1]
        status, message = _PARSER_ERRORS[code]
        raise _Reply(status, code, message)
    return events


def _method_not_allowed(allow: str) -> _Reply:
    return _Reply(
        405, "admin_method_not_allowed", "method not allowed here", headers=(("allow", allow),)
    )


def _response(
    status: int, body: Any, headers: tuple[tuple[str, str], ...], request_id: str, head: bool
) -> bytes:
    if isinstance(body, bytes):  # /metrics
        payload, content_type = body, _METRICS_TYPE
    else:
        payload = json.dumps(body, indent=None, separators=(",", ":")).encode() + b"\n"
        content_type = "application/json"
    reason = STATUS_PHRASES.get(status, "")
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}"]
    if not (head and status == 405):
        # RFC 9110 8.6: to HEAD, only the length a GET would get; a GET of an endpoint that
        # refuses HEAD with 405 may get another answer, so no length then.
        lines.append(f"content-length: {len(payload)}")
    lines += [
        "cache-control: no-store",
        f"x-request-id: {request_id}",
        "connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    # RFC 9110 9.3.2: a response to HEAD has no content
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else payload)


def log_address(server: AdminServer) -> None:
    address = server.address
    if address is not None:
        host, port = address
        shown = f"[{host}]" if ":" in host else host
        print(f"fastgw admin on http://{shown}:{port}", flush=True)
