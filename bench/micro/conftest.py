"""The micro-benchmarks time the core's C-loop entry points, which only the bench flavour of
the core has (FASTGW_BENCH=1; `make bench` builds it)."""

import pytest

from fastgw import _core


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(_core, "_bench_parse"):
        raise pytest.UsageError(
            "this fastgw._core is the default build, without the bench entry points: "
            "run `make bench`, or build with FASTGW_BENCH=1 python setup.py build_ext "
            "--inplace --force"
        )
