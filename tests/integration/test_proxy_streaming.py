"""Bodies are streamed, never buffered whole: 100 MiB each way through the gateway while
the far side deliberately stalls, with the gateway's resident memory sampled throughout."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SIZE = 100 * 1024 * 1024
RSS_BUDGET = 64 * 1024 * 1024  # growth over the warmed-up baseline
STALL = 1.0  # seconds the receiving side waits before reading: buffers must fill and stop


class RssSampler:
    """Samples the gateway's VmRSS every 20 ms in a thread while a transfer runs."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.gw.rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def start_gateway(upstream_server: Any, gateway: Any, http: Any) -> tuple[Any, int]:
    gw = gateway(
        routes=[http.route("all", ["/{*rest}"], "up")],
        upstreams={"up": upstream_server},
        limits={"max_body_bytes": 2 * SIZE},
    )
    # warm up with small echoes: pools, buffers and lazily imported code join the baseline
    behaviour, opts = upstream_server.behaviour, upstream_server.opts
    upstream_server.behaviour, upstream_server.opts = "echo", {}
    try:
        for _ in range(3):
            assert gw.request("POST", "/warm", body=b"w" * 200_000).status == 200
    finally:
        upstream_server.behaviour, upstream_server.opts = behaviour, opts
    return gw, gw.rss_bytes()


def test_upload_100mib_is_streamed(upstream, gateway, http) -> None:
    up = upstream("echo", read_delay=STALL)
    gw, baseline = start_gateway(up, gateway, http)
    digest = hashlib.sha256()
    started = time.monotonic()
    with gw.connect(timeout=20) as client, RssSampler(gw) as rss:
        client.send(http.build_request("POST", "/upload", [("Content-Length", str(SIZE))]))
        for piece in http.pattern_bytes(SIZE):
            digest.update(piece)
            client.send(piece)
        resp = client.read_final()
    elapsed = time.monotonic() - started
    seen = resp.json()
    assert resp.status == 200
    assert seen["body_len"] == SIZE
    assert seen["body_sha256"] == digest.hexdigest()
    growth = rss.peak - baseline
    assert growth < RSS_BUDGET, f"RSS grew {growth / 2**20:.1f} MiB during the upload"
    assert elapsed < 30


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_download_100mib_is_streamed(upstream, gateway, http, framing: str) -> None:
    up = upstream("big", size=SIZE, chunked=framing == "chunked")
    gw, baseline = start_gateway(up, gateway, http)
    digest = hashlib.sha256()
    received = 0

    def sink(piece: bytes) -> None:
        nonlocal received
        received += len(piece)
        digest.update(piece)

    started = time.monotonic()
    with gw.connect(timeout=20) as client, RssSampler(gw) as rss:
        client.send(http.build_request("GET", "/download"))
        time.sleep(STALL)  # the upstream keeps writing; the gateway must stop reading it
        resp = client.read_response(sink=sink)
    elapsed = time.monotonic() - started
    assert resp.status == 200
    assert received == SIZE
    assert digest.hexdigest() == http.pattern_sha256(SIZE)
    growth = rss.peak - baseline
    assert growth < RSS_BUDGET, f"RSS grew {growth / 2**20:.1f} MiB during the download"
    assert elapsed < 30
