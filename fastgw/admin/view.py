"""What the admin API reads of a gateway: one interface, two implementations.

fastgw.runtime.gateway.GatewayView shows a single-process Gateway; the supervisor's view
(fastgw.runtime.supervisor) shows a supervisor and its workers. The admin server knows only
this Protocol, so it imports nothing of the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from fastgw.config import Config

__all__ = ["AdminView"]


class AdminView(Protocol):
    """The gateway as the admin endpoints show it."""

    @property
    def config(self) -> Config:
        """The config serving now (GET /config shows it redacted)."""
        ...

    @property
    def config_file(self) -> str | None:
        """The absolute path of the config file; none for a config given as data."""
        ...

    @property
    def config_hash(self) -> str | None:
        """sha256 of the config file's bytes (or of the config's canonical JSON)."""
        ...

    @property
    def last_reload(self) -> Mapping[str, Any]:
        """The last reload's outcome: result, at, errors, restart_required."""
        ...

    def ready(self) -> bool:
        """Whether the gateway takes traffic (started and not draining)."""
        ...

    def workers(self) -> list[int]:
        """The pids of the processes that serve."""
        ...

    def routes(self) -> list[dict[str, Any]]:
        """The compiled route table, one row per route pattern."""
        ...

    def upstreams(self) -> list[dict[str, Any]]:
        """Per upstream: its targets, with connection counts where this process knows them."""
        ...

    async def metrics(self) -> bytes:
        """The Prometheus text exposition of every serving process's counters."""
        ...

    async def reload(self) -> list[str]:
        """Reload the config file; its errors, none when it worked."""
        ...
