# Quick start: `make run` (environment + the main job on the embedded default), `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
EXPERIMENT := $(shell sed -n 's/^experiment: *//p' config.yaml)
PROFILE ?= profiles/local

.PHONY: env run report test test-slow lint bench clean

env: $(VENV)/.installed

# torch is pinned to the CPU build (2.13.0) and installed first, so nothing pulls CUDA wheels.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

run: env
	$(BIN)/snakemake --profile $(PROFILE) all
	$(BIN)/snakemake --profile $(PROFILE) --report results/$(EXPERIMENT)/report.html

test: env
	$(BIN)/pytest

test-slow: env
	$(BIN)/pytest -m slow

lint: env
	$(BIN)/ruff check workflow tests
	$(BIN)/snakemake --lint

bench: env
	$(BIN)/python tests/benchmarks/bench_run.py

clean:
	rm -rf results logs .snakemake
