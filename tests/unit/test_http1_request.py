"""RequestParser: every rejection rule of docs/strictness.md and the accepted forms.

Each case runs twice: the whole message in one feed, and one byte per feed. Both must give
the same events and the same stable error code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fastgw._core import ERROR_TABLE, RequestParser

FRAMING_NONE, FRAMING_LENGTH, FRAMING_CHUNKED = 0, 1, 2
DOCS = Path(__file__).resolve().parents[2] / "docs" / "strictness.md"


def merge_bodies(events: list[tuple]) -> list[tuple]:
    merged: list[tuple] = []
    for event in events:
        if event[0] == "body" and merged and merged[-1][0] == "body":
            merged[-1] = ("body", merged[-1][1] + event[1])
        else:
            merged.append(event)
    return merged


def feed_whole(data: bytes, **limits: Any) -> tuple[RequestParser, list[tuple]]:
    parser = RequestParser(**limits)
    return parser, merge_bodies(parser.feed(data))


def feed_bytewise(data: bytes, **limits: Any) -> tuple[RequestParser, list[tuple]]:
    parser = RequestParser(**limits)
    events: list[tuple] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
        if events and events[-1][0] == "error":
            break
    return parser, merge_bodies(events)


FEEDERS = pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])


def req(head: bytes, body: bytes = b"") -> bytes:
    return head.replace(b"\n", b"\r\n") + body


H = b"Host: example.com\r\n"

# (id, raw request, expected stable code, parser limits)
REJECTED: list[tuple[str, bytes, str, dict[str, int]]] = [
    # request line
    ("method-bad-token", b"GE(T / HTTP/1.1\r\n" + H + b"\r\n", "bad_method", {}),
    ("method-at-sign", b"G@T / HTTP/1.1\r\n" + H + b"\r\n", "bad_method", {}),
    ("method-non-ascii", b"G\xc9T / HTTP/1.1\r\n" + H + b"\r\n", "bad_method", {}),
    ("leading-space", b" GET / HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", {}),
    ("two-spaces-after-method", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", {}),
    ("tab-after-method", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", {}),
    ("two-spaces-before-version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n", "bad_version", {}),
    ("space-after-version", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", "bad_version", {}),
    ("http09", b"GET /\r\n\r\n", "bad_request_line", {}),
    ("no-target", b"GET\r\n\r\n", "bad_request_line", {}),
    ("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", "bad_version", {}),
    ("version-short", b"GET / HTTP/1\r\n" + H + b"\r\n", "bad_version", {}),
    ("version-long", b"GET / HTTP/1.10\r\n" + H + b"\r\n", "bad_version", {}),
    ("version-empty", b"GET / \r\n" + H + b"\r\n", "bad_version", {}),
    ("http2", b"GET / HTTP/2.0\r\n" + H + b"\r\n", "version_not_supported", {}),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "version_not_supported", {}),
    ("http12", b"GET / HTTP/1.2\r\n" + H + b"\r\n", "version_not_supported", {}),
    ("http30", b"GET / HTTP/3.0\r\n" + H + b"\r\n", "version_not_supported", {}),
    (
        "connect",
        b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n",
        "method_not_implemented",
        {},
    ),
    (
        "uri-too-long",
        b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n" + H + b"\r\n",
        "uri_too_long",
        {"max_target_bytes": 32},
    ),
    ("uri-too-long-unterminated", b"GET /" + b"a" * 40, "uri_too_long", {"max_target_bytes": 32}),
    # request-target
    ("target-ctl", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("target-del", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("target-non-ascii", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("target-tab", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("target-fragment", b"GET /a#top HTTP/1.1\r\n" + H + b"\r\n", "fragment_in_target", {}),
    (
        "target-fragment-in-query",
        b"GET /a?b#c HTTP/1.1\r\n" + H + b"\r\n",
        "fragment_in_target",
        {},
    ),
    ("asterisk-with-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("asterisk-with-suffix", b"OPTIONS *x HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("relative-target", b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("authority-form", b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("absolute-ftp", b"GET ftp://a/b HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("absolute-no-authority", b"GET http:// HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("absolute-userinfo", b"GET http://u@a/ HTTP/1.1\r\n" + H + b"\r\n", "bad_target", {}),
    ("absolute-empty-host", b"GET http:///a HTTP/1.1\r\n" + H + b"\r\n", "bad_host", {}),
    ("absolute-bad-port", b"GET http://a:x/ HTTP/1.1\r\n" + H + b"\r\n", "bad_host", {}),
    # path
    ("encoded-slash", b"GET /a%2Fb HTTP/1.1\r\n" + H + b"\r\n", "encoded_separator", {}),
    ("encoded-slash-lower", b"GET /a%2fb HTTP/1.1\r\n" + H + b"\r\n", "encoded_separator", {}),
    ("encoded-backslash", b"GET /a%5Cb HTTP/1.1\r\n" + H + b"\r\n", "encoded_separator", {}),
    ("encoded-backslash-lower", b"GET /a%5cb HTTP/1.1\r\n" + H + b"\r\n", "encoded_separator", {}),
    ("encoded-nul", b"GET /a%00b HTTP/1.1\r\n" + H + b"\r\n", "encoded_separator", {}),
    ("percent-alone", b"GET /a% HTTP/1.1\r\n" + H + b"\r\n", "bad_percent_encoding", {}),
    ("percent-one-digit", b"GET /a%4 HTTP/1.1\r\n" + H + b"\r\n", "bad_percent_encoding", {}),
    ("percent-not-hex", b"GET /a%zzb HTTP/1.1\r\n" + H + b"\r\n", "bad_percent_encoding", {}),
    ("percent-half-hex", b"GET /a%4gb HTTP/1.1\r\n" + H + b"\r\n", "bad_percent_encoding", {}),
    ("raw-backslash", b"GET /a\\b HTTP/1.1\r\n" + H + b"\r\n", "backslash_in_path", {}),
    ("dotdot-above-root", b"GET /.. HTTP/1.1\r\n" + H + b"\r\n", "path_above_root", {}),
    ("dotdot-above-root-deep", b"GET /a/../../b HTTP/1.1\r\n" + H + b"\r\n", "path_above_root", {}),
    (
        "encoded-dotdot-above-root",
        b"GET /%2e%2E/etc HTTP/1.1\r\n" + H + b"\r\n",
        "path_above_root",
        {},
    ),
    (
        "absolute-dotdot-above-root",
        b"GET http://a/../x HTTP/1.1\r\n" + H + b"\r\n",
        "path_above_root",
        {},
    ),
    # line endings
    ("bare-lf-leading", b"\nGET / HTTP/1.1\r\n" + H + b"\r\n", "bare_lf", {}),
    ("bare-lf-request-line", b"GET / HTTP/1.1\n" + H + b"\r\n", "bare_lf", {}),
    ("bare-lf-in-method", b"GET\n", "bare_lf", {}),
    ("bare-lf-http09", b"GET /\n\n", "bare_lf", {}),
    ("bare-lf-field", b"GET / HTTP/1.1\r\nHost: a\n\r\n", "bare_lf", {}),
    ("bare-lf-in-name", b"GET / HTTP/1.1\r\nHost\n\r\n", "bare_lf", {}),
    ("bare-lf-end", b"GET / HTTP/1.1\r\n" + H + b"\n", "bare_lf", {}),
    ("all-bare-lf", b"GET / HTTP/1.1\nHost: a\n\n", "bare_lf", {}),
    ("bare-cr-request-line", b"GET / HTTP/1.1\rHost: a\r\n\r\n", "bare_cr", {}),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\nX: a\rb\r\n" + H + b"\r\n", "bare_cr", {}),
    ("bare-cr-end", b"GET / HTTP/1.1\r\n" + H + b"\rX", "bare_cr", {}),
    ("bare-cr-leading", b"\rGET / HTTP/1.1\r\n" + H + b"\r\n", "bare_cr", {}),
    ("cr-in-target", b"GET /a\rb HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", {}),
    # field syntax
    ("name-space-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "header_name_whitespace", {}),
    ("name-tab-colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", "header_name_whitespace", {}),
    (
        "name-inner-space",
        b"GET / HTTP/1.1\r\n" + H + b"X A: 1\r\n\r\n",
        "header_name_whitespace",
        {},
    ),
    ("obs-fold-space", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n  more\r\n\r\n", "obs_fold", {}),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n\tmore\r\n\r\n", "obs_fold", {}),
    ("leading-ws-first-field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", "leading_whitespace", {}),
    ("leading-tab-first-field", b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", "leading_whitespace", {}),
    ("empty-name", b"GET / HTTP/1.1\r\n" + H + b": a\r\n\r\n", "bad_header_name", {}),
    ("name-paren", b"GET / HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n", "bad_header_name", {}),
    ("name-nul", b"GET / HTTP/1.1\r\n" + H + b"X\x00A: 1\r\n\r\n", "bad_header_name", {}),
    ("name-non-ascii", b"GET / HTTP/1.1\r\n" + H + b"X\xffA: 1\r\n\r\n", "bad_header_name", {}),
    ("name-without-colon", b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", "bad_header_name", {}),
    ("value-nul", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", "bad_header_value", {}),
    ("value-ctl", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", "bad_header_value", {}),
    ("value-del", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", "bad_header_value", {}),
    ("value-escape", b"GET / HTTP/1.1\r\n" + H + b"X-A: \x1b[0m\r\n\r\n", "bad_header_value", {}),
    (
        "header-too-large",
        b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 100 + b"\r\n\r\n",
        "header_too_large",
        {"max_header_bytes": 64},
    ),
    (
        "header-too-large-unterminated",
        b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 100,
        "header_too_large",
        {"max_header_bytes": 64},
    ),
    (
        "too-many-headers",
        b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\n\r\n",
        "too_many_headers",
        {"max_headers": 2},
    ),
    # host
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", "missing_host", {}),
    ("missing-host-absolute", b"GET http://a/ HTTP/1.1\r\n\r\n", "missing_host", {}),
    ("duplicate-host", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", "duplicate_host", {}),
    ("duplicate-host-case", b"GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n", "duplicate_host", {}),
    ("empty-host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", "bad_host", {}),
    ("host-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "bad_host", {}),
    ("host-comma", b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", "bad_host", {}),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", "bad_host", {}),
    ("host-percent", b"GET / HTTP/1.1\r\nHost: a%2eb\r\n\r\n", "bad_host", {}),
    ("host-port-alpha", b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", "bad_host", {}),
    ("host-port-empty", b"GET / HTTP/1.1\r\nHost: a:\r\n\r\n", "bad_host", {}),
    ("host-port-too-long", b"GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", "bad_host", {}),
    ("host-port-too-big", b"GET / HTTP/1.1\r\nHost: a:70000\r\n\r\n", "bad_host", {}),
    ("host-only-port", b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", "bad_host", {}),
    ("host-ipv6-unclosed", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "bad_host", {}),
    ("host-ipv6-bad-char", b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", "bad_host", {}),
    ("host-ipv6-junk", b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", "bad_host", {}),
    ("host-ipv6-empty", b"GET / HTTP/1.1\r\nHost: []\r\n\r\n", "bad_host", {}),
    ("host-too-long", b"GET / HTTP/1.1\r\nHost: " + b"a" * 256 + b"\r\n\r\n", "bad_host", {}),
    (
        "absolute-with-bad-host-header",
        b"GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n",
        "bad_host",
        {},
    ),
    # framing
    (
        "cl-and-te",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "content_length_and_transfer_encoding",
        {},
    ),
    (
        "te-and-cl",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "content_length_and_transfer_encoding",
        {},
    ),
    (
        "cl-plus",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-minus",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-hex",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-inner-space",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-empty",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-trailing-comma",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5,\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-overflow",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-list-differs",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-list-same",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000,1000\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-list-same-ows",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
        "bad_content_length",
        {},
    ),
    (
        "cl-leading-comma",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: ,5\r\n\r\n",
        "bad_content_length",
        {},
    ),
    (
        "cl-fields-differ",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "duplicate_content_length",
        {},
    ),
    (
        "cl-fields-same",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
        "duplicate_content_length",
        {},
    ),
    (
        "cl-field-empty-and-number",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\nContent-Length: 3\r\n\r\nabc",
        "duplicate_content_length",
        {},
    ),
    (
        "cl-too-large",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n",
        "body_too_large",
        {"max_body_bytes": 10},
    ),
    (
        "chunked-too-large",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n",
        "body_too_large",
        {"max_body_bytes": 10},
    ),
    (
        "te-on-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "transfer_encoding_on_http10",
        {},
    ),
    (
        "te-gzip",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-chunked-then-gzip",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-chunked-twice",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-chunked-two-fields",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-identity",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-chunked-param",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked;a=b\r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-xchunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-empty",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n",
        "transfer_encoding_not_chunked",
        {},
    ),
    (
        "te-gzip-chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        "unsupported_transfer_coding",
        {},
    ),
    (
        "connection-host",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: host\r\n\r\n",
        "connection_nominates_framing",
        {},
    ),
    (
        "connection-content-length",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: close, Content-Length\r\n\r\n",
        "connection_nominates_framing",
        {},
    ),
    (
        "connection-transfer-encoding",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: Transfer-Encoding\r\n\r\n",
        "connection_nominates_framing",
        {},
    ),
    (
        "expect-unknown",
        b"POST / HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\n\r\n",
        "expectation_failed",
        {},
    ),
    # chunked body
    (
        "chunk-size-0x",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-size-leading-space",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-size-plus",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-size-empty",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-size-not-hex",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\ng\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-size-trailing-space",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-size-17-digits",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"00000000000000005\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-size-overflow",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        "bad_chunk_size",
        {"max_body_bytes": 2**63 - 1},
    ),
    (
        "chunk-ext-empty-name",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-ext-empty-value",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;a=\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-ext-ctl",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
        "bad_chunk_size",
        {},
    ),
    (
        "chunk-ext-too-long",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;a=" + b"x" * 300 + b"\r\nhello\r\n0\r\n\r\n",
        "chunk_extension_too_long",
        {},
    ),
    (
        "chunk-ext-too-long-total",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"1;a="
        + b"x" * 100
        + b"\r\nh\r\n"
        + b"1;a="
        + b"x" * 100
        + b"\r\nh\r\n"
        + b"1;a="
        + b"x" * 100
        + b"\r\nh\r\n0\r\n\r\n",
        "chunk_extension_too_long",
        {},
    ),
    (
        "chunk-data-no-crlf",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
        "bad_chunk_terminator",
        {},
    ),
    (
        "chunk-data-lf-only",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        "bad_chunk_terminator",
        {},
    ),
    (
        "chunk-data-cr-only",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r0\r\n\r\n",
        "bad_chunk_terminator",
        {},
    ),
    (
        "chunk-size-bare-lf",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        "bare_lf",
        {},
    ),
    (
        "chunk-size-bare-cr",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n",
        "bare_cr",
        {},
    ),
    (
        "chunk-ext-bare-lf",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n",
        "bare_lf",
        {},
    ),
    (
        "trailer-bad-name",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nBad Name: x\r\n\r\n",
        "bad_trailer",
        {},
    ),
    (
        "trailer-obs-fold",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n",
        "bad_trailer",
        {},
    ),
    (
        "trailer-ctl",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\x00\r\n\r\n",
        "bad_trailer",
        {},
    ),
    (
        "trailer-too-large",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"0\r\nX-T: " + b"a" * 9000 + b"\r\n\r\n",
        "bad_trailer",
        {},
    ),
    (
        "trailer-bare-lf",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\n\r\n",
        "bare_lf",
        {},
    ),
    (
        "trailer-end-bare-cr",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\rX",
        "bare_cr",
        {},
    ),
]


@FEEDERS
@pytest.mark.parametrize(
    ("raw", "code", "limits"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_rejected(feed: Any, raw: bytes, code: str, limits: dict[str, int]) -> None:
    parser, events = feed(raw, **limits)
    assert events[-1] == ("error", code)
    assert parser.error == code
    # the parser stays in the error state
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == [("error", code)]


def test_rejection_codes_are_in_error_table() -> None:
    stable = {entry[1] for entry in ERROR_TABLE.values()}
    assert {c[2] for c in REJECTED} <= stable


# (id, raw request, expected attributes; "body" is the concatenated body)
ACCEPTED: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "simple-get",
        b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        {
            "method": b"GET",
            "method_id": 1,
            "path": b"/a/b",
            "query": b"x=1&y=2",
            "hostname": b"example.com",
            "host": b"Example.COM:8080",
            "version": b"1.1",
            "framing": FRAMING_NONE,
            "keep_alive": True,
            "body": b"",
        },
    ),
    ("empty-query", b"GET /a? HTTP/1.1\r\n" + H + b"\r\n", {"path": b"/a", "query": b""}),
    ("no-query", b"GET /a HTTP/1.1\r\n" + H + b"\r\n", {"query": None}),
    (
        "query-raw",
        b"GET /a?b=%2F&c=..\\/ HTTP/1.1\r\n" + H + b"\r\n",
        {"path": b"/a", "query": b"b=%2F&c=..\\/"},
    ),
    (
        "other-method",
        b"PROPFIND / HTTP/1.1\r\n" + H + b"\r\n",
        {"method": b"PROPFIND", "method_id": 0},
    ),
    (
        "lowercase-method-is-other",
        b"get / HTTP/1.1\r\n" + H + b"\r\n",
        {"method": b"get", "method_id": 0},
    ),
    ("all-methods-delete", b"DELETE /x HTTP/1.1\r\n" + H + b"\r\n", {"method_id": 5}),
    (
        "options-asterisk",
        b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
        {"method_id": 7, "path": b"*", "query": None},
    ),
    (
        "leading-empty-lines",
        b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
        {"method": b"GET", "path": b"/"},
    ),
    (
        "http10-no-host",
        b"GET / HTTP/1.0\r\n\r\n",
        {"version": b"1.0", "hostname": b"", "host": b"", "keep_alive": False},
    ),
    (
        "http10-keep-alive",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        {"keep_alive": True},
    ),
    (
        "http11-close",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        {"keep_alive": False},
    ),
    (
        "absolute-form",
        b"GET http://Api.Example.com:81/p/./q?z HTTP/1.1\r\nHost: other\r\n\r\n",
        {
            "hostname": b"api.example.com",
            "host": b"Api.Example.com:81",
            "path": b"/p/q",
            "query": b"z",
            "absolute_form": True,
        },
    ),
    (
        "absolute-form-https-upper",
        b"GET HTTPS://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n",
        {"hostname": b"a.b", "path": b"/", "query": None},
    ),
    (
        "absolute-form-query-only",
        b"GET http://a.b?x HTTP/1.1\r\nHost: a.b\r\n\r\n",
        {"path": b"/", "query": b"x"},
    ),
    (
        "absolute-form-http10-no-host",
        b"GET http://a.b/c HTTP/1.0\r\n\r\n",
        {"hostname": b"a.b", "host": b"a.b"},
    ),
    (
        "host-ipv4-port",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        {"hostname": b"127.0.0.1"},
    ),
    ("host-ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", {"hostname": b"[::1]"}),
    ("host-ows", b"GET / HTTP/1.1\r\nHost:   a.b  \r\n\r\n", {"hostname": b"a.b", "host": b"a.b"}),
    (
        "value-ows-trimmed",
        b"GET / HTTP/1.1\r\n" + H + b"X-A: \t v  w \t\r\n\r\n",
        {"headers": [(b"Host", b"example.com"), (b"X-A", b"v  w")]},
    ),
    (
        "value-empty",
        b"GET / HTTP/1.1\r\n" + H + b"X-A:\r\nX-B: \r\n\r\n",
        {"headers": [(b"Host", b"example.com"), (b"X-A", b""), (b"X-B", b"")]},
    ),
    (
        "value-obs-text-and-tab",
        b"GET / HTTP/1.1\r\n" + H + b"X-A: caf\xc3\xa9\tx\r\n\r\n",
        {"headers": [(b"Host", b"example.com"), (b"X-A", b"caf\xc3\xa9\tx")]},
    ),
    (
        "name-tchars",
        b"GET / HTTP/1.1\r\n" + H + b"!#$%&'*+-.^_`|~09az: 1\r\n\r\n",
        {"headers": [(b"Host", b"example.com"), (b"!#$%&'*+-.^_`|~09az", b"1")]},
    ),
    (
        "content-length",
        b"POST /u HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
        {"framing": FRAMING_LENGTH, "content_length": 5, "body": b"hello"},
    ),
    (
        "content-length-zero",
        b"POST /u HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
        {"framing": FRAMING_LENGTH, "content_length": 0, "body": b""},
    ),
    (
        "content-length-leading-zeros",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 003\r\n\r\nabc",
        {"content_length": 3, "body": b"abc"},
    ),
    (
        "content-length-at-limit",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n" + b"0123456789",
        {"body": b"0123456789", "limits": {"max_body_bytes": 10}},
    ),
    (
        "chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        {"framing": FRAMING_CHUNKED, "content_length": -1, "body": b"hello world"},
    ),
    (
        "chunked-uppercase-te-and-hex",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"transfer-encoding: CHUNKED\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
        {"framing": FRAMING_CHUNKED, "body": b"0123456789"},
    ),
    (
        "chunked-list-empty-elements",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: , chunked\r\n\r\n0\r\n\r\n",
        {"framing": FRAMING_CHUNKED},
    ),
    (
        "chunked-extensions",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b'5;a=b;c="d \\" e" ;f\r\nhello\r\n0;last\r\n\r\n',
        {"body": b"hello"},
    ),
    (
        "chunked-leading-zeros",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"0005\r\nhello\r\n000\r\n\r\n",
        {"body": b"hello"},
    ),
    (
        "chunked-trailers",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n",
        {
            "body": b"hello",
            "headers": [(b"Host", b"example.com"), (b"Transfer-Encoding", b"chunked")],
        },
    ),
    (
        "chunked-at-limit",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
        {"body": b"helloworld", "limits": {"max_body_bytes": 10}},
    ),
    (
        "expect-continue",
        b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 1\r\n\r\nx",
        {"expect_continue": True, "body": b"x"},
    ),
    (
        "expect-continue-http10-ignored",
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
        {"expect_continue": False},
    ),
    (
        "websocket-upgrade",
        b"GET /ws HTTP/1.1\r\n" + H + b"Connection: keep-alive, Upgrade\r\n"
        b"Upgrade: WebSocket\r\n\r\n",
        {"upgrade_websocket": True, "forwarded_headers": []},
    ),
    (
        "websocket-without-connection",
        b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n\r\n",
        {"upgrade_websocket": False, "forwarded_headers": []},
    ),
    (
        "h2c-upgrade-is-dropped",
        b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        {"upgrade_websocket": False, "forwarded_headers": []},
    ),
    (
        "hop-by-hop-dropped",
        b"GET / HTTP/1.1\r\n" + H + b"Keep-Alive: 5\r\nTE: trailers\r\n"
        b"Trailer: x\r\nProxy-Connection: keep-alive\r\nX-Keep: 1\r\nConnection: x-gone\r\n"
        b"X-Gone: 2\r\nx-gone: 3\r\n\r\n",
        {"forwarded_headers": [(b"X-Keep", b"1")]},
    ),
]


@FEEDERS
@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted(feed: Any, raw: bytes, expected: dict[str, Any]) -> None:
    expected = dict(expected)
    parser, events = feed(raw, **expected.pop("limits", {}))
    body = expected.pop("body", None)
    if body is not None:
        assert events == [("head",)] + ([("body", body)] if body else []) + [("done",)]
    else:
        assert events[0] == ("head",) and events[-1] == ("done",)
    assert parser.error is None
    for name, value in expected.items():
        got = getattr(parser, name)
        if callable(got):
            got = got()
        assert got == value, name


def test_head_boundary_and_pipelining() -> None:
    first = b"POST /one HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"
    second = b"GET /two HTTP/1.1\r\n" + H + b"\r\n"
    third = (
        b"PUT /three HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"
    )
    parser = RequestParser()
    assert parser.feed(first + second + third) == [
        ("head",),
        ("body", b"abc"),
        ("done",),
        ("head",),
        ("done",),
        ("head",),
        ("body", b"z"),
        ("done",),
    ]
    assert parser.path == b"/three"
    # one message at a time keeps each head readable until the next feed
    parser = RequestParser()
    seen = []
    for message in (first, second, third):
        parser.feed(message)
        seen.append((parser.method, parser.path, parser.in_message))
    assert seen == [(b"POST", b"/one", False), (b"GET", b"/two", False), (b"PUT", b"/three", False)]


def test_in_message_and_head_done() -> None:
    parser = RequestParser()
    assert not parser.in_message
    assert parser.feed(b"\r\n") == []
    assert parser.in_message
    assert parser.feed(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\na") == [
        ("head",),
        ("body", b"a"),
    ]
    assert parser.in_message and parser.head_done
    assert parser.feed(b"b") == [("body", b"b"), ("done",)]
    assert not parser.in_message and not parser.head_done


def test_header_ids_and_flags() -> None:
    parser = RequestParser()
    parser.feed(
        b"GET / HTTP/1.1\r\nhost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-REQUEST-ID: r\r\n"
        b"Proxy-Authorization: x\r\nx-forwarded-proto: http\r\n"
        b"X-Forwarded-Host: h\r\nAccept: */*\r\n\r\n"
    )
    assert parser.header_ids() == [1, 11, 14, 15, 12, 13, 0]
    assert [name for name, _ in parser.forwarded_headers()] == [
        b"X-Forwarded-For",
        b"X-REQUEST-ID",
        b"Proxy-Authorization",
        b"x-forwarded-proto",
        b"X-Forwarded-Host",
        b"Accept",
    ]


def test_large_head_spanning_many_feeds() -> None:
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 200) for i in range(60))
    raw = b"GET /big HTTP/1.1\r\n" + H + fields + b"\r\n"
    parser = RequestParser()
    events = []
    for i in range(0, len(raw), 333):
        events += parser.feed(raw[i : i + 333])
    assert events == [("head",), ("done",)]
    assert len(parser.headers()) == 61
    assert parser.headers()[-1] == (b"X-F59", b"v" * 200)


def test_limits_are_inclusive() -> None:
    raw = b"GET /" + b"a" * 31 + b" HTTP/1.1\r\n" + H + b"\r\n"
    parser, events = feed_whole(raw, max_target_bytes=32)
    assert events == [("head",), ("done",)]
    parser, events = feed_whole(raw, max_header_bytes=len(raw))
    assert events == [("head",), ("done",)]
    parser, events = feed_whole(raw, max_header_bytes=len(raw) - 1)
    assert events == [("error", "header_too_large")]
    raw = b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\n\r\n"
    parser, events = feed_whole(raw, max_headers=2)
    assert events == [("head",), ("done",)]


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        RequestParser(max_headers=0)
    with pytest.raises(ValueError):
        RequestParser(max_target_bytes=0)


def test_strictness_doc_lists_every_client_error_code() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"`([a-z0-9_]+)`", text))
    client_codes = {
        code
        for status, code, _ in ERROR_TABLE.values()
        if status in (400, 413, 414, 417, 431, 501, 505)
    }
    assert client_codes - documented == set()


def _value_verdict(byte: int) -> str | None:
    if byte == 0x0A:
        return "bare_lf"
    if byte == 0x0D:
        return "bare_cr"
    if byte == 0x09 or 0x20 <= byte <= 0x7E or byte >= 0x80:
        return None
    return "bad_header_value"


def _target_verdict(byte: int) -> str | None:
    if byte == 0x0A:
        return "bare_lf"
    if byte == 0x0D:
        return "bad_request_line"
    if byte == 0x20:
        return "bad_version"
    if byte == 0x23:
        return "fragment_in_target"
    if byte == 0x5C:
        return "backslash_in_path"
    if byte == 0x25:
        return "bad_percent_encoding"
    if byte == 0x3B:
        return "semicolon_in_path"
    if 0x21 <= byte <= 0x7E:
        return None
    return "bad_target"


@pytest.mark.parametrize("position", [0, 3, 7, 8, 13, 16])
def test_every_byte_at_every_word_offset(position: int) -> None:
    # the value and target scanners test eight bytes at a time; each byte value must be
    # classified the same at every offset inside and across the words
    for byte in range(256):
        value = b"v" * position + bytes([byte]) + b"v" * (20 - position)
        events = RequestParser().feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-V: " + value + b"\r\n\r\n")
        code = _value_verdict(byte)
        assert events[-1] == (("error", code) if code else ("done",)), (byte, events)
        target = b"/" + b"t" * position + bytes([byte]) + b"t" * (20 - position)
        events = RequestParser().feed(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        code = _target_verdict(byte)
        assert events[-1] == (("error", code) if code else ("done",)), (byte, events)
