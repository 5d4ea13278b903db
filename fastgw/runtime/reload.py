"""What a reload reports, the same for a single process, a supervisor and its workers."""

from __future__ import annotations

from fastgw.config import Config
from fastgw.errors import ConfigError

__all__ = ["RELOAD_REJECTED", "reload_error_lines", "restart_required"]


# The one wording of a rejected reload, for a single process, a supervisor and its workers.
RELOAD_REJECTED = "reload rejected, still serving the previous config"


def reload_error_lines(exc: BaseException, file: str | None) -> list[str]:
    """One line per problem of a rejected reload, each naming the file and its `$.path`
    ("$" when the problem is not located in the file, e.g. a policy that cannot start)."""
    if isinstance(exc, ConfigError):
        lines = []
        for error in exc.errors:
            text = str(error)
            if error.file is None and file is not None:
                text = f"{file}: {text}"
            lines.append(text)
        return lines
    where = f"{file}: $" if file is not None else "$"
    message = str(exc) or type(exc).__name__
    return [f"{where}: {part}" for part in message.splitlines() if part.strip()]


def restart_required(old: Config, new: Config) -> list[str]:
    """The settings a reload does not apply: they need new sockets or new processes."""
    keys = ("listen", "workers", "admin", "rate_limit_table")
    return [key for key in keys if getattr(old, key) != getattr(new, key)]
