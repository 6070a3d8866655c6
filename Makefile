# Two commands do everything on a fresh machine:
#   make demo   installs into .venv, then runs the main job on the built-in data
#   make test   installs into .venv, then runs the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build (2.13.0); a bare requirement would pull a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/jetfm demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# the slow end-to-end tests at full size as well
test-all: install
	$(PY) -m pytest --run-slow $(PYTEST_ARGS)

bench: install
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
