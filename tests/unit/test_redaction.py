"""Secrets never show: GET /config, reprs and error messages hide the admin token,
secret-named keys anywhere and URL passwords."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fastgw.config import parse_config
from fastgw.config.redaction import REDACTED, redacted_config
from fastgw.config.schema import ErrorLogSettings
from fastgw.errors import ConfigError
from fastgw.observe.logs import configure_error_log

SECRET_CONFIG = {
    "admin": {"listen": "127.0.0.1:0", "token": "admintoken-0123456789"},
    "upstreams": {"u": {"targets": [{"url": "http://127.0.0.1:9"}]}},
    "routes": [
        {
            "name": "r",
            "match": {"paths": ["/"]},
            "upstream": "u",
            "policies": [
                {
                    "rate_limit": {
                        "limits": [{"rate": 1}],
                        "policy": "redis",
                        "redis": {"url": "redis://:s3cret-pw@127.0.0.1:6379/0"},
                    }
                },
                {"tests.policies_for_tests:Mark": {"tag": "x", "Password": "p"}},
            ],
        }
    ],
}


def test_secrets_are_hidden_wherever_they_are() -> None:
    config = parse_config(SECRET_CONFIG)
    data = redacted_config(config)
    assert data["admin"]["token"] == REDACTED
    policies = data["routes"][0]["policies"]
    assert policies[0]["rate_limit"]["redis"]["url"] == f"redis://:{REDACTED}@127.0.0.1:6379/0"
    assert policies[1]["tests.policies_for_tests:Mark"] == {"tag": "x", "Password": REDACTED}
    assert "s3cret" not in repr(data) and "admintoken" not in repr(data)
    # Nothing else changes.
    assert data["upstreams"]["u"]["targets"][0]["url"] == "http://127.0.0.1:9"
    assert data["routes"][0]["match"]["paths"] == ["/"]


def test_reprs_hide_secrets() -> None:
    from fastgw.plan import build_plan

    # Without the test policy whose config has no Password field (the plan checks it).
    route = dict(SECRET_CONFIG["routes"][0], policies=SECRET_CONFIG["routes"][0]["policies"][:1])
    config = parse_config(dict(SECRET_CONFIG, routes=[route]))
    plan = build_plan(config)
    try:
        for shown in (repr(config), repr(config.admin), repr(plan), str(plan)):
            assert "admintoken-0123456789" not in shown
            assert "s3cret-pw" not in shown
        assert f"token={REDACTED!r}" in repr(config.admin)
        assert f"redis://:{REDACTED}@127.0.0.1:6379/0" in repr(config)
        # The policy's own decoded config, as the chain holds it.
        entry_configs = [p.policy for chain in plan.chains for p in chain.policies]
        assert entry_configs and all("s3cret-pw" not in repr(p.__dict__) for p in entry_configs)
    finally:
        plan.close()


def test_errors_hide_secrets() -> None:
    short = dict(SECRET_CONFIG, admin={"listen": "127.0.0.1:0", "token": "short-secret"})
    with pytest.raises(ConfigError) as caught:
        parse_config(short, file="g.yaml")
    text = str(caught.value)
    assert "$.admin.token" in text and "short-secret" not in text
    assert "got a secret (not shown)" in text
    # A URL password quoted by any message is hidden too.
    error = ConfigError("cannot reach redis://user:pw-123@db:6379", "$.x", got="'redis://:p@h'")
    assert "pw-123" not in str(error) and ":p@" not in str(error)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_error_log_hides_url_passwords_in_messages_and_tracebacks(
    tmp_path: Path, log_format: str
) -> None:
    """A last line of defence: whatever a log call quoted (an exception from a client
    library, a config value), the error log's formatters hide URL passwords."""
    path = tmp_path / "error.log"
    logger = logging.getLogger("fastgw")
    configure_error_log(ErrorLogSettings(path=str(path), format=log_format))
    try:
        try:
            raise ConnectionError("cannot reach rediss://app:tb-pw-0042@cache:6380/1")
        except ConnectionError as exc:
            url = "redis://:msg-pw-0042@db:6379"
            logger.error("store at %s failed: %s", url, exc, exc_info=True)
    finally:
        for handler in list(logger.handlers):
            if handler.get_name() == "fastgw-error-log":
                logger.removeHandler(handler)
                handler.close()
    written = path.read_text()
    assert "store at redis://:***redacted***@db:6379 failed" in written
    assert "ConnectionError" in written  # the traceback is still there
    assert "msg-pw-0042" not in written and "tb-pw-0042" not in written
