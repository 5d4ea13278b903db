"""No secret reaches a log line: a Redis rate limit whose URL carries a password, pointed at a
port that refuses connections, logs its outage without the password, as text and as JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

PASSWORD = "Sup3rSecretPw"


@pytest.mark.parametrize("userinfo", [":", "fastgw:"], ids=["password-only", "user-and-password"])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_redis_outage_log_hides_the_url_password(
    gateway: Any, upstream: Any, http: Any, userinfo: str, log_format: str
) -> None:
    refused, port = http.refused_port()
    with refused:
        url = f"redis://{userinfo}{PASSWORD}@127.0.0.1:{port}/0"
        limit = {
            "limits": [{"rate": 10, "per": "60s"}],
            "policy": "redis",
            "redis": {"url": url, "timeout": "200ms"},
            "fail_open": False,
        }
        route = gateway.route("limited", ["/limited"], "echo", policies=[{"rate_limit": limit}])
        gw = gateway(
            routes=[route],
            upstreams={"echo": upstream()},
            error_log={"format": log_format},
        )
        response = gw.request("GET", "/limited")
        # fail closed: Redis could not be asked
        assert response.status == 503, response
        assert response.error()["code"] == "rate_limit_unavailable"
        deadline = time.monotonic() + 5
        while "Redis at" not in gw.stderr and time.monotonic() < deadline:
            time.sleep(0.02)
    logged = gw.stderr
    lines = [line for line in logged.splitlines() if "Redis at" in line]
    assert lines, logged
    assert PASSWORD not in logged
    message = json.loads(lines[0])["message"] if log_format == "json" else lines[0]
    # The rest of the URL still tells an operator which Redis it was.
    assert f"Redis at redis://{userinfo}***redacted***@127.0.0.1:{port}/0 unavailable" in message
