"""The error log: the "fastgw" logger's messages as text or JSON lines, apart from access logs."""

from __future__ import annotations

import datetime
import logging
import logging.handlers
import sys
from typing import Any

import orjson

from fastgw.errors import redact_text

__all__ = ["JsonFormatter", "TextFormatter", "configure_error_log"]

_HANDLER_NAME = "fastgw-error-log"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception), URL
    passwords hidden."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """`fastgw: message` lines. Like JsonFormatter, it hides URL passwords that a message or
    an exception's text quoted (a last line of defence: messages are redacted where made)."""

    def __init__(self) -> None:
        super().__init__("fastgw: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_error_log(settings: Any) -> None:
    """Send the "fastgw" logger to settings.path ("stderr", "stdout" or a file) in
    settings.format at settings.level; calling it again replaces the previous handler."""
    logger = logging.getLogger("fastgw")
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
            handler.close()
    handler: logging.Handler
    if settings.path == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    elif settings.path == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        # Reopens the file when logrotate has moved it away.
        handler = logging.handlers.WatchedFileHandler(settings.path)
    handler.set_name(_HANDLER_NAME)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(settings.level.upper())
    logger.propagate = False
