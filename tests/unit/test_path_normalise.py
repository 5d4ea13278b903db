"""Path normalisation of the request-target (RFC 3986 5.2.4 plus the gateway's rules)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw._core import SEMICOLON_MODES, RequestParser

# (id, raw target, normalised path or the stable error code), with the default limits:
# merge_slashes on, path_semicolons reject.
CASES: list[tuple[str, bytes, bytes | str]] = [
    ("root", b"/", b"/"),
    ("plain", b"/api/v1/users", b"/api/v1/users"),
    ("trailing-slash-kept", b"/api/", b"/api/"),
    ("double-slash-merged", b"/a//b", b"/a/b"),
    ("leading-double-slash-merged", b"//admin", b"/admin"),
    ("many-slashes-merged", b"///a////b///", b"/a/b/"),
    ("only-slashes", b"////", b"/"),
    ("trailing-double-slash", b"/a//", b"/a/"),
    ("merged-then-dot", b"/a/.//b", b"/a/b"),
    ("merged-with-escape", b"//%61dmin//x", b"/admin/x"),
    ("dot-segment", b"/a/./b", b"/a/b"),
    ("dot-at-end", b"/a/.", b"/a/"),
    ("dot-only", b"/.", b"/"),
    ("dotdot-segment", b"/a/b/../c", b"/a/c"),
    ("dotdot-at-end", b"/a/b/..", b"/a/"),
    ("dotdot-to-root", b"/a/..", b"/"),
    ("dotdot-after-merged-slashes", b"/a//../b", b"/b"),
    ("dotdot-above-root-after-merge", b"//..", "path_above_root"),
    ("dotdot-many", b"/a/b/c/../../d", b"/a/d"),
    ("dots-not-segments", b"/a.b/..c/c../...", b"/a.b/..c/c../..."),
    ("encoded-dot", b"/a/%2e/b", b"/a/b"),
    ("encoded-dotdot", b"/a/b/%2E%2e/c", b"/a/c"),
    ("half-encoded-dotdot", b"/a/b/.%2e/c", b"/a/c"),
    ("decode-unreserved", b"/%41%7a%30%2D%2e%5F%7E", b"/Az0-._~"),
    ("keep-reserved-uppercased", b"/a%3fb%3Dc%25d%20e", b"/a%3Fb%3Dc%25d%20e"),
    ("keep-non-ascii-escape", b"/caf%c3%a9", b"/caf%C3%A9"),
    ("sub-delims-raw", b"/a=c,d!$&'()*+:@", b"/a=c,d!$&'()*+:@"),
    ("double-encoding-decoded-once", b"/%252e%252e/admin", b"/%252e%252e/admin"),
    ("double-encoded-slash-decoded-once", b"/a%252fb", b"/a%252fb"),
    ("utf8-two-bytes", b"/caf%C3%A9", b"/caf%C3%A9"),
    ("utf8-three-bytes", b"/%E2%82%AC", b"/%E2%82%AC"),
    ("utf8-four-bytes", b"/%F0%9F%98%80", b"/%F0%9F%98%80"),
    ("utf8-highest", b"/%F4%8F%BF%BF", b"/%F4%8F%BF%BF"),
    ("utf8-below-surrogates", b"/%ED%9F%BF", b"/%ED%9F%BF"),
    ("semicolon", b"/admin;x=1/x", "semicolon_in_path"),
    ("semicolon-alone", b"/a;", "semicolon_in_path"),
    ("encoded-semicolon", b"/admin%3bx=1", "semicolon_in_path"),
    ("dotdot-semicolon", b"/public/..;/admin", "semicolon_in_path"),
    ("overlong-dot", b"/%C0%AE%C0%AE/admin", "bad_utf8_in_path"),
    ("overlong-slash", b"/a%C0%AFb", "bad_utf8_in_path"),
    ("overlong-three-bytes", b"/%E0%80%AE", "bad_utf8_in_path"),
    ("overlong-four-bytes", b"/%F0%80%80%AE", "bad_utf8_in_path"),
    ("overlong-c1", b"/%C1%BF", "bad_utf8_in_path"),
    ("surrogate", b"/%ED%A0%80", "bad_utf8_in_path"),
    ("above-u10ffff", b"/%F4%90%80%80", "bad_utf8_in_path"),
    ("lead-f5", b"/%F5%80%80%80", "bad_utf8_in_path"),
    ("lone-continuation", b"/a%80", "bad_utf8_in_path"),
    ("bad-continuation", b"/%C3%28", "bad_utf8_in_path"),
    ("continuation-not-escaped", b"/%C3a", "bad_utf8_in_path"),
    ("truncated-at-end", b"/%E2%82", "bad_utf8_in_path"),
    ("truncated-at-slash", b"/%C3/x", "bad_utf8_in_path"),
    ("truncated-before-query", b"/%C3?x", "bad_utf8_in_path"),
    ("iis-unicode-escape", b"/%u002e%u002e/admin", "bad_percent_encoding"),
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


# The same spellings with the other modes: merge_slashes false keeps "//"; path_semicolons
# allow keeps ";" as data but still refuses a "." or ".." segment with parameters.
MODE_CASES: list[tuple[str, bool, str, bytes, bytes | str]] = [
    ("keep-double-slash", False, "reject", b"/a//b", b"/a//b"),
    ("keep-leading-double-slash", False, "reject", b"//a", b"//a"),
    ("keep-dotdot-pops-empty-segment", False, "reject", b"/a//../b", b"/a/b"),
    ("allow-semicolon", True, "allow", b"/admin;x=1/x", b"/admin;x=1/x"),
    ("allow-encoded-semicolon", True, "allow", b"/a%3bb", b"/a%3Bb"),
    ("allow-semicolon-segment", True, "allow", b"/;x/a", b"/;x/a"),
    ("allow-dots-in-name", True, "allow", b"/a..;x/.b;c", b"/a..;x/.b;c"),
    ("allow-dotdot-semicolon", True, "allow", b"/public/..;/admin", "dot_segment_parameters"),
    ("allow-dotdot-semicolon-params", True, "allow", b"/p/..;x=1/admin", "dot_segment_parameters"),
    ("allow-dot-semicolon", True, "allow", b"/.;/admin", "dot_segment_parameters"),
    ("allow-encoded-dotdot-semicolon", True, "allow", b"/p/%2e%2e;/a", "dot_segment_parameters"),
    ("allow-dotdot-encoded-semicolon", True, "allow", b"/p/..%3B/a", "dot_segment_parameters"),
    ("allow-dotdot-semicolon-at-end", True, "allow", b"/p/..;", "dot_segment_parameters"),
    ("allow-keep-slashes", False, "allow", b"//a;b//c", b"//a;b//c"),
]


@pytest.mark.parametrize(
    ("merge_slashes", "semicolons", "target", "expected"),
    [c[1:] for c in MODE_CASES],
    ids=[c[0] for c in MODE_CASES],
)
def test_normalise_modes(
    merge_slashes: bool, semicolons: str, target: bytes, expected: bytes | str
) -> None:
    parser = RequestParser()
    parser.merge_slashes = merge_slashes
    parser.semicolons = SEMICOLON_MODES[semicolons]
    events = parser.feed(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    if isinstance(expected, str):
        assert events == [("error", expected)]
    else:
        assert events == [("head",), ("done",)]
        assert parser.path == expected


def test_absolute_form_path_is_normalised_the_same() -> None:
    parser = RequestParser()
    events = parser.feed(b"GET http://a//admin/./x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert events == [("head",), ("done",)]
    assert parser.path == b"/admin/x"


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


@settings(max_examples=500, deadline=None)
@given(data=st.binary(min_size=1, max_size=8))
def test_escaped_bytes_are_accepted_exactly_when_they_are_utf8(data: bytes) -> None:
    # Python's strict decoder is the oracle (it refuses overlong forms and surrogates)
    target = b"/a" + b"".join(b"%%%02X" % byte for byte in data) + b"z"
    events = RequestParser().feed(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        expected_ok = False
    else:
        # separators, NUL, "." or ";" decoded from ASCII escapes have their own rules
        expected_ok = not any(ch in text for ch in "/\\\x00;")
    if expected_ok:
        assert events == [("head",), ("done",)], (data, events)
    elif events[0][0] == "error":
        assert events[0][1] in {"bad_utf8_in_path", "encoded_separator", "semicolon_in_path"}
    else:
        raise AssertionError((data, events))
