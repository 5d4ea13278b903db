"""The PROXY protocol header parser (HAProxy spec, v1 text and v2 binary) of the core."""

from __future__ import annotations

import socket
import struct

import pytest

from fastgw import _core

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, body: bytes, length: int | None = None) -> bytes:
    """A v2 header: version 2 with `command`, `family` byte, then the address block."""
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack(">H", size) + body


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack(">HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(value)) + value


IPV4 = inet4("203.0.113.7", "10.0.0.1", 51234, 443)
IPV6 = inet6("2001:db8::7", "2001:db8::1", 40000, 8080)

VALID = [
    (
        "v1-tcp4",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
        1,
        ("192.0.2.1", 56324),
        ("198.51.100.2", 443),
    ),
    (
        "v1-tcp6",
        b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n",
        1,
        ("2001:db8::1", 65535),
        ("2001:db8::2", 0),
    ),
    (
        "v1-tcp6-canonical",
        b"PROXY TCP6 2001:DB8:0:0::1 ::1 1 2\r\n",
        1,
        ("2001:db8::1", 1),
        ("::1", 2),
    ),
    ("v1-unknown", b"PROXY UNKNOWN\r\n", 1, None, None),
    ("v1-unknown-with-rest", b"PROXY UNKNOWN ffff::1 x 1 2\r\n", 1, None, None),
    (
        "v1-longest",
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        b" ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        1,
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
    ),
    ("v2-proxy-tcp4", v2(1, 0x11, IPV4), 2, ("203.0.113.7", 51234), ("10.0.0.1", 443)),
    ("v2-proxy-tcp6", v2(1, 0x21, IPV6), 2, ("2001:db8::7", 40000), ("2001:db8::1", 8080)),
    (
        "v2-tlvs",
        v2(1, 0x11, IPV4 + tlv(0x01, b"h2") + tlv(0x05, b"\x00" * 16) + tlv(0xEA, b"")),
        2,
        ("203.0.113.7", 51234),
        ("10.0.0.1", 443),
    ),
    ("v2-local", v2(0, 0x00, b""), 2, None, None),
    ("v2-local-with-addresses", v2(0, 0x11, IPV4), 2, None, None),
    ("v2-unspec", v2(1, 0x00, b"\x01\x02"), 2, None, None),
    ("v2-unix-stream", v2(1, 0x31, b"/a".ljust(216, b"\x00")), 2, None, None),
    ("v2-unix-dgram", v2(1, 0x32, b"/a".ljust(216, b"\x00")), 2, None, None),
]


@pytest.mark.parametrize(
    ("header", "version", "source", "destination"),
    [case[1:] for case in VALID],
    ids=[case[0] for case in VALID],
)
def test_valid_header(header: bytes, version: int, source: object, destination: object) -> None:
    # What follows the header (the first request) is not part of it.
    parsed = _core.parse_proxy_header(header + b"GET / HTTP/1.1\r\n")
    assert parsed == {
        "version": version,
        "length": len(header),
        "source": source,
        "destination": destination,
    }


@pytest.mark.parametrize(("header",), [case[1:2] for case in VALID], ids=[c[0] for c in VALID])
def test_every_strict_prefix_needs_more(header: bytes) -> None:
    # A header split across reads: every prefix is "not yet", never an error.
    for end in range(len(header)):
        assert _core.parse_proxy_header(header[:end]) is None, end


MALFORMED = [
    ("http", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("v1-lowercase", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-no-space", b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-bad-protocol", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-tcp5", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-family-mismatch", b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n"),
    ("v1-tcp6-with-ipv4", b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-leading-zero-octet", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
    ("v1-short-ipv4", b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
    ("v1-double-space", b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
    ("v1-trailing-space", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
    ("v1-missing-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
    ("v1-extra-field", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
    ("v1-port-leading-zero", b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
    ("v1-port-too-big", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
    ("v1-port-sign", b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"),
    ("v1-bare-lf", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
    ("v1-bare-cr", b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n"),
    ("v1-nul", b"PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n"),
    ("v1-unknownx", b"PROXY UNKNOWNX\r\n"),
    ("v1-oversized", b"PROXY UNKNOWN " + b"a" * 93 + b"\r\n"),
    ("v1-108-bytes", b"PROXY UNKNOWN " + b"a" * 92 + b"\r\n"),
    ("v1-no-crlf-in-107", b"PROXY TCP4 " + b"1" * 96),
    ("v2-version-1", V2_SIGNATURE + b"\x11\x11\x00\x0c" + IPV4),
    ("v2-version-3", V2_SIGNATURE + b"\x31\x11\x00\x0c" + IPV4),
    ("v2-command-2", v2(2, 0x11, IPV4)),
    ("v2-udp4", v2(1, 0x12, IPV4)),
    ("v2-udp6", v2(1, 0x22, IPV6)),
    ("v2-family-4", v2(1, 0x41, IPV4)),
    ("v2-inet-unspec-transport", v2(1, 0x10, IPV4)),
    ("v2-short-ipv4-block", v2(1, 0x11, IPV4[:11])),
    ("v2-short-ipv6-block", v2(1, 0x21, IPV6[:35])),
    ("v2-short-unix-block", v2(1, 0x31, b"\x00" * 215)),
    ("v2-tlv-truncated-head", v2(1, 0x11, IPV4 + b"\x01\x00")),
    ("v2-tlv-overruns", v2(1, 0x11, IPV4 + b"\x01\x00\x05abc")),
    ("v2-oversized", v2(1, 0x11, IPV4 + tlv(0xE0, b"x" * 1000))),
    ("v2-oversized-length-field", V2_SIGNATURE + b"\x21\x11\xff\xff"),
    ("v2-bad-signature", b"\r\n\r\n\x00\r\nQUIT\r" + b"\x21\x11\x00\x0c" + IPV4),
]


@pytest.mark.parametrize(("data",), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_header(data: bytes) -> None:
    with pytest.raises(ValueError, match="malformed PROXY protocol header"):
        _core.parse_proxy_header(data)


def test_v1_cap_is_107_bytes() -> None:
    header = b"PROXY UNKNOWN " + b"a" * 91 + b"\r\n"
    assert len(header) == 107
    assert _core.parse_proxy_header(header + b"GET")["length"] == 107


def test_v2_cap_is_1024_bytes() -> None:
    # The whole v2 header (16 fixed bytes, addresses, TLVs) may take up to 1024 bytes.
    fits = v2(1, 0x11, IPV4 + tlv(0xE0, b"x" * (1024 - 16 - 12 - 3)))
    assert len(fits) == 1024
    assert _core.parse_proxy_header(fits)["length"] == 1024
    with pytest.raises(ValueError):
        _core.parse_proxy_header(v2(1, 0x11, IPV4 + tlv(0xE0, b"x" * (1024 - 16 - 12 - 2))))


SIGNATURES = [
    ("empty", b"", "partial"),
    ("p", b"P", "partial"),
    ("proxy", b"PROXY", "partial"),
    ("v1", b"PROXY ", "found"),
    ("v1-line", b"PROXY TCP4 1.2.3.4", "found"),
    ("crlf", b"\r\n", "partial"),
    ("v2-prefix", V2_SIGNATURE[:11], "partial"),
    ("v2", V2_SIGNATURE, "found"),
    ("get", b"GET / HTTP/1.1\r\n", "none"),
    ("post", b"POST", "none"),
    ("crlf-then-get", b"\r\nGET", "none"),
    ("proxy-method", b"PROXYX", "none"),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in SIGNATURES], ids=[c[0] for c in SIGNATURES]
)
def test_signature_sniffing(data: bytes, expected: str) -> None:
    # For untrusted peers: anything that starts like a PROXY header is refused, the rest
    # is HTTP; a strict prefix waits for more bytes.
    assert _core.proxy_header_signature(data) == expected
