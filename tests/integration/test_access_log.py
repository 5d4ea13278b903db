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
