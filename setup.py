"""Builds the compiled hot path, ``fastgw._core``, from ``fastgw/_core.pyx`` and its fragments."""

import os

import Cython
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("FASTGW_DEBUG") == "1"

extension = Extension(
    "fastgw._core",
    ["fastgw/_core.pyx"],
    extra_compile_args=["-O2"] + (["-O0", "-g"] if debug else []),
    define_macros=[
        ("FASTGW_DEBUG", "1" if debug else "0"),
        ("FASTGW_CYTHON_VERSION", f'"{Cython.__version__}"'),
    ],
)

setup(
    ext_modules=cythonize(
        [extension],
        language_level=3,
        compile_time_env={"FASTGW_DEBUG": debug},
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
