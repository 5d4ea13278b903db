"""ResponseParser: status line, framing (RFC 9112 6.3), upstream errors (all 502)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw._core import METHOD_IDS, ResponseParser

FRAMING_NONE, FRAMING_LENGTH, FRAMING_CHUNKED, FRAMING_CLOSE, FRAMING_TUNNEL = range(5)


def merge_bodies(events: list[tuple]) -> list[tuple]:
    merged: list[tuple] = []
    for event in events:
        if event[0] == "body" and merged and merged[-1][0] == "body":
            merged[-1] = ("body", merged[-1][1] + event[1])
        else:
            merged.append(event)
    return merged


def feed_whole(data: bytes, method: str = "GET") -> tuple[ResponseParser, list[tuple]]:
    parser = ResponseParser()
    parser.set_request_method(METHOD_IDS[method])
    return parser, merge_bodies(parser.feed(data))


def feed_bytewise(data: bytes, method: str = "GET") -> tuple[ResponseParser, list[tuple]]:
    parser = ResponseParser()
    parser.set_request_method(METHOD_IDS[method])
    events: list[tuple] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
        if events and events[-1][0] == "error":
            break
    return parser, merge_bodies(events)


FEEDERS = pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])

# (id, method, raw response, events then the feed_eof result, framing, keep_alive)
FRAMING: list[tuple[str, str, bytes, list[Any], int, bool]] = [
    (
        "content-length",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        [("head",), ("body", b"hello"), ("done",), "need_more"],
        FRAMING_LENGTH,
        True,
    ),
    (
        "content-length-zero",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        [("head",), ("done",), "need_more"],
        FRAMING_LENGTH,
        True,
    ),
    (
        "chunked",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
        [("head",), ("body", b"hello"), ("done",), "need_more"],
        FRAMING_CHUNKED,
        True,
    ),
    (
        "gzip-then-chunked",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n",
        [("head",), ("body", b"zz"), ("done",), "need_more"],
        FRAMING_CHUNKED,
        True,
    ),
    (
        "te-not-chunked-is-close-delimited",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        [("head",), ("body", b"abc"), "done"],
        FRAMING_CLOSE,
        False,
    ),
    (
        "close-delimited",
        "GET",
        b"HTTP/1.1 200 OK\r\n\r\nuntil close",
        [("head",), ("body", b"until close"), "done"],
        FRAMING_CLOSE,
        False,
    ),
    (
        "close-delimited-http10",
        "GET",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nx",
        [("head",), ("body", b"x"), "done"],
        FRAMING_CLOSE,
        False,
    ),
    (
        "http10-with-length",
        "GET",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        [("head",), ("body", b"x"), ("done",), "need_more"],
        FRAMING_LENGTH,
        False,
    ),
    (
        "connection-close",
        "GET",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
        [("head",), ("body", b"x"), ("done",), "need_more"],
        FRAMING_LENGTH,
        False,
    ),
    (
        "head-ignores-length",
        "HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        [("head",), ("done",), "need_more"],
        FRAMING_NONE,
        True,
    ),
    (
        "head-ignores-chunked",
        "HEAD",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        [("head",), ("done",), "need_more"],
        FRAMING_NONE,
        True,
    ),
    (
        "204",
        "GET",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        [("head",), ("done",), "need_more"],
        FRAMING_NONE,
        True,
    ),
    (
        "304-with-length",
        "GET",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        [("head",), ("done",), "need_more"],
        FRAMING_NONE,
        True,
    ),
    (
        "100-then-200",
        "POST",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        [("head",), ("head",), ("body", b"ok"), ("done",), "need_more"],
        FRAMING_LENGTH,
        True,
    ),
    (
        "103-hints-then-204",
        "GET",
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        [("head",), ("head",), ("done",), "need_more"],
        FRAMING_NONE,
        True,
    ),
    (
        "101-tunnel",
        "GET",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        [("head",), "done"],
        FRAMING_TUNNEL,
        False,
    ),
    (
        "empty-reason",
        "GET",
        b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        [("head",), ("done",), "need_more"],
        FRAMING_LENGTH,
        True,
    ),
    (
        "no-reason-no-space",
        "GET",
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        [("head",), ("done",), "need_more"],
        FRAMING_LENGTH,
        True,
    ),
    (
        "truncated-length",
        "GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        [("head",), ("body", b"hel"), "error"],
        FRAMING_LENGTH,
        True,
    ),
    (
        "truncated-chunked",
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        [("head",), ("body", b"hello"), "error"],
        FRAMING_CHUNKED,
        True,
    ),
    ("truncated-head", "GET", b"HTTP/1.1 200 OK\r\nContent-Le", ["error"], FRAMING_NONE, False),
    (
        "truncated-after-100",
        "GET",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        [("head",), "error"],
        FRAMING_NONE,
        True,
    ),
    ("idle-close", "GET", b"", ["need_more"], FRAMING_NONE, False),
]


@FEEDERS
@pytest.mark.parametrize(
    ("method", "raw", "expected", "framing", "keep_alive"),
    [c[1:] for c in FRAMING],
    ids=[c[0] for c in FRAMING],
)
def test_framing(
    feed: Any, method: str, raw: bytes, expected: list[Any], framing: int, keep_alive: bool
) -> None:
    parser, events = feed(raw, method)
    eof = parser.feed_eof_py()
    assert events + [eof] == expected
    if ("head",) in expected:
        assert parser.framing == framing
        assert parser.keep_alive == keep_alive
    if eof == "error":
        assert parser.error == "upstream_truncated"


# (id, raw response, stable code)
REJECTED: list[tuple[str, bytes, str]] = [
    ("http2", b"HTTP/2.0 200 OK\r\n\r\n", "upstream_bad_status_line"),
    ("http12", b"HTTP/1.2 200 OK\r\n\r\n", "upstream_bad_status_line"),
    ("lowercase", b"http/1.1 200 OK\r\n\r\n", "upstream_bad_status_line"),
    ("garbage", b"<html>hello</html>", "upstream_bad_status_line"),
    ("status-two-digits", b"HTTP/1.1 20 OK\r\n\r\n", "upstream_bad_status_line"),
    ("status-four-digits", b"HTTP/1.1 2000 OK\r\n\r\n", "upstream_bad_status_line"),
    ("status-600", b"HTTP/1.1 600 Odd\r\n\r\n", "upstream_bad_status_line"),
    ("status-099", b"HTTP/1.1 099 Odd\r\n\r\n", "upstream_bad_status_line"),
    ("two-spaces", b"HTTP/1.1  200 OK\r\n\r\n", "upstream_bad_status_line"),
    ("reason-ctl", b"HTTP/1.1 200 O\x01K\r\n\r\n", "upstream_bad_status_line"),
    ("status-bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "upstream_bad_status_line"),
    ("status-bare-cr", b"HTTP/1.1 200 OK\rX", "upstream_bad_status_line"),
    ("header-bare-lf", b"HTTP/1.1 200 OK\r\nX: a\n\r\n", "upstream_bad_header"),
    ("header-ctl", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "upstream_bad_header"),
    ("header-name-space", b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", "upstream_bad_header"),
    ("header-obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "upstream_bad_header"),
    ("header-bad-name", b"HTTP/1.1 200 OK\r\nX[]: a\r\n\r\n", "upstream_bad_header"),
    ("header-leading-ws", b"HTTP/1.1 200 OK\r\n X: a\r\n\r\n", "upstream_bad_header"),
    (
        "too-large",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 40000 + b"\r\n\r\n",
        "upstream_header_too_large",
    ),
    ("too-many", b"HTTP/1.1 200 OK\r\n" + b"X: a\r\n" * 101 + b"\r\n", "upstream_header_too_large"),
    (
        "cl-and-te",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "upstream_bad_framing",
    ),
    (
        "cl-conflict",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "upstream_bad_framing",
    ),
    (
        "cl-list-conflict",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        "upstream_bad_framing",
    ),
    (
        "cl-list-same",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000,1000\r\n\r\n",
        "upstream_bad_framing",
    ),
    (
        "cl-fields-same",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "upstream_bad_framing",
    ),
    ("cl-invalid", b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n", "upstream_bad_framing"),
    ("cl-negative", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "upstream_bad_framing"),
    (
        "te-on-http10",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "upstream_bad_framing",
    ),
    (
        "chunked-twice",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "upstream_bad_framing",
    ),
    (
        "chunked-twice-on-204",
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "upstream_bad_framing",
    ),
    (
        "connection-content-length",
        b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\nx",
        "upstream_bad_framing",
    ),
    (
        "bad-chunk-size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "upstream_bad_chunk",
    ),
    (
        "chunk-size-overflow",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\n",
        "upstream_bad_chunk",
    ),
    (
        "bad-chunk-terminator",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        "upstream_bad_chunk",
    ),
    (
        "chunk-bare-lf",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n",
        "upstream_bad_chunk",
    ),
    (
        "chunk-ext-too-long",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a=" + b"b" * 300 + b"\r\n",
        "upstream_bad_chunk",
    ),
    (
        "bad-trailer",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA B: c\r\n\r\n",
        "upstream_bad_chunk",
    ),
]


@FEEDERS
@pytest.mark.parametrize(("raw", "code"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected(feed: Any, raw: bytes, code: str) -> None:
    parser, events = feed(raw)
    assert events[-1] == ("error", code)
    assert parser.error == code
    assert parser.feed_eof_py() == "error"


@pytest.mark.parametrize("status", [200, 304])
def test_list_content_length_refused_without_a_body(status: int) -> None:
    # A response to HEAD (or a 304) carries no body, but its Content-Length is relayed to
    # the client: a list is refused there too, not passed on.
    raw = b"HTTP/1.1 %d X\r\nContent-Length: 5, 5\r\n\r\n" % status
    parser, events = feed_whole(raw, "HEAD")
    assert events[-1] == ("error", "upstream_bad_framing")


def test_fields_and_forwarding() -> None:
    parser, events = feed_whole(
        b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nConnection: X-Hop, keep-alive\r\n"
        b"X-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\n"
        b"Set-Cookie: b=2\r\nUpgrade: h2\r\nTrailer: x\r\nProxy-Connection: close\r\n\r\nhi"
    )
    assert events == [("head",), ("body", b"hi"), ("done",)]
    assert (parser.status, parser.reason, parser.version) == (201, b"Created", b"1.1")
    assert parser.content_length == 2
    assert parser.forwarded_headers() == [
        (b"Content-Type", b"text/plain"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]
    assert len(parser.headers()) == 10


def test_keep_alive_sequence_of_responses() -> None:
    parser = ResponseParser()
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
    two = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"
    assert parser.feed(one + two) == [
        ("head",),
        ("body", b"a"),
        ("done",),
        ("head",),
        ("body", b"b"),
        ("done",),
    ]
    assert parser.status == 404
    parser.set_request_method(METHOD_IDS["HEAD"])
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n") == [("head",), ("done",)]
    assert parser.content_length == 9


def test_interim_head_is_readable_before_the_final_one() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n") == [("head",)]
    assert parser.status == 100 and parser.framing == FRAMING_NONE
    assert parser.in_message
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == [("head",), ("done",)]
    assert parser.status == 200


def test_tunnel_leaves_the_rest_to_the_caller() -> None:
    parser = ResponseParser()
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    assert parser.feed(head + b"\x81\x02hi") == [("head",), ("body", b"\x81\x02hi")]
    assert parser.framing == FRAMING_TUNNEL


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(FRAMING + [("", "GET", raw, [], 0, False) for _, raw, _ in REJECTED]),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_any_split_gives_the_same_events(case: tuple, cuts: list[int]) -> None:
    _, method, raw, *_ = case
    whole, whole_events = feed_whole(raw, method)
    parser = ResponseParser()
    parser.set_request_method(METHOD_IDS[method])
    events: list[tuple] = []
    start = 0
    for cut in sorted(c for c in cuts if c <= len(raw)) + [len(raw)]:
        events += parser.feed(raw[start:cut])
        start = cut
        if events and events[-1][0] == "error":
            break
    assert merge_bodies(events) == whole_events
    assert parser.feed_eof_py() == whole.feed_eof_py()
