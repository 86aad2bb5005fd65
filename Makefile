# Quick start: `make run` (environment + the main job on the embedded default), `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PROFILE ?= profiles/local
# A config of your own: `make run CONFIG=my.yaml` (it lists only what differs from config.yaml).
CONFIG ?=
CONFIGFLAG := $(if $(CONFIG),--configfile=$(CONFIG))
NAME := $(shell sed -n 's/^name: *\([^ #]*\).*/\1/p' $(CONFIG) config.yaml | head -n 1)

.PHONY: env run check prefetch test test-slow lint bench plan slurm-profile clean

env: $(VENV)/.installed

# torch is pinned to the CPU build (2.13.0) and installed first, so nothing pulls CUDA wheels.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

run: env check
	$(BIN)/snakemake --profile $(PROFILE) $(CONFIGFLAG) all
	$(BIN)/snakemake --profile $(PROFILE) $(CONFIGFLAG) --report results/$(NAME)/report.html

# The config read strictly (file and line of a syntax error or duplicate key) and validated.
check: env
	$(BIN)/python -m elasticity.configfile $(CONFIG)

# Everything a config reads from a hub (released models, datasets, scorer models) into
# hub.cache, with the commit each revision resolved to; run it where the hub is reachable (a
# cluster's login node). Jobs then read the cache offline. `make prefetch CONFIG=...`
prefetch: env check
	$(BIN)/snakemake --cores 1 $(CONFIGFLAG) prefetch

test: env
	$(BIN)/pytest

test-slow: env
	$(BIN)/pytest -m slow

lint: env
	$(BIN)/ruff check workflow tests
	$(BIN)/snakemake --lint

bench: env
	$(BIN)/python tests/benchmarks/bench_compare.py
	$(BIN)/python tests/benchmarks/bench_dryrun.py
	$(BIN)/python tests/benchmarks/bench_bad_configs.py
	$(BIN)/python tests/benchmarks/bench_claims.py

# The plan before the run: rule graph, job DAG and per-rule job counts of a config
# (`make plan CONFIG=my.yaml` for yours).
PLAN := $(BIN)/snakemake $(CONFIGFLAG) --cores 1
plan: env check
	@command -v dot >/dev/null || { echo "graphviz's dot is missing: apt-get install graphviz"; exit 1; }
	mkdir -p dag
	$(PLAN) --rulegraph dot all | dot -Tsvg > dag/rulegraph.svg
	$(PLAN) --dag dot all | dot -Tsvg > dag/jobs.svg
	$(PLAN) -n --quiet rules all | tee dag/job_counts.txt
	@echo "wrote dag/rulegraph.svg dag/jobs.svg dag/job_counts.txt"

# Makes `snakemake --profile slurm` find profiles/slurm (a link in ~/.config/snakemake),
# unless a profile of that name is already there: that one is left alone.
PROFILE_HOME := $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake
slurm-profile:
	@mkdir -p $(PROFILE_HOME)
	@if [ -e $(PROFILE_HOME)/slurm ] && [ "$$(readlink $(PROFILE_HOME)/slurm)" != "$(CURDIR)/profiles/slurm" ]; then \
		echo "$(PROFILE_HOME)/slurm exists and is not ours: left alone; use --profile profiles/slurm"; \
	else ln -sfn $(CURDIR)/profiles/slurm $(PROFILE_HOME)/slurm && echo "linked $(PROFILE_HOME)/slurm -> profiles/slurm"; fi

clean:
	rm -rf results logs .snakemake
