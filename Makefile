# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU build is enough for CI and laptops; on a CUDA host use e.g. `make run TORCH=torch==2.14.1`.
TORCH  ?= torch==2.13.0
ARGS   ?=

# Quiet and offline: no telemetry, no DNS lookups per process.
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := true
# A loaded 2-core machine can take longer than Prefect's 20 s to start its temporary server.
# seqlab's commands and `python flows/*.py` default to 120 s themselves; this covers the test
# harness, which uses Prefect's own start-up.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: run test test-fast test-components test-flows test-stats lint e2e install install-dev ui serve clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamp files: re-install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Train on the bundled default dataset: tune, fit, evaluate, register, promote.
run: install
	$(BIN)/seqlab run conf/default.yaml $(ARGS)

# Test files run in parallel, one file per worker (a file's module fixtures are built once):
# most flow tests wait on servers and subprocesses, so two workers fill two cores. `auto` is
# one per core, at most 4; `make test XDIST=0` runs everything in this process.
XDIST  ?= auto
PARALLEL := $(if $(filter 0,$(XDIST)),-p no:xdist,-n $(XDIST) --maxprocesses 4 --dist loadfile)

## Every lane but the browser: unit, components, flows (PostgreSQL tests skip when unreachable).
test: install-dev
	$(BIN)/python -m pytest -m "not e2e" $(PARALLEL) $(ARGS)

## Unit tests only: pure functions, no stores, servers or subprocesses (well under a minute).
test-fast: install-dev
	$(BIN)/python -m pytest tests/unit $(ARGS)

## Components on real stores: MLflow SQLite, Optuna storages, PostgreSQL, worker processes.
test-components: install-dev
	$(BIN)/python -m pytest tests/components $(PARALLEL) $(ARGS)

## Prefect flows and the `seqlab` command run for real.
test-flows: install-dev
	$(BIN)/python -m pytest tests/flows $(PARALLEL) $(ARGS)

## The statsforecast references' tests: statsforecast caps pandas below 3, so the `stats` extra
## gets its own environment rather than downgrading the one `make test` uses.
test-stats:
	$(MAKE) install-dev VENV=.venv-stats
	.venv-stats/bin/python -m pip install -q -e ".[stats]"
	.venv-stats/bin/python -m pytest tests/unit/test_references.py tests/unit/test_gate.py \
		tests/flows/test_references_flow.py $(ARGS)

## Lint and format check (ruff, with the line length pyproject.toml sets).
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Browser test of the MLflow UI (installs Debian's chromium + chromedriver when missing).
e2e: install-dev
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)
	$(BIN)/python -m pytest -m e2e tests/e2e $(ARGS)

ui: install
	$(BIN)/seqlab ui

serve: install
	$(BIN)/seqlab serve

bench: install-dev
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
