"""Any token is a method (RFC 9110 9.1): a route may name PURGE or PROPFIND, and gets them."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def stack(module_upstream, module_gateway, http) -> Any:
    echo = module_upstream("echo", name="echo")
    routes = [
        http.route("cache", ["/cache/{*rest}"], "echo", methods=["GET", "PURGE"]),
        http.route("dav", ["/dav/{*rest}"], "echo", methods=["PROPFIND", "MKCOL"]),
        http.route("any", ["/any"], "echo"),
        # written in lowercase in the config: uppercased when the file is read
        http.route("lower", ["/lower/{*rest}"], "echo", methods=["purge", "Get"]),
    ]
    return module_gateway(routes=routes, upstreams={"echo": echo})


@pytest.mark.parametrize(
    ("method", "path"),
    [("PURGE", "/cache/a"), ("GET", "/cache/a"), ("PROPFIND", "/dav/x"), ("MKCOL", "/dav/y")],
    ids=["purge", "get-beside-purge", "propfind", "mkcol"],
)
def test_named_methods_reach_the_upstream(stack, method: str, path: str) -> None:
    resp = stack.request(method, path)
    assert resp.status == 200, resp.body
    assert resp.json()["method"] == method


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PROPFIND", "/cache/a", "GET, PURGE"),
        ("purge", "/cache/a", "GET, PURGE"),  # methods are case-sensitive
        ("POST", "/dav/x", "PROPFIND, MKCOL"),
    ],
    ids=["other-extension", "lowercase", "standard-on-extension-route"],
)
def test_other_methods_get_405_with_allow(stack, method: str, path: str, allow: str) -> None:
    resp = stack.request(method, path)
    assert resp.status == 405
    assert resp.header("allow") == allow
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_route_without_methods_takes_any(stack) -> None:
    assert stack.request("REPORT", "/any").json()["method"] == "REPORT"


def test_config_method_names_are_uppercased_and_requests_stay_case_sensitive(stack) -> None:
    """`methods: [purge]` names the method PURGE: a request PURGE matches it, a request
    `purge` is another method (tokens are case-sensitive, RFC 9110 9.1) and gets 405."""
    for method in ("PURGE", "GET"):
        resp = stack.request(method, "/lower/a")
        assert resp.status == 200, resp.body
        assert resp.json()["method"] == method
    for method in ("purge", "get", "Purge"):
        resp = stack.request(method, "/lower/a")
        assert resp.status == 405, (method, resp.body)
        assert resp.header("allow") == "GET, PURGE"
        assert resp.json()["error"]["code"] == "method_not_allowed"
