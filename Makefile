# Developer and CI entry points. CI runs `make test` (through .ci/run) on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamps record what is installed, so a second `make` does not reinstall.
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: serve test lint typecheck pytest test-deps docs bench faults clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV): pyproject.toml requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -e . -r requirements-dev.txt
	touch $(RUNTIME) $@

## serve: install and run the server on http://127.0.0.1:8088 with its store in ./trackyard-data
serve: $(RUNTIME)
	$(BIN)/trackyard serve

## test: lint, type-check and run the whole test suite (what CI runs)
test: lint typecheck pytest

lint: $(DEV)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(DEV)
	$(BIN)/mypy

## test-deps: Debian chromium, the pinned npm SDKs and the browser bundle the SDK tests drive
test-deps:
	bash scripts/install-test-deps

pytest: $(DEV) test-deps
	$(BIN)/pytest

## bench: trackyard against this machine's ceilings (wrk on loopback); writes bench/results/*.json
##   e.g. make bench BENCH_ARGS="--scrape-metrics --only track" (see python bench/run.py --help)
##   make bench BENCH_ARGS="--backend nats|postgresql": one and two collector nodes on a cluster (bench/cluster.py)
bench: $(DEV)
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## faults: the full fault suite (SIGKILL crash loop, disk full, overload, HTTP fuzz); prints one table
faults: $(DEV)
	$(BIN)/python scripts/faults.py

## docs: regenerate docs/cli.md from the CLI's own --help
docs: $(DEV)
	$(BIN)/python scripts/cli_docs.py > docs/cli.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/js/node_modules tests/js/dist
