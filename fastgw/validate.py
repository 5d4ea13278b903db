"""What `fastgw check` reports for a file: every error in one run, and warnings.

Loading a file reports every decode and cross-check error at once; the plan-time checks
(path patterns, policy configs, shadowed routes) then run as well, on what did decode, so a
policy's own config errors do not wait until everything else is fixed.
"""

from __future__ import annotations

import logging

from fastgw.config import Config, config_warnings, load_config
from fastgw.errors import ConfigError

__all__ = ["check_file"]

logger = logging.getLogger("fastgw")


def check_file(file: str) -> tuple[list[ConfigError], list[ConfigError]]:
    """(errors, warnings) of the configuration file `file`, each naming file and `$.path`."""
    from fastgw.config.schema import PartialConfig, reported_at

    try:
        config = load_config(file)
    except ConfigError as exc:
        errors = list(exc.errors)
        partial: PartialConfig | None = exc.partial
        if partial is None:
            return errors, []
        seen = [error.path for error in errors]
        plan_errors, _ = _plan_errors(partial.config, file, partial=True)
        for error in partial.renumber(plan_errors):
            if not reported_at(error.path, seen):
                errors.append(error)
        return errors, partial.renumber(_file_warnings(partial.config, file))
    plan_errors, plan_warnings = _plan_errors(config, file)
    return plan_errors, _file_warnings(config, file) + plan_warnings


def _plan_errors(
    config: Config, file: str, *, partial: bool = False
) -> tuple[list[ConfigError], list[ConfigError]]:
    """The plan-time errors of `config`, and its plan-time warnings (chain order).

    `partial`: `config` is what decoded of a file with errors already reported. A part
    that only a valid config can build may then fail in ways of its own; those failures
    are logged (at debug) and not reported. Without other errors, a config that cannot be
    built is an error: it must not pass the check.
    """
    from fastgw.plan import build_plan

    try:
        plan = build_plan(config, file=file)
    except ConfigError as exc:
        return list(exc.errors), []
    except Exception as exc:
        logger.debug("plan-time checks of %s stopped", file, exc_info=True)
        if partial:
            return [], []
        error = ConfigError(
            f"the configuration cannot be built: {type(exc).__name__}: {exc}", file=file
        )
        return [error], []
    plan.close()
    return [], plan.warnings


def _file_warnings(config: Config, file: str) -> list[ConfigError]:
    warnings = config_warnings(config)
    for warning in warnings:
        warning.file = file
    return warnings
