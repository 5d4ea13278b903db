"""The admin API through a real `fastgw run` subprocess: reads, auth, reload, config checks."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ADMIN_RE = re.compile(r"fastgw admin on http://([0-9.]+):(\d+)")
TOKEN = "s3cret-admin-token-0123456789"


def admin_address(gw: Any, timeout: float = 5.0) -> tuple[str, int]:
    """The admin listener's address, from the "fastgw admin on" line on stdout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ADMIN_RE.search(gw.stdout)
        if found:
            return found.group(1), int(found.group(2))
        time.sleep(0.02)
    raise AssertionError(f"no admin address on stdout:\n{gw.stdout}\nstderr:\n{gw.stderr}")


def call(
    http: Any, address: tuple[str, int], method: str, path: str, token: str | None = None
) -> Any:
    headers = [("Authorization", f"Bearer {token}")] if token is not None else []
    if method == "POST":
        headers.append(("Content-Length", "0"))
    with http.RawClient(*address) as client:
        return client.request(method, path, headers=headers)


def start(gateway: Any, upstream: Any, admin: dict[str, Any], **top: Any) -> Any:
    up = upstream()
    config = gateway.config(
        routes=[gateway.route("old", ["/old"], "app")],
        upstreams={"app": up},
        admin={"listen": "127.0.0.1:0", **admin},
        **top,
    )
    return gateway(config), up


def test_reads_without_token(gateway: Any, upstream: Any, http: Any) -> None:
    gw, up = start(gateway, upstream, {})
    address = admin_address(gw)

    health = call(http, address, "GET", "/health")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    assert health.header("content-type") == "application/json"
    ready = call(http, address, "GET", "/ready")
    assert (ready.status, ready.json()) == (200, {"ready": True})

    status = call(http, address, "GET", "/status").json()
    assert status["workers"] == [gw.pid]
    assert status["config_file"] == str(gw.config_path)
    assert status["config_hash"] == hashlib.sha256(gw.config_path.read_bytes()).hexdigest()
    assert status["last_reload"] == {
        "result": None,
        "at": None,
        "errors": [],
        "restart_required": [],
    }
    assert status["uptime_seconds"] >= 0 and status["version"]

    config = call(http, address, "GET", "/config").json()
    assert config["admin"] == {"listen": "127.0.0.1:0", "token": None}
    assert config["upstreams"]["app"]["targets"][0]["url"] == up.url

    routes = call(http, address, "GET", "/routes").json()
    assert [(row["name"], row["pattern"], row["upstream"]) for row in routes] == [
        ("old", "/old", "app")
    ]
    assert gw.request("GET", "/old").status == 200  # opens a pooled connection
    upstreams = call(http, address, "GET", "/upstreams").json()
    assert [u["name"] for u in upstreams] == ["app"]
    (target,) = upstreams[0]["targets"]
    assert (target["host"], target["port"]) == ("127.0.0.1", up.port)
    assert target["open_connections"] + target["idle_connections"] >= 1

    refused = call(http, address, "POST", "/reload")
    assert refused.status == 403
    assert refused.error()["code"] == "admin_token_required"


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("GET", "/nope", 404, "admin_not_found", None),
        ("POST", "/status", 405, "admin_method_not_allowed", "GET"),
        ("GET", "/reload", 405, "admin_method_not_allowed", "POST"),
    ],
    ids=["unknown-path", "post-to-read", "get-reload"],
)
def test_error_format(
    gateway: Any,
    upstream: Any,
    http: Any,
    method: str,
    path: str,
    status: int,
    code: str,
    allow: str | None,
) -> None:
    gw, _ = start(gateway, upstream, {"token": TOKEN})
    response = call(http, admin_address(gw), method, path, TOKEN)
    assert response.status == status
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert error["message"] and error["request_id"]
    assert response.header("allow") == allow
    assert response.reason == {404: "Not Found", 405: "Method Not Allowed"}[status]


@pytest.mark.parametrize(
    ("path", "status", "has_length"),
    [("/nope", 404, True), ("/status", 405, False)],
    ids=["unknown-path", "read-endpoint"],
)
def test_head_answer_has_no_body(
    gateway: Any, upstream: Any, http: Any, path: str, status: int, has_length: bool
) -> None:
    """RFC 9110 9.3.2; a GET of /status gets 200, so its 405 to HEAD claims no length."""
    gw, _ = start(gateway, upstream, {})
    with http.RawClient(*admin_address(gw)) as client:
        client.send(f"HEAD {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        response = client.read_head()
        assert client.wait_closed(3.0)
        assert bytes(client.buf) == b""
    assert response.status == status
    assert (response.header("content-length") is not None) == has_length


def test_token_auth_and_reload(gateway: Any, upstream: Any, http: Any) -> None:
    gw, up = start(gateway, upstream, {"token": TOKEN})
    address = admin_address(gw)

    for token, path in [
        (None, "/health"),
        ("wrong-token-wrong-token", "/status"),
        (None, "/reload"),
    ]:
        method = "POST" if path == "/reload" else "GET"
        denied = call(http, address, method, path, token)
        assert denied.status == 401, (token, path)
        assert denied.error()["code"] == "admin_unauthorized"
        assert denied.header("www-authenticate").startswith("Bearer")
    assert call(http, address, "GET", "/status", TOKEN).status == 200
    assert call(http, address, "GET", "/config", TOKEN).json()["admin"]["token"] == "***redacted***"

    # A valid changed file: the new route is served.
    config = dict(gw.config)
    config["routes"] = [*config["routes"], gateway.route("new", ["/new"], "app")]
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert gw.request("GET", "/new").status == 404
    ok = call(http, address, "POST", "/reload", TOKEN)
    assert (ok.status, ok.json()) == (200, {"result": "ok", "restart_required": []})
    assert gw.request("GET", "/new").status == 200
    status = call(http, address, "GET", "/status", TOKEN).json()
    assert status["last_reload"]["result"] == "ok" and status["last_reload"]["at"]
    assert status["config_hash"] == hashlib.sha256(gw.config_path.read_bytes()).hexdigest()

    # An invalid file: 422 with the errors; the previous config keeps serving.
    config["routes"] = [gateway.route("broken", ["/broken"], "missing")]
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    failed = call(http, address, "POST", "/reload", TOKEN)
    assert failed.status == 422
    error = failed.error()
    assert error["code"] == "reload_failed"
    assert any("$.routes[0].upstream" in text for text in error["errors"]), error
    assert gw.request("GET", "/new").status == 200
    assert gw.request("GET", "/old").status == 200
    last = call(http, address, "GET", "/status", TOKEN).json()["last_reload"]
    assert last["result"] == "error" and last["errors"] == error["errors"]
    assert len(up.wait_requests(3)) >= 3


@pytest.mark.parametrize(
    ("admin", "ok"),
    [
        ({"listen": "0.0.0.0:9901"}, False),
        ({"listen": "10.1.2.3:9901"}, False),
        ({"listen": "0.0.0.0:9901", "token": TOKEN}, True),
        ({"listen": "127.0.0.1:9901"}, True),
        ({"listen": "localhost:9901"}, True),
    ],
    ids=["any-no-token", "private-no-token", "any-with-token", "loopback", "localhost"],
)
def test_check_admin_address(tmp_path: Path, admin: dict[str, Any], ok: bool) -> None:
    config = {
        "upstreams": {"app": {"targets": [{"url": "http://127.0.0.1:9"}]}},
        "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "app"}],
        "admin": admin,
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "fastgw", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == (0 if ok else 1), result.stderr
    if not ok:
        assert "$.admin.token" in result.stdout + result.stderr


def test_short_token_rejected(tmp_path: Path) -> None:
    config = {
        "upstreams": {"app": {"targets": [{"url": "http://127.0.0.1:9"}]}},
        "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "app"}],
        "admin": {"token": "short"},
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "fastgw", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "$.admin.token" in result.stdout + result.stderr


def test_supervisor_admin(tmp_path: Path, upstream: Any, http: Any) -> None:
    """With workers: 2 the supervisor answers; a reload goes through its validate-then-SIGHUP."""
    up = upstream()
    config = http.gateway_config(
        [http.route("old", ["/old"], "app")],
        {"app": up},
        workers=2,
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # A relative -c path: /status shows it absolute.
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastgw", "run", "-c", "gateway.yaml"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()

    def wait_for(pattern: re.Pattern[str], timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if found := pattern.search(line):
                    return found
            time.sleep(0.05)
        raise AssertionError(f"no {pattern.pattern!r} in the output:\n{''.join(lines)}")

    try:
        found = wait_for(re.compile(r"fastgw listening on http://([0-9.]+):(\d+)"))
        proxy = (found.group(1), int(found.group(2)))
        found = wait_for(ADMIN_RE)
        admin = (found.group(1), int(found.group(2)))

        def get(target: str) -> int:
            with http.RawClient(*proxy) as client:
                return int(client.request("GET", target).status)

        status = call(http, admin, "GET", "/status", TOKEN).json()
        assert len(status["workers"]) == 2 and proc.pid not in status["workers"]
        assert status["config_file"] == str(path)
        assert call(http, admin, "GET", "/ready", TOKEN).json() == {"ready": True}
        upstreams = call(http, admin, "GET", "/upstreams", TOKEN).json()
        assert upstreams == [{"name": "app", "targets": [{"host": "127.0.0.1", "port": up.port}]}]
        assert call(http, admin, "GET", "/config", TOKEN).json()["admin"]["token"] == (
            "***redacted***"
        )

        config["routes"] = [*config["routes"], http.route("new", ["/new"], "app")]
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        ok = call(http, admin, "POST", "/reload", TOKEN)
        assert (ok.status, ok.json()) == (200, {"result": "ok", "restart_required": []})
        routes = call(http, admin, "GET", "/routes", TOKEN).json()
        assert [row["name"] for row in routes] == ["old", "new"]
        deadline = time.monotonic() + 10
        # Each worker reloads on its SIGHUP: every connection must see the new route.
        while not all(get("/new") == 200 for _ in range(8)):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)

        config["routes"] = [http.route("broken", ["/broken"], "missing")]
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        failed = call(http, admin, "POST", "/reload", TOKEN)
        assert failed.status == 422
        assert any("$.routes[0].upstream" in text for text in failed.error()["errors"])
        assert get("/new") == 200 and get("/old") == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(2)
    assert proc.returncode == 0, "".join(lines)
