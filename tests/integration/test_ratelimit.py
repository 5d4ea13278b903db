"""`rate_limit` through a real gateway: 429s with their fields, keys, spoofing, reloads,
metrics and the access log, and one limit for two workers under saturating load."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest


def limited_route(limit: dict[str, Any], **entry: Any) -> dict[str, Any]:
    return {
        "name": "api",
        "match": {"paths": ["/api/{id}"]},
        "upstream": "be",
        "policies": [{"rate_limit": {"limits": [limit], **entry}}],
    }


def start(gateway: Any, upstream: Any, route: dict[str, Any], **top: Any) -> Any:
    return gateway(
        routes=[route, gateway.route("free", ["/free"], "be")],
        upstreams={"be": upstream("echo")},
        **top,
    )


def statuses(gw: Any, count: int, path: str = "/api/1", headers: Any = None) -> list[int]:
    with gw.connect() as client:
        return [client.request("GET", path, headers or []).status for _ in range(count)]


def test_429_with_fields_and_json(gateway: Any, upstream: Any):
    gw = start(gateway, upstream, limited_route({"rate": 3, "per": "1m"}))
    with gw.connect() as client:
        ok = [client.request("GET", "/api/1") for _ in range(3)]
        refused = client.request("GET", "/api/1")
        free = client.request("GET", "/free")
    assert [r.status for r in ok] == [200, 200, 200]
    assert [r.header("ratelimit-remaining") for r in ok] == ["2", "1", "0"]
    assert {r.header("ratelimit-limit") for r in ok} == {"3"}
    assert refused.status == 429
    err = refused.error()
    assert err["code"] == "rate_limited"
    assert refused.header("retry-after") == "20"  # one token per 20 s
    assert refused.header("ratelimit-remaining") == "0"
    assert int(refused.header("ratelimit-reset")) == 60
    assert free.status == 200 and free.header("ratelimit-limit") is None


def test_legacy_fields(gateway: Any, upstream: Any):
    gw = start(gateway, upstream, limited_route({"rate": 5, "per": "1s"}, headers="legacy"))
    with gw.connect() as client:
        resp = client.request("GET", "/api/1")
    assert resp.header("x-ratelimit-limit") == "5"
    assert resp.header("x-ratelimit-remaining") == "4"
    assert resp.header("ratelimit-limit") is None


def test_spoofed_forwarded_for_makes_no_new_bucket(gateway: Any, upstream: Any):
    gw = start(gateway, upstream, limited_route({"rate": 2, "per": "1m"}))
    spoofed = [
        statuses(gw, 1, headers=[("X-Forwarded-For", f"203.0.113.{i}")])[0] for i in range(5)
    ]
    assert spoofed == [200, 200, 429, 429, 429]


def test_trusted_proxy_forwarded_for_is_the_key(gateway: Any, upstream: Any):
    gw = start(
        gateway,
        upstream,
        limited_route({"rate": 1, "per": "1m"}),
        trusted_proxies=["127.0.0.1/32"],
    )
    first = [statuses(gw, 2, headers=[("X-Forwarded-For", f"203.0.113.{i}")]) for i in range(3)]
    assert first == [[200, 429]] * 3


def test_header_key_with_fallback_and_param_key(gateway: Any, upstream: Any):
    gw = start(
        gateway,
        upstream,
        limited_route({"rate": 1, "per": "1m"}, key=["header:x-api-key", "param:id"]),
    )
    assert statuses(gw, 2, "/api/1", [("X-Api-Key", "alpha")]) == [200, 429]
    assert statuses(gw, 1, "/api/2", [("X-Api-Key", "alpha")]) == [200]  # another id
    assert statuses(gw, 1, "/api/1", [("X-Api-Key", "beta")]) == [200]  # another key
    # No x-api-key: the client IP stands in (and has its own bucket).
    assert statuses(gw, 2, "/api/1") == [200, 429]


def test_reload_keeps_the_buckets(gateway: Any, upstream: Any, http: Any):
    import os
    import signal

    gw = start(gateway, upstream, limited_route({"rate": 2, "per": "1m"}))
    assert statuses(gw, 3) == [200, 200, 429]
    gw.config_path.write_text(gw.config_path.read_text() + "\n# touched\n")
    os.kill(gw.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reloaded" not in gw.stderr:
        assert time.monotonic() < deadline, gw.stderr
        time.sleep(0.02)
    assert statuses(gw, 1) == [429]


def test_metrics_and_access_log(gateway: Any, upstream: Any, tmp_path: Path):
    from prometheus_client.parser import text_string_to_metric_families

    log = tmp_path / "access.log"
    gw = start(
        gateway,
        upstream,
        limited_route({"rate": 2, "per": "1m"}),
        admin={"listen": "127.0.0.1:0"},
        access_log={"path": str(log), "flush_interval": "50ms", "fields": ["path", "rate_limit"]},
    )
    assert statuses(gw, 3) + statuses(gw, 1, "/free") == [200, 200, 429, 200]
    deadline = time.monotonic() + 5
    while len(log.read_text().splitlines()) < 4 if log.exists() else True:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [
        {"path": "/api/1", "rate_limit": "allowed"},
        {"path": "/api/1", "rate_limit": "allowed"},
        {"path": "/api/1", "rate_limit": "limited"},
        {"path": "/free", "rate_limit": None},
    ]
    import re
    import urllib.request

    port = int(re.search(r"fastgw admin on http://[0-9.]+:(\d+)", gw.stdout).group(1))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "fastgw_ratelimit_decisions_total"
    }
    assert found == {
        (("result", "allowed"), ("route", "api")): 2,
        (("result", "limited"), ("route", "api")): 1,
    }


@pytest.mark.slow
def test_two_workers_enforce_one_limit_under_load(gateway: Any, upstream: Any):
    """10 s of saturating load spread over both workers: what passes is the theory's count."""
    rate, burst, duration = 200, 50, 10.0
    gw = start(
        gateway,
        upstream,
        limited_route({"rate": rate, "per": "1s", "burst": burst}, key="route"),
        workers=2,
    )
    deadline = time.monotonic() + 10
    while gw.stderr.count(" ready") < 2:
        assert time.monotonic() < deadline, gw.stderr
        time.sleep(0.02)
    admitted = [0]
    prefixes: set[str] = set()
    lock = threading.Lock()
    first_last = [float("inf"), 0.0]
    stop_at = time.monotonic() + duration

    def load() -> None:
        ok = 0
        seen = set()
        while time.monotonic() < stop_at:
            with gw.connect() as client:  # fresh connections: the kernel spreads them
                for _ in range(20):
                    now = time.monotonic()
                    if now >= stop_at:
                        break
                    resp = client.request("GET", "/api/1")
                    seen.add(resp.header("x-request-id")[:16])
                    if resp.status == 200:
                        ok += 1
                    with lock:
                        first_last[0] = min(first_last[0], now)
                        first_last[1] = max(first_last[1], now)
        with lock:
            admitted[0] += ok
            prefixes.update(seen)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 30)
    assert len(prefixes) == 2, "both workers must have admitted requests"
    elapsed = first_last[1] - first_last[0]
    theory = burst + rate * elapsed
    print(f"admitted {admitted[0]} of theory {theory:.1f} over {elapsed:.3f} s")
    assert abs(admitted[0] - theory) <= 0.01 * theory, (admitted[0], theory, elapsed)


AUTH = {
    "tests.policies_for_tests:ApiKeyAuth": {
        "keys": {
            "k-alice": {"sub": "alice", "tier": "gold"},
            "k-alice-2": {"sub": "alice", "tier": "gold"},
            "k-bob": {"sub": "bob", "tier": "gold"},
        }
    }
}


@pytest.mark.parametrize("key", ["consumer", "claim:sub", "claim:tier"])
def test_keys_from_an_authentication_policy(gateway: Any, upstream: Any, key: str):
    """consumer and claim:NAME read what the authentication policy before the limit set;
    an anonymous request falls back to its client IP."""
    route = limited_route({"rate": 2, "per": "1m"}, key=key)
    route["policies"] = [AUTH, *route["policies"]]
    gw = start(gateway, upstream, route)
    alice, alice_again, bob = ([("X-Api-Key", k)] for k in ("k-alice", "k-alice-2", "k-bob"))
    assert statuses(gw, 1, headers=alice) + statuses(gw, 1, headers=alice_again) == [200, 200]
    # Two keys, one consumer: the third request of alice is over her limit.
    assert statuses(gw, 1, headers=alice) == [429]
    # bob shares alice's bucket only when the key is the tier they share.
    assert statuses(gw, 1, headers=bob) == ([429] if key == "claim:tier" else [200])
    assert statuses(gw, 3) == [200, 200, 429]  # anonymous: by client IP


def test_head_answered_locally_keeps_the_connection_in_step(gateway: Any, upstream: Any):
    """A local answer to HEAD (404, 429) has Content-Length but no body (RFC 9110 9.3.2),
    so the next response on the connection is read correctly."""
    gw = start(gateway, upstream, limited_route({"rate": 1, "per": "1m"}))
    with gw.connect() as client:
        missing = client.request("HEAD", "/missing")
        assert (missing.status, missing.body) == (404, b"")
        assert int(missing.header("content-length")) > 0
        assert client.request("GET", "/free").status == 200
        assert client.request("HEAD", "/api/1").status == 200
        refused = client.request("HEAD", "/api/1")
        assert (refused.status, refused.body) == (429, b"")
        assert client.request("GET", "/free").status == 200
