"""Request field names with "_": dropped by default (as nginx does), refused, or allowed.

A CGI-style backend turns both X-Forwarded-For and X_Forwarded_For into one variable, so a
client's X_Forwarded_For would slip past the gateway's rewriting of the real field."""

from __future__ import annotations

from typing import Any

import pytest

SENT = [("X_Forwarded_For", "6.6.6.6"), ("Foo_Bar", "x"), ("X-Plain", "kept")]


@pytest.mark.parametrize("mode", [None, "drop", "allow", "reject"])
def test_underscore_field_names(gateway: Any, upstream: Any, mode: str | None):
    up = upstream("echo")
    limits = {} if mode is None else {"limits": {"headers_with_underscores": mode}}
    gw = gateway(routes=[gateway.route("r", ["/r"], "up")], upstreams={"up": up}, **limits)
    resp = gw.request("GET", "/r", SENT)
    if mode == "reject":
        assert resp.status == 400
        assert resp.error()["code"] == "underscore_in_header_name"
        assert not up.requests
        return
    assert resp.status == 200
    names = up.requests[-1].names()
    assert "x-plain" in names
    if mode == "allow":
        assert {"x_forwarded_for", "foo_bar"} <= names
    else:  # drop, the default
        assert not {"x_forwarded_for", "foo_bar"} & names
        assert up.requests[-1].header("x-forwarded-for") == "127.0.0.1"
