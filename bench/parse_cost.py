"""User-space instructions per parsed request head, by request-target shape.

Runs `_bench_parse` (the bench flavour of the core: `make bench` or FASTGW_BENCH=1) under
`valgrind --tool=callgrind` with two round counts for each target below; (Ir(large) -
Ir(small)) / (large - small) is what one parse costs, start-up cancelled out (200,000 rounds
apart, so that what start-up varies by is below one instruction a parse). Counts repeat
exactly on one build, so a change of a few instructions in the parser or the path normaliser
shows, where a timer on a shared VM would not.

    .venv/bin/python bench/parse_cost.py            # prints "target instructions" lines
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The ~250-byte GET of bench/micro/test_parser_bench.py, with these targets.
TARGETS = {
    "plain": b"/api/v1/users/12345/orders?limit=10",
    "dots": b"/api/v1/users/12345/orders.json?limit=10",
    "slashes": b"/api//v1/users/12345/orders?limit=10",
    "escapes": b"/api/v1/users/caf%C3%A9/orders?limit=10",
}
HEAD = (
    b"Host: api.example.com\r\nUser-Agent: curl/8\r\nAccept: application/json\r\n"
    b"Accept-Encoding: gzip\r\nAccept-Language: en-US\r\nAuthorization: Bearer ab12\r\n"
    b"X-Request-ID: 7f9c2a4e-1d3b\r\nConnection: keep-alive\r\n\r\n"
)
CHILD = (
    "import sys\n"
    "from fastgw._core import _bench_parse\n"
    "_bench_parse(bytes.fromhex(sys.argv[1]), int(sys.argv[2]))\n"
)


def instructions(request: bytes, rounds: int, checkout: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                CHILD,
                request.hex(),
                str(rounds),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(checkout), "PYTHONHASHSEED": "0"},
        )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{run.stderr}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", default="2000,202000", help="two round counts")
    parser.add_argument("--checkout", default=str(REPO), help="a checkout with its core built")
    args = parser.parse_args(argv)
    small, large = (int(r) for r in args.rounds.split(","))
    for name, target in TARGETS.items():
        request = b"GET " + target + b" HTTP/1.1\r\n" + HEAD
        low = instructions(request, small, Path(args.checkout))
        high = instructions(request, large, Path(args.checkout))
        print(f"{name} {(high - low) // (large - small)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
