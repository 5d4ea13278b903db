"""`concurrency_limit` and the rate limit `delay` through a real gateway, with an upstream
slow enough that requests overlap."""

from __future__ import annotations

import threading
import time
from typing import Any


def start(gateway: Any, upstream: Any, entry: dict[str, Any], delay: float = 0.6) -> Any:
    slow = upstream("slow", delay=delay)
    return gateway(
        routes=[
            {
                "name": "slow",
                "match": {"paths": ["/slow"]},
                "upstream": "s",
                "policies": [entry],
            }
        ],
        upstreams={"s": slow},
    )


def concurrent(gw: Any, count: int, stagger: float = 0.05) -> list[tuple[int, float, str]]:
    """`count` requests on their own connections, started `stagger` apart: (status,
    seconds taken, error code or "") in start order."""
    results: list[Any] = [None] * count

    def one(i: int) -> None:
        started = time.monotonic()
        with gw.connect(timeout=10) as client:
            resp = client.request("GET", "/slow")
        code = resp.error()["code"] if resp.status >= 400 else ""
        results[i] = (resp.status, time.monotonic() - started, code)

    threads = []
    for i in range(count):
        thread = threading.Thread(target=one, args=(i,))
        thread.start()
        threads.append(thread)
        time.sleep(stagger)
    for thread in threads:
        thread.join(20)
    return results


def test_refuses_beyond_max(gateway: Any, upstream: Any):
    gw = start(gateway, upstream, {"concurrency_limit": {"max": 2}})
    results = concurrent(gw, 3)
    assert [r[0] for r in results] == [200, 200, 503]
    assert results[2][2] == "concurrency_limited"
    # The places come back when the exchanges end.
    assert [r[0] for r in concurrent(gw, 2)] == [200, 200]


def test_status_429(gateway: Any, upstream: Any):
    gw = start(gateway, upstream, {"concurrency_limit": {"max": 1, "status": 429}})
    assert [r[0] for r in concurrent(gw, 2)] == [200, 429]


def test_queue_waits_for_a_place(gateway: Any, upstream: Any):
    gw = start(
        gateway, upstream, {"concurrency_limit": {"max": 1, "queue": 2, "queue_timeout": "5s"}}
    )
    results = concurrent(gw, 3)
    assert [r[0] for r in results] == [200, 200, 200]
    # One at a time: the third waited for two exchanges of about 0.6 s.
    assert results[2][1] > 1.0


def test_queue_timeout_and_bound(gateway: Any, upstream: Any):
    gw = start(
        gateway,
        upstream,
        {"concurrency_limit": {"max": 1, "queue": 1, "queue_timeout": "200ms"}},
        delay=1.0,
    )
    results = concurrent(gw, 3)
    assert [r[0] for r in results] == [200, 503, 503]
    # One of the two refused waited in the queue until its timeout (timeouts have the
    # engine tick's 100 ms resolution); the other found the queue full and was refused at
    # once. Which one arrived first is the threads' race, not the gateway's.
    waited, refused = sorted((results[1][1], results[2][1]), reverse=True)
    assert waited >= 0.1 and refused < waited


def test_rate_limit_delay_spaces_requests(gateway: Any, upstream: Any):
    gw = start(
        gateway,
        upstream,
        {"rate_limit": {"limits": [{"rate": 10, "per": "1s", "burst": 1}], "delay": "1s"}},
        delay=0.0,
    )
    started = time.monotonic()
    with gw.connect() as client:
        statuses = [client.request("GET", "/slow").status for _ in range(5)]
    elapsed = time.monotonic() - started
    assert statuses == [200] * 5
    assert 0.35 <= elapsed < 2.0  # four waits of about 100 ms each


def test_a_client_that_leaves_the_queue_frees_its_place(gateway: Any, upstream: Any, http: Any):
    import socket

    gw = start(
        gateway,
        upstream,
        {"concurrency_limit": {"max": 1, "queue": 1, "queue_timeout": "5s"}},
        delay=0.8,
    )
    holder = gw.connect(timeout=10)
    holder.send(http.build_request("GET", "/slow"))
    time.sleep(0.1)
    quitter = socket.create_connection((gw.host, gw.port))
    quitter.sendall(http.build_request("GET", "/slow"))
    time.sleep(0.1)
    quitter.close()  # gone while queued: the queue must not keep it
    time.sleep(0.1)
    with gw.connect(timeout=10) as client:
        assert client.request("GET", "/slow").status == 200
    assert holder.read_final().status == 200
    holder.close()


def test_a_client_that_leaves_while_delayed_is_not_sent_upstream(
    gateway: Any, upstream: Any, http: Any
):
    import socket

    slow = upstream("echo")
    gw = gateway(
        routes=[
            {
                "name": "d",
                "match": {"paths": ["/d"]},
                "upstream": "s",
                "policies": [
                    {
                        "rate_limit": {
                            "limits": [{"rate": 1, "per": "1s", "burst": 1}],
                            "delay": "5s",
                        }
                    }
                ],
            }
        ],
        upstreams={"s": slow},
    )
    assert gw.request("GET", "/d").status == 200
    quitter = socket.create_connection((gw.host, gw.port))
    quitter.sendall(http.build_request("GET", "/d"))  # parked for about 1 s
    time.sleep(0.2)
    quitter.close()
    time.sleep(1.5)
    assert len(slow.requests) == 1  # the parked request never reached the upstream
