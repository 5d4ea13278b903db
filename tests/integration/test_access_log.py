"""The access log of a real gateway process: one JSON line per request, matching what was sent.

Lines are read back from the file the gateway writes; every line must parse as JSON and the
set of lines must be exactly the requests the test sent (by request id), with their fields.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from fastgw.config.schema import ACCESS_LOG_FIELDS, DEFAULT_ACCESS_LOG_FIELDS


def read_lines(path: Path, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Wait until `path` holds at least `count` lines; return them parsed."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if len(lines) >= count:
            assert text.endswith("\n"), "a line was cut"
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, f"{len(lines)} of {count} lines:\n{text}"
        time.sleep(0.02)


def start(gateway: Any, upstream: Any, tmp_path: Path, **access_log: Any) -> tuple[Any, Path]:
    log = tmp_path / "access.log"
    up = upstream("echo", name="be")
    proc = gateway(
        routes=[
            gateway.route("items", ["/items/{id}"], "be"),
            gateway.route("upload", ["/upload"], "be", methods=["POST"]),
        ],
        upstreams={"be": up},
        access_log={"path": str(log), "flush_interval": "50ms", **access_log},
    )
    return proc, log


def test_lines_match_the_requests_sent(gateway: Any, upstream: Any, tmp_path: Path, http: Any):
    proc, log = start(gateway, upstream, tmp_path)
    sent = {}
    with proc.connect() as client:
        for i in range(20):
            resp = client.request("GET", f"/items/{i}?page={i}", [("X-Request-Id", f"req-{i}")])
            assert resp.status == 200
            sent[f"req-{i}"] = (resp, f"/items/{i}")
        resp = client.request("POST", "/upload", [("X-Request-Id", "up-1")], b"x" * 1000)
        assert resp.status == 200
        missing = client.request("GET", "/nowhere", [("X-Request-Id", "miss-1")])
        assert missing.status == 404
    lines = read_lines(log, 22)
    assert len(lines) == 22
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == {*sent, "up-1", "miss-1"}
    for request_id, (resp, path) in sent.items():
        line = by_id[request_id]
        assert list(line) == list(DEFAULT_ACCESS_LOG_FIELDS)
        assert line["method"] == "GET"
        assert line["path"] == path
        assert line["host"] == "gw.test"
        assert line["route"] == "items"
        assert line["upstream"] == "be"
        assert line["target"] == proc.config["upstreams"]["be"]["targets"][0]["url"][7:]
        assert line["status"] == 200
        assert line["client_ip"] == "127.0.0.1"
        assert line["bytes_out"] > len(resp.body) > 0
        assert line["bytes_in"] > 0
        assert 0 <= line["upstream_ms"] <= line["duration_ms"]
        assert line["trace_id"] is None
        assert line["time"].endswith("Z") and "T" in line["time"]
    upload = by_id["up-1"]
    assert (upload["method"], upload["route"], upload["status"]) == ("POST", "upload", 200)
    assert upload["bytes_in"] > 1000
    miss = by_id["miss-1"]
    assert (miss["route"], miss["upstream"], miss["target"], miss["upstream_ms"]) == (
        None,
        None,
        None,
        None,
    )
    assert miss["status"] == 404


def test_byte_counts_are_what_crossed_the_socket(gateway: Any, upstream: Any, tmp_path: Path):
    proc, log = start(gateway, upstream, tmp_path, fields=["bytes_in", "bytes_out"])
    request = b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello"
    with socket.create_connection((proc.host, proc.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        while len(body) < length:
            body += sock.recv(65536)
    assert read_lines(log, 1) == [
        {"bytes_in": len(request), "bytes_out": len(head) + 4 + len(body)}
    ]


def test_bad_requests_and_client_aborts_are_logged(
    gateway: Any, upstream: Any, tmp_path: Path, http: Any
):
    proc, log = start(gateway, upstream, tmp_path)
    resp, _closed = proc.exchange(b"GET /items/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert resp.status == 400
    bad = read_lines(log, 1)[0]
    assert bad["status"] == 400
    assert bad["route"] is None
    # A client that leaves before the (slow) upstream answers: 499, as nginx logs it.
    slow = upstream("slow", delay=1.0)
    proc2 = gateway(
        routes=[gateway.route("slow", ["/slow"], "s")],
        upstreams={"s": slow},
        access_log={"path": str(tmp_path / "slow.log"), "flush_interval": "50ms"},
    )
    sock = socket.create_connection((proc2.host, proc2.port))
    sock.sendall(http.build_request("GET", "/slow"))
    time.sleep(0.2)
    # A reset, not a half-close: a client that only shut its sending side still gets the
    # response (and the line says 200).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    line = read_lines(tmp_path / "slow.log", 1)[0]
    assert (line["status"], line["route"], line["path"]) == (499, "slow", "/slow")


def test_field_selection_and_query(gateway: Any, upstream: Any, tmp_path: Path):
    proc, log = start(gateway, upstream, tmp_path, fields=["status", "path", "query"])
    assert proc.request("GET", "/items/7?token=abc&x=%22").status == 200
    assert proc.request("GET", "/items/8").status == 200
    lines = read_lines(log, 2)
    assert lines == [
        {"status": 200, "path": "/items/7", "query": "token=abc&x=%22"},
        {"status": 200, "path": "/items/8", "query": None},
    ]


def test_sampling_keeps_errors(gateway: Any, upstream: Any, tmp_path: Path):
    proc, log = start(gateway, upstream, tmp_path, sample=0.0, fields=["status", "path"])
    with proc.connect() as client:
        for i in range(30):
            assert client.request("GET", f"/items/{i}").status == 200
        assert client.request("GET", "/missing").status == 404
    lines = read_lines(log, 1)
    time.sleep(0.2)  # a second flush would bring lines that should not exist
    assert read_lines(log, 1) == lines == [{"status": 404, "path": "/missing"}]


def test_sigusr1_reopens_the_file(gateway: Any, upstream: Any, tmp_path: Path):
    proc, log = start(gateway, upstream, tmp_path, fields=["request_id"])
    assert proc.request("GET", "/items/1", [("X-Request-Id", "before")]).status == 200
    assert read_lines(log, 1) == [{"request_id": "before"}]
    rotated = tmp_path / "access.log.1"
    os.rename(log, rotated)
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not log.exists():
        assert time.monotonic() < deadline, "the file was not reopened"
        time.sleep(0.02)
    assert proc.request("GET", "/items/2", [("X-Request-Id", "after")]).status == 200
    assert read_lines(log, 1) == [{"request_id": "after"}]
    assert read_lines(rotated, 1) == [{"request_id": "before"}]


def test_access_log_to_stdout(tmp_path: Path, upstream: Any, http: Any):
    """The default destination: stdout of the process, one line per request."""
    import subprocess
    import sys

    import yaml

    up = upstream("echo")
    config = http.gateway_config(
        [http.route("items", ["/items/{id}"], "be")],
        {"be": up},
        access_log={"flush_interval": "50ms", "fields": ["path", "status"]},
    )
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastgw", "run", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        # The "listening on" line comes first on stdout, then the access log lines.
        line = proc.stdout.readline()
        assert line.startswith("fastgw listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        for i in range(3):
            resp, _ = http.exchange("127.0.0.1", port, http.build_request("GET", f"/items/{i}"))
            assert resp.status == 200
        lines = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert lines == [{"path": f"/items/{i}", "status": 200} for i in range(3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_config_fields_match_the_core():
    from fastgw import _core

    assert tuple(_core.ACCESS_LOG_FIELDS) == ACCESS_LOG_FIELDS


DEBUG_FIELDS = [
    "code",
    "user_agent",
    "referer",
    "upstream_path",
    "consumer",
    "bytes_sent",
    "auth",
]


def test_debug_fields_are_opt_in():
    assert not set(DEBUG_FIELDS) & set(DEFAULT_ACCESS_LOG_FIELDS)
    # the line order: the default fields in their order, then the opt-in group
    assert [f for f in ACCESS_LOG_FIELDS if f in DEFAULT_ACCESS_LOG_FIELDS] == list(
        DEFAULT_ACCESS_LOG_FIELDS
    )
    assert list(ACCESS_LOG_FIELDS[-len(DEBUG_FIELDS) :]) == DEBUG_FIELDS


@pytest.fixture
def _policies_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.chdir(root)


# Attacker-chosen header bytes: quote, backslash, control bytes, UTF-8, and bytes that are
# not UTF-8 (obs-text), as a client may send them (RFC 9110 5.5).
ODD_VALUES = [
    ("quotes", b'say "hi"', 'say "hi"'),
    ("backslashes", b"a\\b\\", "a\\b\\"),
    ("tab", b"a\tb", "a\tb"),
    ("utf8", "café ☕ 😀".encode(), "café ☕ 😀"),
    ("not-utf8", b"\xff\xfe x \xc3", "\xff\xfe x \xc3"),
    ("overlong-and-surrogate", b"\xc0\xaf\xed\xa0\x80", "\xc0\xaf\xed\xa0\x80"),
    ("json-breakout", b'", "status": 1, "x": "\\', '", "status": 1, "x": "\\'),
]


@pytest.mark.parametrize(
    ("raw", "logged"), [v[1:] for v in ODD_VALUES], ids=[v[0] for v in ODD_VALUES]
)
def test_client_values_are_escaped(
    gateway: Any, upstream: Any, tmp_path: Path, raw: bytes, logged: str
):
    proc, log = start(gateway, upstream, tmp_path, fields=["user_agent", "referer", "status"])
    request = b"GET /items/1 HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: %s\r\nReferer: <%s>\r\n\r\n"
    resp, _ = proc.exchange(request % (raw, raw))
    assert resp.status == 200
    (line,) = read_lines(log, 1)  # read as UTF-8: the line is valid UTF-8
    assert line == {"user_agent": logged, "referer": f"<{logged}>", "status": 200}


def test_control_bytes_in_a_value_are_refused_and_not_logged(
    gateway: Any, upstream: Any, tmp_path: Path
):
    # RFC 9110 5.5: CTLs other than HTAB are refused by the parser; the line has no head.
    proc, log = start(gateway, upstream, tmp_path, fields=["user_agent", "status", "code"])
    resp, _ = proc.exchange(
        b"GET /items/1 HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: a\x01\x7f\r\n\r\n"
    )
    assert resp.status == 400
    assert read_lines(log, 1) == [{"user_agent": None, "status": 400, "code": "bad_header_value"}]


def test_debug_fields_match_what_was_sent(
    gateway: Any, upstream: Any, tmp_path: Path, http: Any, _policies_importable: None
):
    log = tmp_path / "debug.log"
    echo = upstream("echo", name="be")
    reset = upstream("reset", name="reset")
    refused, refused_port = http.refused_port()
    auth = {"tests.policies_for_tests:ApiKeyAuth": {"keys": {"k1": {"sub": "alice"}}}}
    proc = gateway(
        routes=[
            gateway.route("api", ["/api/{*rest}"], "be", strip_prefix="/api", policies=[auth]),
            gateway.route("v2", ["/old/{id}"], "be", rewrite="/v2/items/{id}"),
            gateway.route("reset", ["/reset"], "reset"),
            gateway.route("down", ["/down"], "down"),
        ],
        upstreams={"be": echo, "reset": reset, "down": f"http://127.0.0.1:{refused_port}"},
        access_log={
            "path": str(log),
            "flush_interval": "50ms",
            "fields": ["request_id", "target", "status", *DEBUG_FIELDS],
        },
    )
    be_target = echo.url[len("http://") :]
    with proc.connect() as client:
        seen = echo.bytes_received
        resp = client.request(
            "POST",
            "/api/items/7?q=1",
            [("X-Request-Id", "r-auth"), ("X-Api-Key", "k1"), ("User-Agent", "curl/8.0")],
            b"hello",
        )
        assert resp.status == 200
        api_bytes = echo.bytes_received - seen
        assert client.request("GET", "/old/9", [("X-Request-Id", "r-rewrite")]).status == 200
        assert client.request("GET", "/nowhere", [("X-Request-Id", "r-404")]).status == 404
    assert proc.request("GET", "/reset", [("X-Request-Id", "r-reset")]).status == 502
    assert proc.request("GET", "/down", [("X-Request-Id", "r-down")]).status == 502
    bad, _ = proc.exchange(b"POST /api/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1,1\r\n\r\n")
    assert bad.status == 400
    refused.close()
    lines = read_lines(log, 6)
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["r-auth"] == {
        "request_id": "r-auth",
        "target": be_target,
        "status": 200,
        "code": None,
        "user_agent": "curl/8.0",
        "referer": None,
        "upstream_path": "/items/7",
        "consumer": "alice",
        "bytes_sent": api_bytes,
        # A Python policy that sets request.consumer itself is no authentication result.
        "auth": None,
    }
    assert by_id["r-rewrite"]["upstream_path"] == "/v2/items/9"
    assert by_id["r-rewrite"]["consumer"] is None
    assert by_id["r-404"] | {"request_id": None} == {
        "request_id": None,
        "target": None,
        "status": 404,
        "code": "route_not_found",
        "user_agent": None,
        "referer": None,
        "upstream_path": None,
        "consumer": None,
        "bytes_sent": 0,
        "auth": None,
    }
    # Told apart: the upstream took the request and closed, or could not be reached at all.
    assert by_id["r-reset"]["code"] == "upstream_reset"
    assert by_id["r-reset"]["target"] == reset.url[len("http://") :]
    assert by_id["r-reset"]["bytes_sent"] > 0
    assert by_id["r-down"]["code"] == "upstream_connect_failed"
    assert by_id["r-down"]["target"] == f"127.0.0.1:{refused_port}"
    assert by_id["r-down"]["bytes_sent"] == 0
    (parse_error,) = [line for line in lines if line["status"] == 400]
    assert parse_error["code"] == "bad_content_length"
    assert parse_error["upstream_path"] is None and parse_error["bytes_sent"] == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fields": ["status", "nope"]}, "$.access_log.fields[1]"),
        ({"sample": 2}, "$.access_log.sample"),
        ({"fields": []}, "$.access_log.fields"),
        ({"flush_interval": "soon"}, "$.access_log.flush_interval"),
    ],
    ids=["unknown-field", "sample-above-1", "no-fields", "bad-interval"],
)
def test_bad_settings_name_their_path(settings: dict[str, Any], message: str):
    from fastgw.config import parse_config
    from fastgw.errors import ConfigError

    config = {
        "upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9"}]}},
        "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "u"}],
        "access_log": settings,
    }
    with pytest.raises(ConfigError) as info:
        parse_config(config, "gw.yaml")
    assert message in str(info.value)


def test_unwritable_log_fails_the_start(gateway: Any, upstream: Any, tmp_path: Path):
    from fastgw.config import parse_config
    from fastgw.errors import GatewayError

    config = parse_config(
        {
            "listen": "127.0.0.1:0",
            "upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9"}]}},
            "routes": [{"name": "r", "match": {"paths": ["/"]}, "upstream": "u"}],
            "access_log": {"path": str(tmp_path / "no-such-dir" / "a.log")},
        }
    )
    import asyncio

    from fastgw import Gateway

    async def main() -> None:
        gw = Gateway(config)
        with pytest.raises(GatewayError, match="cannot open access log"):
            await gw.start()
        assert gw.engine is None

    asyncio.run(main())


def test_names_and_odd_requests_stay_valid_json(gateway: Any, upstream: Any, tmp_path: Path):
    log = tmp_path / "odd.log"
    proc = gateway(
        routes=[gateway.route('café "quoted" \\ back', ["/odd"], "be")],
        upstreams={"be": upstream("echo")},
        access_log={"path": str(log), "flush_interval": "50ms", "fields": ["route", "status"]},
    )
    assert proc.request("GET", "/odd").status == 200
    resp, _ = proc.exchange(b"GET /\xff\x01 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    assert resp.status == 400
    resp, _ = proc.exchange(b"\x00\x01garbage\r\n\r\n")
    assert resp.status == 400
    lines = read_lines(log, 3)
    assert lines == [
        {"route": 'café "quoted" \\ back', "status": 200},
        {"route": None, "status": 400},
        {"route": None, "status": 400},
    ]


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "supervisor"])
def test_error_log_as_json_lines(gateway: Any, upstream: Any, tmp_path: Path, workers: int):
    errors = tmp_path / "error.log"
    proc = gateway(
        routes=[gateway.route("items", ["/items/{id}"], "be")],
        upstreams={"be": upstream("echo")},
        workers=workers,
        error_log={"path": str(errors), "format": "json"},
    )
    broken = dict(proc.config, routes=[gateway.route("x", ["/x"], "missing")])
    proc.config_path.write_text(json.dumps(broken))
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        entries = [json.loads(line) for line in errors.read_text().splitlines()]
        failed = [e for e in entries if e["level"] == "error" and "missing" in e["message"]]
        if failed:
            break
        assert time.monotonic() < deadline, entries
        time.sleep(0.05)
    assert set(failed[0]) == {"time", "level", "logger", "message"}
    assert failed[0]["logger"] == "fastgw"
    assert "still serving the previous config" in failed[0]["message"]
    assert proc.request("GET", "/items/1").status == 200
