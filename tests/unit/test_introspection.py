"""oauth2_introspection without sockets: config errors with their paths, the secret
absent from reprs and errors, the claims that reach header fields, and a close() that
never raises. The endpoint itself is exercised in
tests/integration/test_introspection_sockets.py."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fastgw.config.schema import decode_hook
from fastgw.policy import introspection
from fastgw.policy.base import PolicyConfigError, ProvisionContext
from fastgw.policy.consumers import ConsumerTable
from fastgw.policy.introspection import IntrospectionConfig, OAuth2Introspection
from fastgw.policy.registry import PolicyRegistry

SECRET = "s3cret-never-shown-0123"


def make(**options: Any) -> OAuth2Introspection:
    config = msgspec.convert(
        {"url": "https://idp.example/introspect", **options},
        IntrospectionConfig,
        dec_hook=decode_hook,
    )
    return OAuth2Introspection(
        config, ProvisionContext("r", (), "$.routes[0].policies[0]", None, ConsumerTable())
    )


def test_it_is_a_builtin_with_its_defaults() -> None:
    assert PolicyRegistry.default().resolve("oauth2_introspection") is OAuth2Introspection
    policy = make(client_id="gw", client_secret=SECRET, cache="60s")
    assert policy.config.timeout == 2.0
    assert policy.config.cache == 60.0
    assert policy.config.token_type_hint == "access_token"


@pytest.mark.parametrize(
    ("options", "at", "message"),
    [
        ({"url": "ftp://idp.example/x"}, "url", "not an http or https URL"),
        ({"url": "idp.example/x"}, "url", "not an http or https URL"),
        ({"url": f"https://gw:{SECRET}@idp.example/x"}, "url", "may not hold credentials"),
        ({"client_id": "gw"}, "client_secret", "go together"),
        ({"client_secret": SECRET}, "client_id", "go together"),
        ({"forward_claims": {"sub": "x user"}}, ("forward_claims", "sub"), "invalid header"),
    ],
    ids=["ftp", "no-scheme", "userinfo", "id-only", "secret-only", "bad-field"],
)
def test_config_errors(options: dict[str, Any], at: Any, message: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        make(**options)
    assert caught.value.at == at
    assert message in caught.value.message
    assert SECRET not in str(caught.value.message) + str(caught.value.got)


@pytest.mark.parametrize(
    "options",
    [{"timeout": "0s"}, {"cache_size": 0}, {"client_auth": "jwt"}, {"realm": 'a"b'}, {"x": 1}],
)
def test_options_are_checked_when_decoded(options: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        make(**options)


def test_the_secret_is_in_no_repr() -> None:
    policy = make(client_id="gw", client_secret=SECRET)
    assert SECRET not in repr(policy)
    assert SECRET not in repr(policy.config)
    assert "***" in repr(policy.config)
    post = make(client_id="gw", client_secret=SECRET, client_auth="post")
    assert SECRET not in repr(post) + repr(post.config)


def test_claims_as_header_values() -> None:
    text = introspection._header_text
    assert text("alice") == "alice"
    assert text(42) == "42"
    assert text(True) == "true"
    assert text(["a", "b"]) == "a, b"
    for unsafe in (None, "", "line\r\nX-Evil: 1", {"a": 1}, [1, 2], "snow\u2603man"):
        assert text(unsafe) is None
    assert introspection._scope(["orders:read", "orders:write"]) == "orders:read orders:write"
    assert introspection._scope("a\nb") is None


def test_close_without_a_loop_or_a_session_never_raises() -> None:
    policy = make()
    policy.close()
    policy._session = object()
    policy.close()
    assert policy._session is None
