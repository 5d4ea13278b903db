"""Parser micro-benchmarks: one ~250-byte GET with 8 header fields, head through end.

`test_fastgw_c_loop` runs the parser C_LOOP_ROUNDS times in a C loop (no Python call per
request): its times are for C_LOOP_ROUNDS parses, and `extra_info["ns_per_parse"]` holds the
per-parse figure to compare with the per-request budget. The other benches include one Python
call per parse (httptools and h11 cannot be driven otherwise).
"""

from __future__ import annotations

import h11
import httptools
import pytest

from fastgw._core import RequestParser, _bench_parse

REQUEST = (
    b"GET /api/v1/users/12345/orders?limit=10 HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: curl/8\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Encoding: gzip\r\n"
    b"Accept-Language: en-US\r\n"
    b"Authorization: Bearer ab12\r\n"
    b"X-Request-ID: 7f9c2a4e-1d3b\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
C_LOOP_ROUNDS = 20000


def test_request_shape() -> None:
    assert 240 <= len(REQUEST) <= 260
    assert REQUEST.count(b"\r\n") == 10


def test_fastgw_c_loop(benchmark: pytest.FixtureRequest) -> None:
    # each benchmark round parses the request C_LOOP_ROUNDS times; the result is ns/parse
    ns_per_parse = benchmark(_bench_parse, REQUEST, C_LOOP_ROUNDS)
    benchmark.extra_info["ns_per_parse"] = ns_per_parse
    assert ns_per_parse > 0


def test_fastgw_feed(benchmark: pytest.FixtureRequest) -> None:
    parser = RequestParser()
    events = benchmark(parser.feed, REQUEST)
    assert events == [("head",), ("done",)]


class _Callbacks:
    __slots__ = ("url", "headers", "done")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.done = True


class _Silent:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def on_message_complete(self) -> None:
        self.done = True


def test_httptools_without_callbacks(benchmark: pytest.FixtureRequest) -> None:
    sink = _Silent()
    parser = httptools.HttpRequestParser(sink)
    benchmark(parser.feed_data, REQUEST)
    assert sink.done


def test_httptools_with_header_callbacks(benchmark: pytest.FixtureRequest) -> None:
    sink = _Callbacks()
    parser = httptools.HttpRequestParser(sink)

    def parse() -> None:
        sink.headers.clear()
        parser.feed_data(REQUEST)

    benchmark(parse)
    assert sink.done and len(sink.headers) == 8 and sink.url.startswith(b"/api")


def test_h11(benchmark: pytest.FixtureRequest) -> None:
    def parse() -> h11.Request:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(REQUEST)
        request = conn.next_event()
        assert isinstance(conn.next_event(), h11.EndOfMessage)
        return request

    request = benchmark(parse)
    assert isinstance(request, h11.Request) and len(request.headers) == 8
