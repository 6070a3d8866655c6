# Two commands do everything on a fresh machine:
#   make demo   installs into .venv, then runs the main job on the built-in data
#   make test   installs into .venv, lints and type-checks, then runs the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
REFERENCE_PACKAGES := energyflow==1.4.0 wasserstein==1.1.0 jetnet==0.2.5

.PHONY: install demo lint test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build (2.13.0); a bare requirement would pull a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	# reference packages of tests/evaluate/test_conformance.py, without their dependencies: the
	# wheels of wasserstein (needed by energyflow) pin numpy<2; the EFPs and jetnet's metrics run
	# with numpy 2, and jetnet's other dependencies come with the dev extra
	$(PY) -m pip install --quiet --no-deps $(REFERENCE_PACKAGES)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/jetfm demo

# lint (ruff) and type-check the public API (mypy, the files in pyproject.toml) first
lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# the slow end-to-end tests at full size as well
test-all: lint
	$(PY) -m pytest --run-slow $(PYTEST_ARGS)

bench: install
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
