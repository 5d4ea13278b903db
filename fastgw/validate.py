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
    from fastgw.config.schema import PartialConfig

    try:
        config = load_config(file)
    except ConfigError as exc:
        errors = list(exc.errors)
        partial: PartialConfig | None = exc.partial
        if partial is None:
            return errors, []
        seen = {error.path for error in errors}
        plan_errors, _ = _plan_errors(partial.config, file)
        for error in partial.renumber(plan_errors):
            if error.path not in seen:
                errors.append(error)
        return errors, partial.renumber(_file_warnings(partial.config, file))
    plan_errors, plan_warnings = _plan_errors(config, file)
    return plan_errors, _file_warnings(config, file) + plan_warnings


def _plan_errors(config: Config, file: str) -> tuple[list[ConfigError], list[ConfigError]]:
    """The plan-time errors of `config`, and its plan-time warnings (chain order)."""
    from fastgw.plan import build_plan

    try:
        plan = build_plan(config, file=file)
    except ConfigError as exc:
        return list(exc.errors), []
    except Exception:  # a part that only a valid config can build: its errors are known
        logger.debug("plan-time checks stopped on a config with errors", exc_info=True)
        return [], []
    plan.close()
    return [], plan.warnings


def _file_warnings(config: Config, file: str) -> list[ConfigError]:
    warnings = config_warnings(config)
    for warning in warnings:
        warning.file = file
    return warnings
