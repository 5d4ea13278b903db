"""Python policies that do nothing, to measure what calling a hook costs the proxy.

`python -m bench.e2e --scenario` puts one of them on fastgw's only route, as
`"bench.policies:NoopSync": {}`. fastgw runs from the repository root, so `bench` is found
there (a namespace package: no install needed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastgw.policy import Policy, Response

__all__ = ["NoopAsync", "NoopSync", "SleepZeroAsync"]


class NoopSync(Policy):
    """A plain `def on_request` that returns None: the cost of one Python call per request."""

    def on_request(self, request: Any) -> Response | None:
        return None


class NoopAsync(Policy):
    """An `async def on_request` that returns without awaiting: a coroutine that never waits."""

    async def on_request(self, request: Any) -> Response | None:
        return None


class SleepZeroAsync(Policy):
    """An `async def on_request` that awaits `asyncio.sleep(0)`: one real suspension."""

    async def on_request(self, request: Any) -> Response | None:
        await asyncio.sleep(0)
        return None
