"""Access log, metrics and tracing settings applied to a running engine."""

from __future__ import annotations

from typing import Any

from fastgw.errors import GatewayError
from fastgw.observe.accesslog import AccessLogWriter, build_access_log

__all__ = ["Observability"]

_TRACE_MODES = {"off": 0, "propagate": 1, "start": 2}


class Observability:
    """What one gateway logs and counts; `apply` again on every reload."""

    def __init__(self) -> None:
        self.writer: AccessLogWriter | None = None

    def apply(self, engine: Any, config: Any) -> None:
        """Set the engine's metrics, tracing and access log from `config`.

        Raises GatewayError when the access log file cannot be opened; the engine is left as
        it was then.
        """
        settings = config.access_log
        writer = self.writer
        if settings is not None and (writer is None or writer.path != settings.path):
            try:
                writer = AccessLogWriter(settings.path)
            except OSError as exc:
                raise GatewayError(
                    f"cannot open access log {settings.path}: {exc.strerror or exc}"
                ) from exc
        old_log = engine.access_log
        engine.metrics_on = config.metrics.enabled
        engine.trace_mode = _TRACE_MODES[config.tracing.traceparent]
        engine.server_timing = config.tracing.server_timing
        engine.access_log = (
            build_access_log(settings, writer) if settings is not None and writer else None
        )
        if old_log is not None:
            old_log.flush()  # lines already formatted go where they were meant to
        if self.writer is not None and (settings is None or writer is not self.writer):
            self.writer.close()
        self.writer = writer if settings is not None else None

    def reopen(self) -> None:
        """SIGUSR1: reopen the access log file (logrotate)."""
        if self.writer is not None:
            self.writer.reopen()

    def close(self, engine: Any) -> None:
        if engine is not None and engine.access_log is not None:
            engine.access_log.flush()
            engine.access_log = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
