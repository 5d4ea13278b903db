# fastgw: `make run` serves the example gateway in front of the example backend;
# `make test` runs the whole suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE_SOURCES := fastgw/_core.pyx $(wildcard fastgw/_native/*.pxi) \
	$(wildcard fastgw/*.pxd fastgw/_native/*.pxd) setup.py

.PHONY: run test build build-bench debug lint bench bench-e2e bench-policy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The package and its dependencies, without the core (FASTGW_SKIP_CORE): the stamp below
# builds it once, in place, with the virtualenv's own Cython and setuptools.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade 'setuptools>=77' wheel 'Cython>=3.0'
	FASTGW_SKIP_CORE=1 $(BIN)/pip install -q -e '.[test,dev]'
	touch $@

# One stamp per flavour of the core, and only the built flavour's stamp exists: `make test`
# after `make bench` (or the reverse) rebuilds, two runs of the same target do not. --force
# because a flavour switch changes no source file.
fastgw/_core.stamp: $(CORE_SOURCES) $(VENV)/.installed
	rm -f fastgw/_core-bench.stamp
	$(BIN)/python setup.py -q build_ext --inplace --force
	touch $@

# The bench flavour: the default core plus the C-loop entry points bench/micro times.
fastgw/_core-bench.stamp: $(CORE_SOURCES) $(VENV)/.installed
	rm -f fastgw/_core.stamp
	FASTGW_BENCH=1 $(BIN)/python setup.py -q build_ext --inplace --force
	touch $@

build: fastgw/_core.stamp

build-bench: fastgw/_core-bench.stamp

debug: $(VENV)/.installed
	FASTGW_DEBUG=1 $(BIN)/python setup.py -q build_ext --inplace --force
	rm -f fastgw/_core.stamp fastgw/_core-bench.stamp

run: build
	@$(BIN)/python examples/run_demo.py

test: build
	@command -v redis-server >/dev/null 2>&1 || echo "redis-server not found: Redis rate-limit tests are skipped (apt-get install redis-server)"
	$(BIN)/python -m pytest -q tests

# stubtest checks _core.pyi against the default flavour of the core (the bench one has more
# entry points), hence the build; pyproject's [tool.mypy] keeps its type check to the stub.
# Cython classes are PEP 800 disjoint bases, which the stub leaves unmarked; the allowlist
# names what else the module has and the stub leaves out, and why.
lint: fastgw/_core.stamp
	$(BIN)/ruff check fastgw tests bench examples
	$(BIN)/ruff format --check fastgw tests bench examples
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/cython-lint fastgw/_core.pyx fastgw/_native/*.pxi \
		fastgw/_core.pxd fastgw/_native/*.pxd
	$(BIN)/python -m mypy.stubtest fastgw._core --ignore-disjoint-bases \
		--mypy-config-file pyproject.toml \
		--allowlist fastgw/_core.stubtest-allowlist

bench: build-bench
	$(BIN)/python -m pytest bench/micro --benchmark-only -q

bench-e2e: build
	$(BIN)/python -m bench.e2e

# CPU_US / USER_US: fastgw[plain]'s CPU and user µs per request from an e2e run.
bench-policy: build
	$(BIN)/python bench/policy_cost.py --cpu-us $(or $(CPU_US),16) --user-us $(or $(USER_US),3)

clean:
	rm -rf build fastgw/_core.*.so fastgw/_core.c fastgw/_core.stamp fastgw/_core-bench.stamp
