"""The `fastgw` command: run | check | routes | schema | version."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from fastgw._version import __version__
from fastgw.config import Config, load_config
from fastgw.errors import ConfigError, GatewayError, redact_text

__all__ = ["format_route_table", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code (2 for usage errors)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigError as exc:
        _print_errors(exc, getattr(args, "config", None) or getattr(args, "file", None))
        return 1
    except GatewayError as exc:
        print(redact_text(f"fastgw: error: {exc}"), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`fastgw schema | head`): stop quietly, like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgw", description="A strict, fast API gateway for HTTP services."
    )
    parser.add_argument("--version", action="version", version=f"fastgw {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve the gateway described by a config file")
    run.add_argument("file", nargs="?", metavar="FILE", help="configuration file")
    run.add_argument("-c", "--config", metavar="FILE", help="configuration file (or FILE)")
    run.add_argument(
        "--workers", type=_positive_int, metavar="N", help="worker processes (overrides workers:)"
    )
    run.add_argument("--watch", action="store_true", help="reload when the config file changes")
    # Used by the supervisor to start its workers; not part of the interface.
    run.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)
    run.add_argument("--control-fd", type=int, default=-1, help=argparse.SUPPRESS)
    run.add_argument("--rate-fd", type=int, default=-1, help=argparse.SUPPRESS)
    run.add_argument("--listen-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)
    run.set_defaults(handler=_run, parser=run)

    check = commands.add_parser("check", help="validate config files (exit 1 when invalid)")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(handler=_check)

    routes = commands.add_parser("routes", help="print the compiled route table")
    routes.add_argument("file", metavar="FILE")
    routes.add_argument(
        "--explain",
        nargs=2,
        metavar=("METHOD", "URL"),
        help="show which route a request would take, and why",
    )
    routes.set_defaults(handler=_routes)

    schema = commands.add_parser("schema", help="print the JSON Schema of the config file")
    schema.set_defaults(handler=_schema)

    version = commands.add_parser("version", help="print the version and core build info")
    version.set_defaults(handler=_version)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    if args.file is not None and args.config is not None and args.file != args.config:
        args.parser.error("give the configuration file once: as FILE or with -c")
    args.config = args.config or args.file
    if args.config is None:
        args.parser.error("the configuration file is missing: fastgw run FILE (or -c FILE)")
    if args.worker:
        # From the supervisor: the config it validated last, FILE only for reloads.
        config: Config = pickle.loads(sys.stdin.buffer.read())
    else:
        config = load_config(args.config)
    if args.workers is not None:
        config = msgspec.structs.replace(config, workers=args.workers)
    from fastgw.runtime import server, worker

    if args.worker:
        return worker.run_worker(
            config, args.config, args.listen_fd, args.ready_fd, args.control_fd, args.rate_fd
        )
    return int(server.run(config, config_file=args.config, watch=args.watch))


def _check(args: argparse.Namespace) -> int:
    from fastgw.validate import check_file

    status = 0
    for file in args.files:
        errors, warnings = check_file(file)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if errors:
            for error in errors:
                print(error, file=sys.stderr)
            status = 1
        else:
            print(f"{file}: ok")
    return status


def _routes(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    from fastgw.plan import build_plan

    plan = build_plan(config, file=args.file)
    if args.explain:
        method, url = args.explain
        try:
            lines = plan.explain(method, url)
        except ValueError as exc:
            print(f"fastgw: error: {exc}", file=sys.stderr)
            return 2
        for line in lines:
            print(line)
    else:
        print(format_route_table(plan.describe_routes()))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from fastgw.schema import config_schema

    print(json.dumps(config_schema(), indent=2))
    return 0


def _version(args: argparse.Namespace) -> int:
    print(f"fastgw {__version__}")
    try:
        from fastgw import _core
    except ImportError as exc:
        print(f"core: not available ({exc})")
        return 0
    build_info = getattr(_core, "build_info", None)
    if build_info is None:
        print("core: built (no build info)")
        return 0
    for key, value in build_info().items():
        print(f"core {key}: {value}")
    return 0


_COLUMNS = ("name", "hosts", "methods", "pattern", "priority", "upstream")


def format_route_table(routes: list[dict[str, Any]]) -> str:
    """Align `Plan.describe_routes()` rows into a table with a header line.

    POLICIES lists each route's chain in the order it runs: global policies, then its groups'
    policies, then its own (registered names or "module:attr" references). CONNECT/READ/SEND
    and MAX_BODY are the effective upstream timeouts and body limit: the route's own where it
    sets them, the global ones otherwise.
    """
    header = [
        *(column.upper() for column in _COLUMNS),
        "POLICIES",
        "CONNECT/READ/SEND",
        "MAX_BODY",
        "FORWARD",
    ]
    rows = [header]
    for route in routes:
        rows.append(
            [
                *(_cell(route.get(column)) for column in _COLUMNS),
                _policies(route),
                _timeouts(route),
                _size(route.get("max_body_bytes")),
                _forward(route),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value) if value else "*"
    return str(value)


def _policies(route: dict[str, Any]) -> str:
    """The chain in run order ("-" when empty); "DISABLED:" when a policy failed to start."""
    chain = ",".join(route.get("policies") or ()) or "-"
    return f"DISABLED:{chain}" if route.get("disabled") else chain


def _timeouts(route: dict[str, Any]) -> str:
    values = [route.get(f"{kind}_timeout") for kind in ("connect", "read", "send")]
    if all(value is None for value in values):
        return "-"
    return "/".join("-" if value is None else _duration(value) for value in values)


_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SIZE_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def _duration(seconds: float) -> str:
    """Seconds as a config writes them, exactly: 250ms, 30s, 60s, 5m, 2h. A larger unit is
    used only for two or more of it, so the usual 60s does not turn into 1m."""
    millis = round(seconds * 1000, 3)
    if millis % 1000 == 0:
        whole = int(millis // 1000)
        for unit, size in _DURATION_UNITS:
            if whole % size == 0 and (whole >= 2 * size or size == 1):
                return f"{whole // size}{unit}"
    return f"{millis:g}ms"


def _size(value: int | None) -> str:
    """Bytes in the largest binary unit that divides them exactly: 10MiB, 64KiB, 1000B."""
    if value is None:
        return "-"
    for unit, size in _SIZE_UNITS:
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


def _forward(route: dict[str, Any]) -> str:
    if route.get("rewrite"):
        return f"rewrite {route['rewrite']}"
    if route.get("strip_prefix"):
        return f"strip_prefix {route['strip_prefix']}"
    return "as is"


def _print_errors(error: ConfigError, file: str | None = None) -> None:
    for each in error.errors:
        if each.file is None:
            each.file = file
        print(each, file=sys.stderr)
