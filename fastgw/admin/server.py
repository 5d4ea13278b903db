"""A small HTTP/1.1 server for the admin API, on the gateway's own event loop.

One request per connection (`connection: close`), JSON in every response, errors in the
proxy's format: {"error": {"status", "code", "message", "request_id"}}. When a token is
configured every endpoint needs `Authorization: Bearer TOKEN`; without one, reads are open
(the listener is loopback-only then, see checks.py) and state-changing calls are refused.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import msgspec

from fastgw import __version__
from fastgw._core import STATUS_PHRASES
from fastgw.config import parse_listen_address
from fastgw.config.redaction import redact

if TYPE_CHECKING:
    from fastgw.api import Gateway

__all__ = ["AdminServer", "GatewayView", "redacted_config"]

MAX_HEAD_BYTES = 16384
MAX_BODY_BYTES = 65536
READ_TIMEOUT = 10.0

_READS = ("/health", "/ready", "/status", "/config", "/routes", "/upstreams")
# Prometheus text format 0.0.4, what prometheus_client writes.
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_WRITES = ("/reload",)


def _enc_hook(value: Any) -> Any:
    if isinstance(value, float):  # Duration
        return float(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def redacted_config(config: Any) -> dict[str, Any]:
    """The config as plain data, secrets hidden: the admin token, any key named like a
    secret (token, password, secret...) and passwords in URLs."""
    data: dict[str, Any] = redact(msgspec.to_builtins(config, enc_hook=_enc_hook))
    return data


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


class AdminServer:
    """Serves the admin endpoints of a gateway (its `view`) on `listen` ("HOST:PORT", port 0
    allowed)."""

    def __init__(self, view: Any, listen: str, token: str | None) -> None:
        # `view`: a GatewayView, or the supervisor's view of its workers.
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
        host, port = parse_listen_address(self.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = await asyncio.start_server(
            self._handle, host, port, family=family, reuse_address=True
        )
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
                method, path, headers = await asyncio.wait_for(
                    self._read_request(reader), READ_TIMEOUT
                )
                try:
                    status, body, extra_headers = await self._dispatch(method, path, headers)
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

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _Reply(431, "header_too_large", "request header too large") from None
        if len(head) > MAX_HEAD_BYTES:
            raise _Reply(431, "header_too_large", "request header too large")
        try:
            lines = head[:-4].decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise _Reply(400, "bad_request_line", "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise _Reply(505, "version_not_supported", "HTTP version not supported")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _Reply(400, "bad_header_name", "empty or invalid header field name")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _Reply(400, "bad_request", "the admin API takes no chunked bodies")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit() or int(length_text) > MAX_BODY_BYTES:
            raise _Reply(413, "body_too_large", "invalid or too large content-length")
        if int(length_text):
            await reader.readexactly(int(length_text))  # read and ignored
        return method, target.split("?", 1)[0], headers

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, Any, tuple[tuple[str, str], ...]]:
        self._authorize(headers)
        if path == "/metrics":
            if method != "GET":
                raise _method_not_allowed("GET")
            return 200, await self.view.metrics(), ()
        if path in _READS:
            if method != "GET":
                raise _method_not_allowed("GET")
            status, body = self._read_endpoint(path)
            return status, body, ()
        if path in _WRITES:
            if method != "POST":
                raise _method_not_allowed("POST")
            if self._token is None:
                raise _Reply(
                    403,
                    "admin_token_required",
                    "state-changing calls need admin.token to be configured",
                )
            return await self._reload()
        raise _Reply(404, "admin_not_found", f"no admin endpoint {path}")

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

    def _read_endpoint(self, path: str) -> tuple[int, Any]:
        view = self.view
        if path == "/health":
            return 200, {"status": "ok"}
        if path == "/ready":
            ready = view.ready()
            return (200 if ready else 503), {"ready": ready}
        if path == "/status":
            return 200, {
                "version": __version__,
                "uptime_seconds": round(time.time() - self._started, 3),
                "workers": view.workers(),
                "config_file": view.config_file,
                "config_hash": view.config_hash,
                "last_reload": dict(view.last_reload),
            }
        if path == "/config":
            return 200, redacted_config(view.config)
        if path == "/routes":
            return 200, json.loads(json.dumps(view.routes()))  # tuples as lists
        return 200, view.upstreams()

    async def _reload(self) -> tuple[int, Any, tuple[tuple[str, str], ...]]:
        async with self._reloading:
            errors = await self.view.reload()
        if not errors:
            restart = list(self.view.last_reload.get("restart_required", []))
            return 200, {"result": "ok", "restart_required": restart}, ()
        raise _Reply(
            422,
            "reload_failed",
            "the new config was rejected; the previous one keeps serving",
            errors=errors,
        )


class GatewayView:
    """What the admin API shows of a single-process Gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def config(self) -> Any:
        return self.gateway.config

    @property
    def config_file(self) -> str | None:
        file = self.gateway.config_file
        return os.path.abspath(file) if file is not None else None

    @property
    def config_hash(self) -> str:
        return self.gateway.config_hash

    @property
    def last_reload(self) -> dict[str, Any]:
        return self.gateway.last_reload

    def ready(self) -> bool:
        return self.gateway.engine is not None and not self.gateway.draining

    def workers(self) -> list[int]:
        return [os.getpid()]

    def routes(self) -> list[dict[str, Any]]:
        plan = self.gateway.plan
        return plan.describe_routes() if plan is not None else []

    def upstreams(self) -> list[dict[str, Any]]:
        plan = self.gateway.plan
        pools = plan.pools if plan is not None else {}
        return [
            {
                "name": name,
                "targets": [
                    {
                        "host": target.host,
                        "port": target.port,
                        "open_connections": target.open_connections,
                        "idle_connections": target.idle_count,
                        "healthy": target.failures == 0,
                    }
                    for target in pool.target_list
                ],
            }
            for name, pool in pools.items()
        ]

    async def metrics(self) -> bytes:
        return self.gateway.metrics_text()

    async def reload(self) -> list[str]:
        """Reload the config file; the errors (none when it worked)."""
        try:
            await self.gateway.reload()
        except Exception:  # a bad file, a policy that cannot start, a file that vanished...
            return list(self.gateway.last_reload["errors"])
        return []


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
