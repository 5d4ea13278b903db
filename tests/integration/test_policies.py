"""Policies through real sockets: every built-in, chain order, failure isolation, Python hooks
(sync and async, real I/O), the request object, and the example TenantGuard in `fastgw run`.

Gateways run in-process with fastgw.testing on a uvloop loop; the test policies live in
tests/policies_for_tests.py and are referenced as "tests.policies_for_tests:Name".
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from fastgw.testing import (
    EchoUpstream,
    PolicyResult,
    TestResponse,
    run_policy,
    run_policy_sync,
    running_gateway,
)

pytest_plugins = ["fastgw.testing"]

ROOT = Path(__file__).resolve().parents[2]
P = "tests.policies_for_tests:"
# RFC 3986 2: what a Location may hold once the core has percent-encoded substitutions.
URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")


@pytest.fixture(autouse=True)
def _policies_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "tests.policies_for_tests" and "examples.custom_policy" import from the repo root,
    in this process and in gateway subprocesses."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.chdir(ROOT)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, timeout))


def policy(tag: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {P + tag: config or {}}


def route(name: str, paths: list[str], *policies: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"paths": paths},
        "upstream": extra.pop("upstream", "echo"),
        "policies": list(policies),
        **extra,
    }


def config(upstreams: dict[str, EchoUpstream], routes: list[dict[str, Any]], **top: Any) -> dict:
    return {
        "upstreams": {name: {"targets": [{"url": up.url}]} for name, up in upstreams.items()},
        "routes": routes,
        **top,
    }


def assert_error(response: TestResponse | PolicyResult, status: int, code: str) -> dict:
    """fastgw's JSON error format, with the request id of the exchange."""
    assert response.status == status, (response.status, response.body)
    assert response.headers["content-type"].split(";")[0] == "application/json"
    doc = response.json()
    assert set(doc) == {"error"}, doc
    error = doc["error"]
    assert error["status"] == status and error["code"] == code, doc
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"], doc
    return error


# --- request_headers ---------------------------------------------------------------------


def test_request_headers_set_add_remove_rename_with_variables() -> None:
    entry = {
        "request_headers": {
            "set": {
                "x-client-ip": "$client_ip",
                "x-rid": "$request_id",
                "x-host": "$host",
                "x-method": "$method",
                "x-path": "$path",
                "x-route": "$route",
                "x-user": "{id}",
                "x-combo": "user {id} via $method $$ {{literal}}",
            },
            "add": {"x-add": "two"},
            "remove": ["x-debug"],
            "rename": {"x-old": "x-new"},
        }
    }
    result = run_policy_sync(
        entry,
        "POST",
        "/users/42?q=1",
        headers=[
            ("Host", "api.test"),
            ("X-Client-IP", "spoofed"),
            ("x-client-ip", "spoofed-again"),
            ("x-debug", "1"),
            ("x-add", "one"),
            ("X-Old", "kept value"),
            ("x-keep", "yes"),
        ],
        body=b"hello",
        paths=("/users/{id}",),
    )
    assert result.status == 200
    seen = result.upstream_request
    assert seen is not None and seen.target == "/users/42?q=1" and seen.body == b"hello"
    h = seen.headers
    assert h.getall("x-client-ip") == ["127.0.0.1"]  # set replaces every client field
    assert h["x-rid"] == h["x-request-id"] == result.headers["x-request-id"]
    assert h["x-host"] == "api.test"
    assert h["x-method"] == "POST"
    assert h["x-path"] == "/users/42"
    assert h["x-route"] == "policy"
    assert h["x-user"] == "42"
    assert h["x-combo"] == "user 42 via POST $ {literal}"
    assert h.getall("x-add") == ["one", "two"]
    assert "x-debug" not in h
    assert "x-old" not in h and h.getall("x-new") == ["kept value"]
    assert h["x-keep"] == "yes"


def test_request_headers_param_of_catch_all() -> None:
    result = run_policy_sync(
        {"request_headers": {"set": {"x-rest": "{rest}"}}}, "GET", "/files/a/b/c.txt",
        paths=("/files/{*rest}",),
    )  # fmt: skip
    assert result.status == 200
    assert result.upstream_request is not None
    assert result.upstream_request.headers["x-rest"] == "a/b/c.txt"


# --- response_headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ops", "expected", "absent"),
    [
        (
            {
                "set": {"x-served-by": "fastgw $route", "x-item": "{id}"},
                "add": {"x-extra": "$method"},
                "rename": {"content-type": "x-upstream-type"},
            },
            {"x-served-by": "fastgw policy", "x-item": "9", "x-extra": "GET",
             "x-upstream-type": "application/json"},
            ["content-type"],
        ),
        ({"remove": ["content-type"]}, {}, ["content-type"]),
    ],
    ids=["set-add-rename", "remove"],
)  # fmt: skip
def test_response_headers(ops: dict, expected: dict[str, str], absent: list[str]) -> None:
    result = run_policy_sync({"response_headers": ops}, "GET", "/items/9", paths=("/items/{id}",))
    assert result.status == 200
    for name, value in expected.items():
        assert result.headers.getall(name) == [value], result.headers
    for name in absent:
        assert name not in result.headers
    assert result.json()["target"] == "/items/9"  # the body is untouched


def test_global_response_headers_skip_local_answers() -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            cfg = config(
                {"echo": up},
                [
                    route("proxied", ["/p"]),
                    route("local", ["/l"], {"direct_response": {"status": 200, "body": "hi"}}),
                ],
                global_policies=[{"response_headers": {"set": {"x-served-by": "fastgw"}}}],
            )
            async with running_gateway(cfg) as gw:
                proxied = await gw.request("GET", "/p")
                local = await gw.request("GET", "/l")
        assert proxied.status == 200 and proxied.headers["x-served-by"] == "fastgw"
        assert local.status == 200 and local.body == b"hi"
        assert "x-served-by" not in local.headers

    run(main())


# --- direct_response ---------------------------------------------------------------------


def test_direct_response_get_and_head_on_one_connection() -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            entry = {
                "direct_response": {
                    "status": 503,
                    "body": "maintenance",
                    "headers": {"retry-after": "60"},
                }
            }
            async with (
                running_gateway(config({"echo": up}, [route("m", ["/{*rest}"], entry)])) as gw,
                gw.connection() as conn,
            ):
                get = await conn.request("GET", "/anything")
                head = await conn.request("HEAD", "/anything")
                # A HEAD answer with a body would corrupt this next exchange.
                again = await conn.request("GET", "/other")
        for response in (get, head, again):
            assert response.status == 503
            assert response.headers["retry-after"] == "60"
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            assert response.headers["x-request-id"]
        assert get.body == again.body == b"maintenance"
        assert get.headers["content-length"] == "11"
        assert head.body == b""
        assert head.headers.get("content-length", "11") == "11"
        assert up.requests == []

    run(main())


# --- redirect ----------------------------------------------------------------------------


@pytest.mark.parametrize("keep_query", [True, False], ids=["keep-query", "drop-query"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect(status: int, keep_query: bool) -> None:
    entry = {"redirect": {"status": status, "location": "/new/{id}", "keep_query": keep_query}}
    result = run_policy_sync(entry, "GET", "/old/7?a=1&b=2", paths=("/old/{id}",))
    assert result.status == status
    assert result.headers.getall("location") == ["/new/7?a=1&b=2" if keep_query else "/new/7"]
    assert result.upstream_request is None


@pytest.mark.parametrize(
    ("target", "location"),
    [("/old/7?a=1", "/new?from=7&a=1"), ("/old/7", "/new?from=7")],
    ids=["query-joined-with-ampersand", "no-query-to-keep"],
)
def test_redirect_keeps_the_query_after_its_own(target: str, location: str) -> None:
    entry = {"redirect": {"location": "/new?from={id}"}}
    result = run_policy_sync(entry, "GET", target, paths=("/old/{id}",))
    assert (result.status, result.headers.getall("location")) == (302, [location])


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a%20b%0D%0Ax-injected:%201", "a%20b%0D%0Ax-injected:%201"),  # stays encoded
        ("a|b", "a%7Cb"),
        ('a"b', "a%22b"),
        ("a{b}", "a%7Bb%7D"),
        ("a^b`c", "a%5Eb%60c"),
    ],
    ids=["crlf-space-escaped", "pipe", "quote", "braces", "caret-backtick"],
)
def test_redirect_location_is_percent_encoded(raw: str, encoded: str) -> None:
    entry = {"redirect": {"status": 302, "location": "https://new.example/u/{id}"}}
    result = run_policy_sync(entry, "GET", f"/u/{raw}", paths=("/u/{id}",))
    assert result.status == 302
    location = result.headers["location"]
    assert location == f"https://new.example/u/{encoded}"
    assert URI_CHARS.match(location), location
    # nothing was injected into the head
    assert set(result.headers) <= {"location", "content-length", "content-type", "x-request-id"}


def test_redirect_with_host_and_path_variables() -> None:
    entry = {"redirect": {"status": 308, "location": "https://$host/v2$path"}}
    result = run_policy_sync(entry, "GET", "/users/1?x=y", headers={"Host": "api.test"})
    assert result.status == 308
    assert result.headers["location"] == "https://api.test/v2/users/1?x=y"


# --- chain order -------------------------------------------------------------------------


def test_chain_order_global_then_groups_as_listed_then_route() -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            cfg = config(
                {"echo": up},
                [
                    route("all", ["/all"], policy("Mark", {"tag": "r"}), groups=["two", "one"]),
                    route("plain", ["/plain"], policy("AsyncMark", {"tag": "r2"})),
                ],
                global_policies=[policy("Mark", {"tag": "g"})],
                policy_groups={
                    "one": [policy("Mark", {"tag": "a1"}), policy("AsyncMark", {"tag": "a2"})],
                    "two": [policy("AsyncMark", {"tag": "b"})],
                },
            )
            async with running_gateway(cfg) as gw:
                full = await gw.request("GET", "/all")
                plain = await gw.request("GET", "/plain")
        assert full.status == plain.status == 200
        sent = {req.path: req.headers for req in up.requests}
        # Each hook appends its tag to scratch and sets the header: the value the last hook
        # set shows the order they ran in (set-replaces-set has its own test below).
        assert sent["/all"].getall("x-order")[-1] == "g,b,a1,a2,r"
        assert sent["/plain"].getall("x-order")[-1] == "g,r2"
        assert full.headers.getall("x-order-response")[-1] == "g,b,a1,a2,r"
        assert plain.headers.getall("x-order-response")[-1] == "g,r2"


def test_python_set_header_twice_keeps_only_the_last_value() -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            chain = [policy("Mark", {"tag": "one"}), policy("AsyncMark", {"tag": "two"})]
            async with running_gateway(config({"echo": up}, [route("r", ["/"], *chain)])) as gw:
                response = await gw.request("GET", "/", headers={"x-order": "from-client"})
        assert response.status == 200
        # set = replace every field of that name, the client's and earlier hooks' alike
        assert up.requests[0].headers.getall("x-order") == ["one,two"]
        assert response.headers.getall("x-order-response") == ["one,two"]

    run(main())

    run(main())


def test_compiled_header_ops_apply_before_python_changes() -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            chain = [
                policy("Mark", {"tag": "python", "header": "x-h"}),
                {"request_headers": {"set": {"x-h": "compiled"}}},
                {"response_headers": {"set": {"x-h-response": "compiled"}}},
            ]
            async with running_gateway(config({"echo": up}, [route("r", ["/"], *chain)])) as gw:
                response = await gw.request("GET", "/")
        assert response.status == 200
        assert up.requests[0].headers.getall("x-h") == ["python"]
        assert response.headers.getall("x-h-response") == ["python"]

    run(main())


# --- failure isolation -------------------------------------------------------------------


def test_provisioning_failure_disables_only_its_routes() -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            cfg = config(
                {"echo": up},
                [
                    route("ok", ["/ok"]),
                    route("broken", ["/broken"], policy("FailProvision")),
                    route("grouped", ["/grouped"], groups=["bad"]),
                    route("other", ["/other"], groups=["good"]),
                ],
                policy_groups={
                    "bad": [policy("FailProvision", {"reason": "group cannot start"})],
                    "good": [{"request_headers": {"set": {"x-good": "1"}}}],
                },
            )
            async with running_gateway(cfg) as gw:
                results = {path: await gw.request("GET", path) for path in
                           ("/ok", "/broken", "/grouped", "/other")}  # fmt: skip
        assert_error(results["/broken"], 503, "route_unavailable")
        assert_error(results["/grouped"], 503, "route_unavailable")
        assert results["/ok"].status == 200
        assert results["/other"].status == 200
        assert [req.path for req in up.requests] == ["/ok", "/other"]
        assert up.requests[1].headers["x-good"] == "1"

    run(main())


def test_raising_hook_gives_500_and_the_connection_keeps_serving() -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            cfg = config(
                {"echo": up},
                [
                    route("ok", ["/ok"]),
                    route("boom", ["/boom"], policy("Raise")),
                    route("boom-async", ["/boom-async"], policy("AsyncRaise")),
                    route("junk", ["/junk"], policy("ReturnJunk")),
                ],
            )
            async with running_gateway(cfg) as gw, gw.connection() as conn:
                answers = [
                    await conn.request("GET", path)
                    for path in ("/boom", "/ok", "/boom-async", "/ok", "/junk", "/ok")
                ]
        for failed in answers[0::2]:
            assert_error(failed, 500, "policy_error")
        for ok in answers[1::2]:
            assert ok.status == 200
        assert [req.path for req in up.requests] == ["/ok", "/ok", "/ok"]

    run(main())


@pytest.mark.parametrize("name", ["Raise", "AsyncRaise"])
def test_raising_response_hook_gives_500_and_the_gateway_keeps_serving(name: str) -> None:
    async def main() -> None:
        async with EchoUpstream() as up:
            boom = policy(name, {"hook": "response"})
            cfg = config({"echo": up}, [route("ok", ["/ok"]), route("boom", ["/boom"], boom)])
            async with running_gateway(cfg) as gw:
                failed = await gw.request("GET", "/boom")
                ok = await gw.request("GET", "/ok")
        assert_error(failed, 500, "policy_error")
        assert ok.status == 200
        assert [req.path for req in up.requests] == ["/boom", "/ok"]

    run(main())


def test_body_of_a_request_failed_by_a_hook_is_never_parsed_as_a_request() -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    async def main() -> None:
        async with EchoUpstream() as up:
            cfg = config(
                {"echo": up},
                [route("boom", ["/boom"], policy("Raise")), route("any", ["/{*rest}"])],
            )
            async with running_gateway(cfg) as gw, gw.connection() as conn:
                failed = await conn.request("POST", "/boom", body=smuggled)
                # The gateway may close (the body was unread) or skip the body and go on.
                if not await conn.is_closed(0.3):
                    after = await conn.request("GET", "/next")
                    assert after.status == 200
                    assert after.json()["target"] == "/next"
            assert_error(failed, 500, "policy_error")
            assert "/smuggled" not in [req.path for req in up.requests]

    run(main())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-ok", "a\r\nx-injected: 1"),
        ("x-ok", "a\nx-injected: 1"),
        ("x-ok", "a\rb"),
        ("x-ok", "a\x00b"),
        ("bad name", "v"),
        ("x-a:b", "v"),
        ("", "v"),
        ("host", "evil.example"),
        ("content-length", "0"),
    ],
    ids=["crlf", "lf", "cr", "nul", "space-in-name", "colon-in-name", "empty-name",
         "managed-host", "managed-content-length"],
)  # fmt: skip
def test_python_set_header_refuses_unsafe_fields(name: str, value: str) -> None:
    result = run_policy_sync(policy("SetHeader", {"name": name, "value": value}), "GET", "/x")
    assert_error(result, 500, "policy_error")
    assert result.upstream_request is None
    assert "x-injected" not in result.headers


# --- Python hooks: answers, async I/O, request API ---------------------------------------


@pytest.mark.parametrize("name", ["Answer", "AsyncAnswer"])
def test_hook_returns_response(name: str) -> None:
    cfg = {"status": 201, "body": "made", "headers": {"x-made": "yes"}}
    result = run_policy_sync(policy(name, cfg), "POST", "/things", body=b"{}")
    assert result.status == 201
    assert result.body == b"made"
    assert result.headers["x-made"] == "yes"
    assert result.headers["content-type"] == "text/plain; charset=utf-8"
    assert result.headers["x-request-id"]
    assert result.upstream_request is None


def test_async_hooks_await_real_io() -> None:
    async def main() -> None:
        async with EchoUpstream() as up, EchoUpstream(name="probe-server") as probe:
            chain = [
                policy("Probe", {"host": "127.0.0.1", "port": probe.port}),
                policy("AsyncResponseHeaders"),
            ]
            async with running_gateway(
                config({"echo": up}, [route("r", ["/{*rest}"], *chain)])
            ) as gw:
                responses = await asyncio.gather(
                    *(gw.request("GET", f"/item/{i}") for i in range(5))
                )
        for response in responses:
            assert response.status == 200
            assert response.headers["x-after-wait"] == "status=200"
            assert response.headers.getall("x-added") == ["one", "two"]
            assert "content-type" not in response.headers
        assert sorted(req.target for req in probe.requests) == [
            f"/probe/item/{i}" for i in range(5)
        ]
        for req in up.requests:
            assert req.headers["x-probe-target"] == "/probe" + req.path
            assert req.headers["x-probe-upstream"] == "probe-server"
        assert len(up.requests) == 5

    run(main())


def test_request_object_seen_by_hooks() -> None:
    result = run_policy_sync(
        policy("Inspect"),
        "GET",
        "/t/acme/items/5?b=2&a=1",
        headers=[("X-Tenant", "acme"), ("x-tag", "1"), ("X-TAG", "2")],
        paths=("/t/{tenant}/items/{id}",),
    )
    assert result.status == 200
    seen = result.json()
    assert seen["method"] == "GET"
    assert seen["path"] == "/t/acme/items/5"
    assert seen["params"] == {"tenant": "acme", "id": "5"}
    assert seen["query"] == "b=2&a=1"
    assert seen["client_ip"] == "127.0.0.1"
    assert seen["route"] == "policy"
    assert seen["request_id"] == result.headers["x-request-id"]
    assert seen["tenant_upper"] == seen["tenant_lower"] == seen["tenant_mixed"] == "acme"
    assert seen["missing"] == "default"
    assert seen["all_tags"] == ["1", "2"]
    assert seen["has_tenant"] is True and seen["has_missing"] is False
    assert "X-Tenant" in seen["names"]
    assert seen["consumer"] is None


def test_request_object_without_query() -> None:
    result = run_policy_sync(policy("Inspect"), "DELETE", "/plain", headers={"x-tenant": "a"})
    seen = result.json()
    assert seen["query"] is None and seen["params"] == {"rest": "plain"}
    assert seen["method"] == "DELETE"


def test_rewrite_path_keeps_the_query() -> None:
    result = run_policy_sync(policy("Rewrite", {"path": "/internal/v2"}), "GET", "/public/x?q=1")
    assert result.status == 200
    assert result.upstream_request is not None
    assert result.upstream_request.target == "/internal/v2?q=1"


@pytest.mark.parametrize("path", ["relative", "/a?b", "/a b", "/a#b"])
def test_invalid_rewrite_path_is_a_policy_error(path: str) -> None:
    result = run_policy_sync(policy("Rewrite", {"path": path}), "GET", "/x")
    assert_error(result, 500, "policy_error")
    assert result.upstream_request is None


def test_set_upstream() -> None:
    async def main() -> None:
        async with EchoUpstream(name="main") as main_up, EchoUpstream(name="other") as other:
            cfg = config(
                {"echo": main_up, "other": other},
                [
                    route("switch", ["/switch"], policy("Switch", {"upstream": "other"})),
                    route("unknown", ["/unknown"], policy("Switch", {"upstream": "nope"})),
                    route("stay", ["/stay"]),
                ],
            )
            async with running_gateway(cfg) as gw:
                switched = await gw.request("GET", "/switch")
                unknown = await gw.request("GET", "/unknown")
                stayed = await gw.request("GET", "/stay")
        assert switched.status == 200 and switched.json()["upstream"] == "other"
        assert_error(unknown, 500, "policy_error")
        assert stayed.json()["upstream"] == "main"
        assert [r.path for r in other.requests] == ["/switch"]
        assert [r.path for r in main_up.requests] == ["/stay"]

    run(main())


def test_run_policy_async_form() -> None:
    result = run(run_policy({"request_headers": {"set": {"x-a": "1"}}}, "GET", "/a/b"))
    assert result.status == 200
    assert result.upstream_request is not None
    assert result.upstream_request.headers["x-a"] == "1"


def test_fastgw_gateway_fixture(fastgw_upstream: EchoUpstream, fastgw_gateway: Any) -> None:
    gw = fastgw_gateway(
        config({"echo": fastgw_upstream}, [route("r", ["/{*rest}"], policy("Mark", {"tag": "t"}))])
    )
    response = gw.request("GET", "/fixture")
    assert response.status == 200
    assert ["x-order", "t"] in response.json()["headers"]
    assert [r.path for r in fastgw_upstream.requests] == ["/fixture"]


# --- the example policy in the real CLI gateway ------------------------------------------


def test_tenant_guard_example_end_to_end(upstream: Any, gateway: Any, http: Any) -> None:
    up = upstream("echo", name="app")
    guard = {"examples.custom_policy:TenantGuard": {"allow": ["acme", "globex"]}}
    gw = gateway(
        routes=[http.route("tenants", ["/api/{*rest}"], "app", policies=[guard])],
        upstreams={"app": up},
    )
    with gw.connect() as client:
        missing = client.request("GET", "/api/a")
        denied = client.request("GET", "/api/a", headers=[("X-Tenant", "evil")])
        allowed = client.request(
            "GET", "/api/a", headers=[("X-Tenant", "globex"), ("x-tenant-verified", "forged")]
        )
    for response, message in ((missing, "missing x-tenant header"), (denied, "tenant not allowed")):
        error = response.error()
        assert response.status == 403 and error["code"] == "tenant_not_allowed"
        assert error["message"] == message
        assert error["request_id"] == response.header("x-request-id")
    assert allowed.status == 200
    received = allowed.json()
    assert received["target"] == "/api/a"
    verified = [v for k, v in received["headers"] if k.lower() == "x-tenant-verified"]
    assert verified == ["globex"]  # set replaced the client's forged field
    assert [r.target for r in up.requests] == ["/api/a"]


# --- policies that read the body (needs_body) ------------------------------------------


@pytest.mark.parametrize("name", ["BodySigner", "AsyncBodyCheck"])
def test_policy_reads_the_body_and_the_upstream_still_gets_it(name: str) -> None:
    result = run_policy_sync(policy(name), "POST", "/upload", body=b"hello body")
    assert result.status == 200
    upstream = result.upstream_request
    assert upstream is not None
    assert upstream.headers.get("x-body-length") == "10"
    assert upstream.body == b"hello body"


def test_policy_reads_a_chunked_body_and_forwards_it_chunked() -> None:
    async def main() -> None:
        async with (
            EchoUpstream() as echo,
            running_gateway(
                config({"echo": echo}, [route("r", ["/{*rest}"], policy("BodySigner"))])
            ) as gw,
        ):
            async with gw.connection() as conn:
                response = await conn.send_raw(
                    b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                    "POST",
                )
            assert response.status == 200
            received = echo.requests[-1]
            assert received.headers.get("x-body-length") == "11"
            assert received.headers.get("x-body-start") == "hello wo"
            assert received.body == b"hello world"
            assert received.headers.get("transfer-encoding") == "chunked"

    run(main())


def test_policy_can_refuse_on_the_body() -> None:
    result = run_policy_sync(policy("BodySigner"), "POST", "/upload", body=b"deny this")
    assert result.status == 403
    assert result.upstream_request is None


def test_body_beyond_the_policy_limit_is_413_and_never_reaches_the_upstream() -> None:
    result = run_policy_sync(policy("BodySigner"), "POST", "/upload", body=b"x" * 65)
    assert_error(result, 413, "body_too_large")
    assert result.upstream_request is None


def test_needs_body_on_a_bodyless_request_sees_empty_bytes() -> None:
    result = run_policy_sync(policy("BodySigner"), "GET", "/nothing")
    assert result.status == 200
    assert result.upstream_request.headers.get("x-body-length") == "0"


# --- path_rewrite ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "target", "forwarded"),
    [
        pytest.param(
            {"match": "^/old/(.*)$", "replace": "/new/\\1"},
            "/old/a/b?q=1",
            "/new/a/b?q=1",
            id="numbered-group-query-kept",
        ),
        pytest.param(
            {"match": "^/v(?P<n>[0-9]+)/(?P<rest>.*)$", "replace": "/api/\\g<rest>/v\\g<n>"},
            "/v2/items",
            "/api/items/v2",
            id="named-groups",
        ),
        pytest.param(
            {"match": "^/old/(.*)$", "replace": "/new/\\1"},
            "/other/x",
            "/other/x",
            id="no-match-unchanged",
        ),
    ],
)
def test_path_rewrite(entry: dict[str, str], target: str, forwarded: str) -> None:
    result = run_policy_sync({"path_rewrite": entry}, "GET", target)
    assert result.status == 200
    assert result.upstream_request.target == forwarded


def test_startup_log_names_the_policy_that_disabled_a_route(upstream, gateway, http) -> None:
    up = upstream("echo")
    gw = gateway(
        routes=[
            http.route("good", ["/good"], "up"),
            http.route(
                "broken",
                ["/broken"],
                "up",
                policies=[{"request_headers": {"set": {"x-a": "$nope"}}}],
            ),
        ],
        upstreams={"up": up},
    )
    assert gw.request("GET", "/good").status == 200
    assert gw.request("GET", "/broken").status == 503
    assert "$.routes[1].policies[0]" in gw.stderr
    assert "unknown variable $nope" in gw.stderr
