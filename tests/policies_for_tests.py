"""Small Python policies the integration tests put in chains as "tests.policies_for_tests:Name".

Each one does one observable thing so a test can tell from the wire that it ran, and in
which order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastgw import _core
from fastgw.policy import Policy, PolicyConfig, PolicyConfigError, ProvisionContext, Response
from fastgw.policy.compiled import CompileContext, CoreParts


class Mark(Policy):
    """Appends `tag` to scratch["order"] and sends the order so far upstream in `header`;
    on the response, the same in `header`-response."""

    class Config(PolicyConfig):
        tag: str
        header: str = "x-order"

    def on_request(self, request: Any) -> None:
        order = request.scratch.setdefault("order", [])
        order.append(self.config.tag)
        request.set_header(self.config.header, ",".join(order))

    def on_response(self, request: Any, response: Any) -> None:
        # The view shows the upstream's fields; the order so far is kept in scratch.
        order = request.scratch.setdefault("response_order", [])
        order.append(self.config.tag)
        response.set_header(self.config.header + "-response", ",".join(order))


class AsyncMark(Mark):
    """Mark, with async hooks that really wait before they act."""

    async def on_request(self, request: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0.005)
        super().on_request(request)

    async def on_response(self, request: Any, response: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0.005)
        super().on_response(request, response)


class SetHeader(Policy):
    """request.set_header(name, value) with exactly the configured strings."""

    class Config(PolicyConfig):
        name: str
        value: str

    def on_request(self, request: Any) -> None:
        request.set_header(self.config.name, self.config.value)


class Raise(Policy):
    """Raises in the configured hook ("request" or "response")."""

    class Config(PolicyConfig):
        hook: str = "request"

    def on_request(self, request: Any) -> None:
        if self.config.hook == "request":
            raise RuntimeError("policy bug on purpose")

    def on_response(self, request: Any, response: Any) -> None:
        if self.config.hook == "response":
            raise RuntimeError("policy bug on purpose")


class AsyncRaise(Policy):
    """Raises after awaiting, in the configured hook ("request" or "response")."""

    class Config(PolicyConfig):
        hook: str = "request"

    async def on_request(self, request: Any) -> None:
        await asyncio.sleep(0.005)
        if self.config.hook == "request":
            raise RuntimeError("async policy bug on purpose")

    async def on_response(self, request: Any, response: Any) -> None:
        await asyncio.sleep(0.005)
        if self.config.hook == "response":
            raise RuntimeError("async policy bug on purpose")


class FailProvision(Policy):
    """Refuses to provision, always."""

    class Config(PolicyConfig):
        reason: str = "cannot start"

    def __init__(self, config: Config, context: ProvisionContext) -> None:
        super().__init__(config, context)
        raise PolicyConfigError(self.config.reason, "reason")


class Answer(Policy):
    """Returns Response(status, body, headers) from a plain hook."""

    class Config(PolicyConfig):
        status: int = 200
        body: str = "answered"
        headers: dict[str, str] = {}

    def on_request(self, request: Any) -> Response:
        return Response(self.config.status, self.config.body, self.config.headers)


class AsyncAnswer(Answer):
    """Answer, from an `async def` hook that waits first."""

    async def on_request(self, request: Any) -> Response:  # type: ignore[override]
        await asyncio.sleep(0.005)
        return Response(self.config.status, self.config.body, self.config.headers)


class ReturnJunk(Policy):
    """Returns something that is neither None nor a Response."""

    def on_request(self, request: Any) -> Any:
        return {"status": 200}


class Inspect(Policy):
    """Answers with JSON describing what the hook saw of the request."""

    def on_request(self, request: Any) -> Response:
        headers = request.headers
        return Response.json(
            200,
            {
                "method": request.method,
                "path": request.path,
                "params": request.params,
                "query": request.query,
                "client_ip": request.client_ip,
                "route": request.route,
                "request_id": request.request_id,
                "tenant_upper": headers.get("X-TENANT"),
                "tenant_lower": headers.get("x-tenant"),
                "tenant_mixed": headers["X-Tenant"],
                "missing": headers.get("x-missing", "default"),
                "all_tags": headers.getall("X-Tag"),
                "has_tenant": "x-TENANT" in headers,
                "has_missing": "x-missing" in headers,
                "names": [name for name, _ in headers],
                "consumer": request.consumer,
            },
        )


class Probe(Policy):
    """Async: asks another HTTP server over a real TCP connection and forwards what it said.

    Sends `GET /probe/<request path>` to `host:port`, reads the whole JSON answer and sets
    x-probe-target (the target the server saw) and x-probe-upstream (its name) upstream.
    """

    class Config(PolicyConfig):
        host: str
        port: int

    async def on_request(self, request: Any) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port), 5
        )
        try:
            writer.write(
                f"GET /probe{request.path} HTTP/1.1\r\nHost: probe\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            raw = await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"probe failed: {head!r}")
        seen = json.loads(body)
        request.set_header("x-probe-target", seen["target"])
        request.set_header("x-probe-upstream", seen["upstream"])


class AsyncResponseHeaders(Policy):
    """Async on_response: waits, then sets, adds and removes client response headers."""

    class Config(PolicyConfig):
        delay: float = 0.02

    async def on_response(self, request: Any, response: Any) -> None:
        await asyncio.sleep(self.config.delay)
        response.set_header("x-after-wait", f"status={response.status}")
        response.add_header("x-added", "one")
        response.add_header("x-added", "two")
        response.remove_header("content-type")


class Rewrite(Policy):
    """request.rewrite_path(path)."""

    class Config(PolicyConfig):
        path: str

    def on_request(self, request: Any) -> None:
        request.rewrite_path(self.config.path)


class Switch(Policy):
    """request.set_upstream(upstream)."""

    class Config(PolicyConfig):
        upstream: str

    def on_request(self, request: Any) -> None:
        request.set_upstream(self.config.upstream)


class BodySigner(Policy):
    """Reads the request body (up to 64 bytes) and tells the upstream its length and start."""

    needs_body = 64

    def on_request(self, request: Any) -> Response | None:
        body = request.body
        if body.startswith(b"deny"):
            return Response(403, "denied by body")
        request.set_header("x-body-length", str(len(body)))
        request.set_header("x-body-start", body[:8].decode("ascii", "replace") or "-")
        return None


class AsyncBodyCheck(Policy):
    """The same through an async hook that really waits."""

    needs_body = 64

    async def on_request(self, request: Any) -> Response | None:
        await asyncio.sleep(0.01)
        request.set_header("x-body-length", str(len(request.body)))
        return None


class SlowHooks(Policy):
    """Async hooks that sleep for the seconds in the request's x-slow header."""

    async def on_request(self, request: Any) -> None:
        await asyncio.sleep(float(request.headers.get("x-slow-request", "0")))

    async def on_response(self, request: Any, response: Any) -> None:
        await asyncio.sleep(float(request.headers.get("x-slow-response", "0")))
        response.set_header("x-hook", "ran")


class StrHeaders(Policy):
    """Returns a Response whose headers were replaced by str pairs after it was made."""

    def on_request(self, request: Any) -> Response:
        answer = Response(200, b"hi")
        answer.headers = (("x-a", "value-as-str"),)  # type: ignore[misc]
        return answer


class ApiKeyAuth(Policy):
    """A stand-in for an authentication policy: x-api-key names a consumer and its claims
    (`keys: {KEY: {sub: NAME, tier: TIER}}`); an unknown or missing key stays anonymous."""

    class Config(PolicyConfig):
        keys: dict[str, dict[str, str]]

    def on_request(self, request: Any) -> None:
        claims = self.config.keys.get(request.headers.get("x-api-key", ""))
        if claims is not None:
            request.consumer = claims["sub"]
            request.claims = dict(claims)


class _Unprintable:
    """A consumer whose str() raises: the core formats it for rate limit keys and the
    access log, so it turns a policy's object into an exception inside the core."""

    def __str__(self) -> str:
        raise RuntimeError("consumer cannot be shown")


class UnprintableConsumer(Policy):
    """Names the client as a consumer object that cannot be turned into text."""

    def on_request(self, request: Any) -> None:
        request.consumer = _Unprintable()


class CompileJunk(Policy):
    """Provisions fine, then hands plan.py something that is not core parts."""

    def compile_core(self, context: CompileContext) -> CoreParts:
        return CoreParts(steps=("not a step",))  # type: ignore[arg-type]


class QuotaAnswer(Policy):
    """A built-in fastgw does not ship, for the policy steps seam: answers from the gateway
    `requests` times per value of the path capture `per`, then 429. Its compile_core
    composes two of the core's steps (a rate limit, a fixed answer); no Python runs per
    request. tests/integration/test_policy_steps.py registers it by name."""

    name = "quota_answer"

    class Config(PolicyConfig):
        requests: int
        per: str = "tenant"
        body: str = "answered by the gateway"

    def __init__(self, config: Any, context: ProvisionContext) -> None:
        super().__init__(config, context)
        if config.per not in context.route_params:
            raise PolicyConfigError(f"the route does not capture {{{config.per}}}", ("per",))
        self.answer = Response(200, config.body, {"x-answered-by": "quota_answer"})
        # The rate table is the process's: each provisioning starts quotas of its own.
        self.limiter_id = f"quota_answer|{uuid.uuid4()}"

    def compile_core(self, context: CompileContext) -> CoreParts:
        hour_ns = 3600 * 10**9
        limiter = _core.RateLimiter(
            self.limiter_id,
            context.key_sources([("param", self.config.per)]),
            "route",
            [(hour_ns, self.config.requests)],
        )
        answer = self.answer
        return CoreParts(
            steps=(
                _core.RateLimitStep(limiter),
                _core.RespondStep(answer.status, answer.headers, answer.body),
            )
        )
