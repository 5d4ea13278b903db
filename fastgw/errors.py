"""The fastgw exception tree: every error fastgw raises on purpose is a FastgwError."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "REDACTED",
    "ConfigError",
    "ConfigErrors",
    "FastgwError",
    "GatewayError",
    "raise_config_errors",
    "redact_text",
]

# What a hidden secret reads as. The URL-password rule lives here, below the config package,
# because every error message applies it; fastgw.config.redaction builds the rest on it.
REDACTED = "***redacted***"
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@:\s'\"]*:)[^/@\s'\"]*(@)")


def redact_text(text: str) -> str:
    """`text` with every URL password replaced (`redis://:***redacted***@host`)."""
    return _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text) if "@" in text else text


class FastgwError(Exception):
    """Root of every error fastgw raises on purpose."""


class ConfigError(FastgwError):
    """One problem in a configuration, located by file and JSONPath-like `$.path`.

    `str()` gives one line for humans and CI logs, for example
    ``gateway.yaml: $.routes[2].upstream: unknown upstream 'x' (expected one of: users, orders)``.
    `line` and `column` (1-based) are set for syntax errors in the file itself.
    `partial`, when the error comes from parsing a configuration, is the
    fastgw.config.PartialConfig of what did decode (for checks that run on it too).
    """

    partial: Any = None

    def __init__(
        self,
        message: str,
        path: str = "$",
        *,
        file: str | None = None,
        expected: str | None = None,
        got: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.file = file
        self.expected = expected
        self.got = got
        self.line = line
        self.column = column

    @property
    def errors(self) -> list[ConfigError]:
        """Every error carried by this exception (just itself here; see ConfigErrors)."""
        return [self]

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        if self.file is not None:
            text = f"{self.file}: {text}"
        if self.expected is not None and self.got is not None:
            text += f" (expected {self.expected}, got {self.got})"
        elif self.expected is not None:
            text += f" (expected {self.expected})"
        elif self.got is not None:
            text += f" (got {self.got})"
        # A URL's password never shows, whatever message quoted it.
        return redact_text(text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes are not in self.args: rebuild from the full state so errors
        # survive the trip from a worker process to its parent.
        return (_rebuild_config_error, (type(self), dict(self.__dict__)))


def _rebuild_config_error(cls: type[ConfigError], state: dict[str, Any]) -> ConfigError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ConfigErrors(ConfigError):
    """Several configuration problems reported together; `str()` gives one line per error."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        flat: list[ConfigError] = []
        for error in errors:
            flat.extend(error.errors)
        if not flat:
            raise ValueError("ConfigErrors needs at least one error")
        first = flat[0]
        super().__init__(
            first.message,
            first.path,
            file=first.file,
            expected=first.expected,
            got=first.got,
            line=first.line,
            column=first.column,
        )
        self._errors = flat

    @property
    def errors(self) -> list[ConfigError]:
        return self._errors

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self._errors)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConfigErrors, (self._errors,))


def raise_config_errors(errors: list[ConfigError]) -> None:
    """Raise nothing for no errors, the error itself for one, ConfigErrors for several."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


class GatewayError(FastgwError):
    """A runtime problem of the gateway itself, e.g. a listen address that cannot be bound."""
