"""Builds the compiled hot path, ``fastgw._core``, from ``fastgw/_core.pyx`` and its fragments."""

import os
import sys

import Cython
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("FASTGW_DEBUG") == "1"
# The bench flavour adds the C-loop entry points bench/micro times (fastgw/_native/bench.pxi).
bench = os.environ.get("FASTGW_BENCH") == "1"

extension = Extension(
    "fastgw._core",
    ["fastgw/_core.pyx"],
    extra_compile_args=["-O2"] + (["-O0", "-g"] if debug else []),
    define_macros=[
        ("FASTGW_DEBUG", "1" if debug else "0"),
        ("FASTGW_CYTHON_VERSION", f'"{Cython.__version__}"'),
    ],
)

# `make` installs the package (and its dependencies) with FASTGW_SKIP_CORE=1 and then builds
# the core once, in place, with the virtualenv's Cython: building it in pip's isolated
# environment too would compile it twice.
skip_core = os.environ.get("FASTGW_SKIP_CORE") == "1"

setup(
    ext_modules=[]
    if skip_core
    else cythonize(
        [extension],
        language_level=3,
        compile_time_env={"FASTGW_DEBUG": debug, "FASTGW_BENCH": bench},
        # A flavour switch changes no source file: `build_ext --force` (the Makefile passes
        # it) must regenerate the C file too, not only recompile it.
        force="--force" in sys.argv,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
