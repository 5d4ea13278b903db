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

from fastgw import __version__
from fastgw.config import Config, config_schema, load_config
from fastgw.errors import ConfigError, GatewayError

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
        print(f"fastgw: error: {exc}", file=sys.stderr)
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve the gateway described by a config file")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file")
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
    run.set_defaults(handler=_run)

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
    if args.worker:
        # From the supervisor: the config it validated last, FILE only for reloads.
        config: Config = pickle.loads(sys.stdin.buffer.read())
    else:
        config = load_config(args.config)
    if args.workers is not None:
        config = msgspec.structs.replace(config, workers=args.workers)
    from fastgw import server

    if args.worker:
        return server.run_worker(
            config, args.config, args.listen_fd, args.ready_fd, args.control_fd, args.rate_fd
        )
    return int(server.run(config, config_file=args.config, watch=args.watch))


def _check(args: argparse.Namespace) -> int:
    status = 0
    for file in args.files:
        try:
            config = load_config(file)
            from fastgw.plan import build_plan

            build_plan(config, file=file)
        except ConfigError as exc:
            _print_errors(exc, file)
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
        for line in plan.explain(method, url):
            print(line)
    else:
        print(format_route_table(plan.describe_routes()))
    return 0


def _schema(args: argparse.Namespace) -> int:
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
    policies, then its own (registered names or "module:attr" references).
    """
    header = [*(column.upper() for column in _COLUMNS), "POLICIES", "FORWARD"]
    rows = [header]
    for route in routes:
        rows.append(
            [*(_cell(route.get(column)) for column in _COLUMNS), _policies(route), _forward(route)]
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
