"""Target selection with real traffic: smooth weighted round robin's sequence, targets marked
down and up, the in-flight count the core keeps through every way an exchange ends, and
selectors written in Python plugged into a running gateway's pools.

The gateway runs in process on a background loop (fastgw.testing), so a test reads its pools'
targets while blocking clients talk to it; upstreams are the conftest's servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fastgw import _core
from fastgw.testing import LoopThread, running_gateway

UPSTREAM_READ = 1.0
SLOW = 0.4  # an upstream that answers within the read timeout, slowly enough to watch
STALLED = 4.0  # one that does not answer within it


def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.005)


class RetryUpstream:
    """Answers the first request of each connection and closes the connection on the next
    one without a byte: a pooled connection the upstream gave up on, which the gateway
    retries on a fresh connection."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: Any = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = False
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                if answered:
                    break
                answered = True
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def stack(module_upstream, http) -> Any:
    ups = {
        name: module_upstream("echo", name=name)
        for name in ("W1", "W2", "D1", "D2", "D3", "P1", "P2", "P3", "B1", "B2")
    }
    ups["L1"] = module_upstream("echo", name="L1", delay=SLOW)
    ups["L2"] = module_upstream("echo", name="L2", delay=SLOW)
    endings = {
        "normal": module_upstream("echo", name="normal", delay=SLOW),
        "reset": module_upstream("reset"),
        "reset_mid_body": module_upstream("truncate", delay=SLOW),
        "client_gone": module_upstream("echo", name="client_gone", delay=STALLED),
        "client_gone_mid_body": module_upstream("truncate", delay=STALLED),
        "timeout": module_upstream("echo", name="timeout", delay=STALLED),
    }
    refused_sock, refused_port = http.refused_port()
    loop = LoopThread()
    retry = RetryUpstream()
    retry_url = loop.run(retry.start())

    def pool(*members: tuple[str, int]) -> dict[str, Any]:
        return {"targets": [{"url": ups[name].url, "weight": weight} for name, weight in members]}

    upstreams: dict[str, Any] = {
        "weighted": pool(("W1", 3), ("W2", 1)),
        "down": pool(("D1", 1), ("D2", 1), ("D3", 1)),
        "python": pool(("P1", 1), ("P2", 1), ("P3", 1)),
        "least": pool(("L1", 1), ("L2", 1)),
        "broken": pool(("B1", 1), ("B2", 1)),
        **{name: {"targets": [{"url": up.url}]} for name, up in endings.items()},
        "refused": {"targets": [{"url": f"http://127.0.0.1:{refused_port}"}]},
        "retry": {"targets": [{"url": retry_url}]},
    }
    routes = [http.route(name, [f"/{name}", f"/{name}/{{*rest}}"], name) for name in upstreams]
    config = http.gateway_config(
        routes=routes,
        upstreams={},
        timeouts={"upstream_read": f"{int(UPSTREAM_READ * 1000)}ms"},
    )
    config["upstreams"] = upstreams
    exits = contextlib.AsyncExitStack()
    running = loop.run(exits.enter_async_context(running_gateway(config)))

    class Stack:
        address = running.address
        pools = running.gateway.plan.pools
        up = {**ups, **endings}

        @staticmethod
        def get(path: str, headers: list[tuple[str, str]] | None = None) -> Any:
            with http.RawClient(*running.address) as client:
                return client.request("GET", path, headers)

        def served_by(self, path: str, n: int) -> str:
            return " ".join(self.get(path).header("x-upstream") or "-" for _ in range(n))

    st = Stack()
    st.http, st.retry = http, retry
    yield st
    loop.run(exits.aclose())
    loop.run(retry.stop())
    loop.close()
    refused_sock.close()


def targets(stack, name: str) -> tuple[_core.UpstreamTarget, ...]:
    return stack.pools[name].targets


# -- smooth weighted round robin, health --------------------------------------------------


def test_requests_follow_the_weighted_sequence(stack) -> None:
    assert stack.served_by("/weighted", 8) == "W1 W1 W2 W1 W1 W1 W2 W1"
    assert all(t.in_flight == 0 for t in targets(stack, "weighted"))


def test_a_target_marked_down_gets_no_traffic_until_marked_up(stack) -> None:
    d2 = targets(stack, "down")[1]
    before = len(stack.up["D2"].requests)
    d2.set_healthy(False)
    try:
        assert stack.served_by("/down", 6) == "D1 D3 D1 D3 D1 D3"
        assert len(stack.up["D2"].requests) == before
    finally:
        d2.set_healthy(True)
    assert stack.served_by("/down", 6) == "D1 D2 D3 D1 D2 D3"
    assert len(stack.up["D2"].requests) == before + 2


def test_every_target_down_still_serves(stack) -> None:
    down = targets(stack, "down")
    for target in down:
        target.set_healthy(False)
    try:
        assert sorted(stack.served_by("/down", 3).split()) == ["D1", "D2", "D3"]
    finally:
        for target in down:
            target.set_healthy(True)


# -- the in-flight count ----------------------------------------------------------------


def in_background(call: Callable[[], Any]) -> Any:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


@pytest.mark.parametrize(
    ("upstream", "path", "status"),
    [("normal", "/normal/x", 200), ("timeout", "/timeout", 504)],
    ids=["slow-response", "upstream-timeout"],
)
def test_in_flight_is_one_during_the_exchange_and_zero_after(stack, upstream, path, status):
    target = targets(stack, upstream)[0]
    response = in_background(lambda: stack.get(path))
    until(lambda: target.in_flight == 1, "the exchange holds its target")
    assert response.result(5).status == status
    assert target.in_flight == 0


def test_in_flight_after_an_upstream_reset(stack) -> None:
    target = targets(stack, "reset")[0]
    seen = len(stack.up["reset"].requests)
    assert stack.get("/reset").status == 502
    assert len(stack.up["reset"].requests) == seen + 1
    assert target.in_flight == 0


def test_in_flight_after_an_upstream_reset_mid_body(stack) -> None:
    target = targets(stack, "reset_mid_body")[0]
    response = in_background(lambda: stack.get("/reset_mid_body"))
    until(lambda: target.in_flight == 1, "the exchange holds its target")
    with pytest.raises(stack.http.IncompleteResponse):
        response.result(5)
    until(lambda: target.in_flight == 0, "the truncated exchange let go")


def test_in_flight_after_connect_refused(stack) -> None:
    target = targets(stack, "refused")[0]
    failures = target.failures
    response = stack.get("/refused")
    assert (response.status, response.error()["code"]) == (502, "upstream_connect_failed")
    assert target.failures == failures + 1  # the exchange was given it, and tried it
    assert target.in_flight == 0


@pytest.mark.parametrize(
    ("name", "read_head"),
    [("client_gone", False), ("client_gone_mid_body", True)],
    ids=["before-the-response", "mid-body"],
)
def test_in_flight_after_the_client_leaves(stack, name: str, read_head: bool) -> None:
    target = targets(stack, name)[0]
    with stack.http.RawClient(*stack.address) as client:
        client.send(stack.http.build_request("GET", f"/{name}"))
        if read_head:
            assert client.read_head().status == 200
        until(lambda: target.in_flight == 1, "the exchange holds its target")
        # A reset, not a FIN: a half-closed client would still get the rest of its answer.
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Well before the upstream answers or closes (STALLED): the exchange ended with the client.
    until(lambda: target.in_flight == 0, "the abandoned exchange let go", timeout=STALLED / 2)


def test_in_flight_after_a_retry_on_a_fresh_connection(stack) -> None:
    target = targets(stack, "retry")[0]
    connects = target.connects
    with stack.http.RawClient(*stack.address) as client:
        assert client.request("GET", "/retry/1").status == 200
        assert target.in_flight == 0
        # The pooled connection is closed unanswered: sent again on a new one, same target.
        assert client.request("GET", "/retry/2").status == 200
    assert target.connects == connects + 2
    assert stack.retry.requests >= 3
    assert target.in_flight == 0


# -- selectors written in Python ---------------------------------------------------------


class Shard(_core.TargetSelector):
    """x-shard: N picks target N; without it, the last target that is up."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str | None]] = []
        self.kept: list[Any] = []

    def select(self, pool, request):
        self.seen.append(
            (request.method, request.path, request.client_ip, request.header("X-Shard"))
        )
        self.kept.append(request)
        shard = request.header("x-shard")
        if shard is not None:
            return pool.targets[int(shard)]
        return [t for t in pool.targets if t.healthy][-1]


def test_a_python_selector_decides_where_requests_go(stack) -> None:
    pool = stack.pools["python"]
    selector = Shard()
    pool.set_selector(selector)
    try:
        assert stack.served_by("/python/a", 3) == "P3 P3 P3"
        assert stack.get("/python/b", [("X-Shard", "0")]).header("x-upstream") == "P1"
        assert stack.get("/python/c", [("x-shard", "1")]).header("x-upstream") == "P2"
        pool.targets[2].set_healthy(False)
        assert stack.served_by("/python/d", 2) == "P2 P2"
        pool.targets[2].set_healthy(True)
    finally:
        pool.set_selector(_core.SmoothWeightedRoundRobin())
    assert stack.served_by("/python/e", 3) == "P1 P2 P3"
    assert selector.seen[3:5] == [
        ("GET", "/python/b", "127.0.0.1", "0"),
        ("GET", "/python/c", "127.0.0.1", "1"),
    ]
    assert len(selector.seen) == 7
    with pytest.raises(RuntimeError, match="only during select"):
        _ = selector.kept[0].path
    assert all(t.in_flight == 0 for t in pool.targets)


class LeastInFlight(_core.TargetSelector):
    def select(self, pool, request):
        up = [t for t in pool.targets if t.healthy] or list(pool.targets)
        return min(up, key=lambda t: t.in_flight)


def test_a_python_selector_reads_the_in_flight_counts(stack) -> None:
    pool = stack.pools["least"]
    l1, l2 = pool.targets
    pool.set_selector(LeastInFlight())
    try:
        # One at a time, the first target is always the least busy (round robin alternates).
        assert stack.served_by("/least", 2) == "L1 L1"
        first = in_background(lambda: stack.get("/least/1"))
        until(lambda: l1.in_flight == 1, "the first request holds L1")
        second = in_background(lambda: stack.get("/least/2"))
        until(lambda: l2.in_flight == 1, "the second request went to the idle target")
        assert first.result(5).header("x-upstream") == "L1"
        assert second.result(5).header("x-upstream") == "L2"
    finally:
        pool.set_selector(_core.SmoothWeightedRoundRobin())
    assert (l1.in_flight, l2.in_flight) == (0, 0)


class Foreign(_core.TargetSelector):
    def select(self, pool, request):
        return _core.UpstreamTarget("127.0.0.1", 1)


class Raising(_core.TargetSelector):
    def select(self, pool, request):
        raise LookupError("no shard")


@pytest.mark.parametrize("selector", [Foreign, Raising, _core.TargetSelector])
def test_a_broken_python_selector_fails_the_request_not_the_gateway(stack, selector: type) -> None:
    pool = stack.pools["broken"]
    pool.set_selector(selector())
    try:
        response = stack.get("/broken")
        assert (response.status, response.error()["code"]) == (500, "internal_error")
    finally:
        pool.set_selector(_core.SmoothWeightedRoundRobin())
    assert all(t.in_flight == 0 for t in pool.targets)
    assert stack.served_by("/broken", 2) == "B1 B2"


def test_a_selector_change_leaves_exchanges_in_flight_alone(stack) -> None:
    pool = stack.pools["least"]
    l1, l2 = pool.targets
    slow = in_background(lambda: stack.get("/least/slow"))
    until(lambda: l1.in_flight + l2.in_flight == 1, "one exchange in flight")
    held = l1 if l1.in_flight else l2
    pool.set_selector(_core.SmoothWeightedRoundRobin())
    assert slow.result(5).status == 200
    assert held.in_flight == 0


def test_counts_stay_exact_under_concurrent_traffic(stack) -> None:
    pool = stack.pools["least"]
    barrier = threading.Barrier(6)

    def one(i: int) -> int:
        barrier.wait(5)
        return stack.get(f"/least/c{i}").status

    with ThreadPoolExecutor(6) as workers:
        statuses = list(workers.map(one, range(6)))
    assert statuses == [200] * 6
    assert [t.in_flight for t in pool.targets] == [0, 0]
