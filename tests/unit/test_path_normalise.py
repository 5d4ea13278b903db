"""Path normalisation of the request-target (RFC 3986 5.2.4 plus the gateway's rules)."""

from __future__ import annotations

import pytest

from fastgw._core import RequestParser

# (id, raw target, normalised path or the stable error code)
CASES: list[tuple[str, bytes, bytes | str]] = [
    ("root", b"/", b"/"),
    ("plain", b"/api/v1/users", b"/api/v1/users"),
    ("trailing-slash-kept", b"/api/", b"/api/"),
    ("double-slash-kept", b"/a//b", b"/a//b"),
    ("leading-double-slash-kept", b"//a", b"//a"),
    ("dot-segment", b"/a/./b", b"/a/b"),
    ("dot-at-end", b"/a/.", b"/a/"),
    ("dot-only", b"/.", b"/"),
    ("dotdot-segment", b"/a/b/../c", b"/a/c"),
    ("dotdot-at-end", b"/a/b/..", b"/a/"),
    ("dotdot-to-root", b"/a/..", b"/"),
    ("dotdot-after-empty-segment", b"/a//../b", b"/a/b"),
    ("dotdot-many", b"/a/b/c/../../d", b"/a/d"),
    ("dots-not-segments", b"/a.b/..c/c../...", b"/a.b/..c/c../..."),
    ("encoded-dot", b"/a/%2e/b", b"/a/b"),
    ("encoded-dotdot", b"/a/b/%2E%2e/c", b"/a/c"),
    ("half-encoded-dotdot", b"/a/b/.%2e/c", b"/a/c"),
    ("decode-unreserved", b"/%41%7a%30%2D%2e%5F%7E", b"/Az0-._~"),
    ("keep-reserved-uppercased", b"/a%3fb%3Dc%25d%20e", b"/a%3Fb%3Dc%25d%20e"),
    ("keep-non-ascii-escape", b"/caf%c3%a9", b"/caf%C3%A9"),
    ("sub-delims-raw", b"/a;b=c,d!$&'()*+:@", b"/a;b=c,d!$&'()*+:@"),
    ("query-not-normalised", b"/a/../b?x=%2f/../%zz", b"/b"),
    ("dotdot-above-root", b"/..", "path_above_root"),
    ("dotdot-above-root-after-pop", b"/a/../..", "path_above_root"),
    ("encoded-dotdot-above-root", b"/%2e%2e", "path_above_root"),
    ("encoded-slash", b"/a%2fb", "encoded_separator"),
    ("encoded-backslash", b"/a%5Cb", "encoded_separator"),
    ("encoded-nul", b"/a%00", "encoded_separator"),
    ("raw-backslash", b"/a\\b", "backslash_in_path"),
    ("raw-backslash-dotdot", b"/a\\..\\b", "backslash_in_path"),
    ("bad-escape-short", b"/a%2", "bad_percent_encoding"),
    ("bad-escape-not-hex", b"/a%g0", "bad_percent_encoding"),
    ("bad-escape-percent", b"/a%%41", "bad_percent_encoding"),
]


@pytest.mark.parametrize(("target", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_normalise(target: bytes, expected: bytes | str) -> None:
    parser = RequestParser()
    events = parser.feed(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    if isinstance(expected, str):
        assert events == [("error", expected)]
    else:
        assert events == [("head",), ("done",)]
        assert parser.path == expected
        assert parser.target == target


def test_normalised_path_is_never_longer_than_the_target() -> None:
    target = b"/" + b"%41" * 1000 + b"/x/../" + b"a" * 5000
    parser = RequestParser()
    assert parser.feed(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")[0] == ("head",)
    assert parser.path == b"/" + b"A" * 1000 + b"/" + b"a" * 5000


def test_path_buffer_is_reused_across_messages() -> None:
    parser = RequestParser()
    parser.feed(b"GET /" + b"x" * 600 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    parser.feed(b"GET /short/./y HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.path == b"/short/y"
