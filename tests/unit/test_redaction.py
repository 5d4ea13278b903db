"""What GET /config hides: the admin token, secret-named keys anywhere, URL passwords."""

from __future__ import annotations

from fastgw.admin.server import REDACTED, redacted_config
from fastgw.config import parse_config


def test_secrets_are_hidden_wherever_they_are() -> None:
    config = parse_config(
        {
            "admin": {"listen": "127.0.0.1:0", "token": "t" * 20},
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
                                "redis": {"url": "redis://:s3cret@10.0.0.5:6379/0"},
                            }
                        },
                        {"tests.policies_for_tests:Mark": {"tag": "x", "Password": "p"}},
                    ],
                }
            ],
        }
    )
    data = redacted_config(config)
    assert data["admin"]["token"] == REDACTED
    policies = data["routes"][0]["policies"]
    assert policies[0]["rate_limit"]["redis"]["url"] == f"redis://:{REDACTED}@10.0.0.5:6379/0"
    assert policies[1]["tests.policies_for_tests:Mark"] == {"tag": "x", "Password": REDACTED}
    assert "s3cret" not in repr(data) and "t" * 20 not in repr(data)
    # Nothing else changes.
    assert data["upstreams"]["u"]["targets"][0]["url"] == "http://127.0.0.1:9"
    assert data["routes"][0]["match"]["paths"] == ["/"]
