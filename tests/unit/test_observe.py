"""Metrics merging and exposition, the core's counters, and the access log writer."""

from __future__ import annotations

import json
import os
import select
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastgw import _core
from fastgw.observe.accesslog import AccessLogWriter
from fastgw.observe.metrics import BOUNDS, merge, render


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def test_core_counts_by_route_method_status():
    metrics = _core.CoreMetrics()
    for _ in range(3):
        metrics.observe("a", "GET", 200, 0.0004, "up", 0.0002)
    metrics.observe("a", "POST", 503, 0.02)
    metrics.observe("", "GET", 404, 0.00001)
    metrics.observe("b", "BREW", 200, 20.0)  # unknown method, beyond the last bound
    snap = metrics.snapshot()
    assert sorted(snap["requests"]) == [
        ["", "GET", 404, 1],
        ["a", "GET", 200, 3],
        ["a", "POST", 503, 1],
        ["b", "OTHER", 200, 1],
    ]
    a = snap["duration"]["a"]
    assert len(a) == len(BOUNDS) + 2  # buckets, +Inf, sum
    assert a[0] == 3  # 0.4 ms <= 0.5 ms
    assert a[BOUNDS.index(0.025)] == 1
    assert a[-1] == pytest.approx(3 * 0.0004 + 0.02)
    assert snap["duration"]["b"][len(BOUNDS)] == 1  # +Inf
    assert snap["upstream_duration"] == {"up": [3] + [0] * len(BOUNDS) + [pytest.approx(0.0006)]}


def test_many_series_grow_the_table():
    metrics = _core.CoreMetrics()
    for route in range(300):
        for status in (200, 404, 500):
            metrics.observe(f"r{route}", "GET", status, 0.001)
    rows = metrics.snapshot()["requests"]
    assert len(rows) == 900 and all(row[3] == 1 for row in rows)


def test_merge_sums_workers_and_ands_health():
    one = _core.CoreMetrics()
    two = _core.CoreMetrics()
    one.observe("a", "GET", 200, 0.001)
    two.observe("a", "GET", 200, 0.001)
    two.observe("a", "GET", 500, 0.001)
    first = {**one.snapshot(), "targets": [["u", "t:1", True, 1, 0]]}
    second = {**two.snapshot(), "targets": [["u", "t:1", False, 2, 1]]}
    total = merge([first, second])
    assert total["requests"] == [["a", "GET", 200, 2], ["a", "GET", 500, 1]]
    assert total["duration"]["a"][BOUNDS.index(0.001)] == 3
    assert total["targets"] == [["u", "t:1", False, 3, 1]]


def test_render_parses_as_prometheus_text():
    metrics = _core.CoreMetrics()
    metrics.observe("a", "GET", 200, 0.003, "up", 0.002)
    metrics.observe("a", "GET", 200, 0.3, "up", 0.2)
    text = render(merge([metrics.snapshot()]), reloads={"ok": 2, "error": 1}, workers=2)
    got = samples(text)
    assert (
        got[("fastgw_http_requests_total", (("method", "GET"), ("route", "a"), ("status", "200")))]
        == 2
    )
    assert (
        got[("fastgw_http_request_duration_seconds_bucket", (("le", "0.005"), ("route", "a")))] == 1
    )
    assert (
        got[("fastgw_http_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "a")))] == 2
    )
    assert got[("fastgw_http_request_duration_seconds_count", (("route", "a"),))] == 2
    assert got[("fastgw_upstream_request_duration_seconds_count", (("upstream", "up"),))] == 2
    assert got[("fastgw_config_reloads_total", (("result", "error"),))] == 1
    assert got[("fastgw_workers", ())] == 2


def test_access_log_fields_and_sampling():
    lines: list[bytes] = []
    log = _core.AccessLog(lines.append, fields=["status"], flush_bytes=1 << 20)
    log.write_line({"status": 200})
    assert lines == []  # buffered until flushed
    log.flush()
    assert lines == [b'{"status":200}\n']
    with pytest.raises(ValueError, match="unknown access log field"):
        _core.AccessLog(lines.append, fields=["nope"])
    with pytest.raises(ValueError, match="between 0 and 1"):
        _core.AccessLog(lines.append, sample=1.5)


def test_writer_appends_to_a_file_and_reopens(tmp_path: Path):
    path = tmp_path / "a.log"
    writer = AccessLogWriter(str(path))
    writer.submit(b'{"n":1}\n')
    os.rename(path, tmp_path / "a.log.1")
    writer.reopen()
    writer.submit(b'{"n":2}\n')
    writer.close()
    assert (tmp_path / "a.log.1").read_bytes() == b'{"n":1}\n'
    assert path.read_bytes() == b'{"n":2}\n'


def test_writer_cuts_pipe_writes_at_lines(tmp_path: Path):
    """Several workers share one stdout pipe: no write may end inside a line."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader_data = bytearray()
    chunks: list[bytes] = []
    opened = threading.Event()

    def read() -> None:
        with open(fifo, "rb", buffering=0) as stream:
            opened.set()
            while chunk := stream.read(65536):
                chunks.append(chunk)
                reader_data.extend(chunk)

    thread = threading.Thread(target=read)
    thread.start()
    writer = AccessLogWriter(str(fifo))
    opened.wait(5)
    lines = [json.dumps({"i": i, "pad": "x" * (i % 97)}).encode() + b"\n" for i in range(3000)]
    writer.submit(b"".join(lines))
    writer.close()
    thread.join(5)
    assert bytes(reader_data) == b"".join(lines)
    assert len(reader_data) > select.PIPE_BUF
    # Writes of at most PIPE_BUF are atomic, so every read ends where some write ended.
    assert all(chunk.endswith(b"\n") for chunk in chunks)


def test_writer_drops_and_counts_beyond_its_bound(tmp_path: Path):
    read_fd, write_fd = os.pipe()  # nobody reads: the writer thread blocks on a full pipe
    writer = AccessLogWriter(str(tmp_path / "x.log"), max_pending=1000)
    writer._fd, writer._pipe, writer._owns_fd = write_fd, True, True
    line = b"y" * 99 + b"\n"
    for _ in range(2000):  # 200 KB: more than the pipe holds plus the bound
        writer.submit(line)
    assert writer.dropped_lines > 0
    os.close(read_fd)  # the blocked write fails; close() returns
    writer.close(timeout=5)
