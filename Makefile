# The project's commands: `make demo` shows it working, `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin

# Corporate networks re-sign TLS: builds pass the host's CA bundle into images.
ifneq ($(wildcard /etc/ssl/certs/ca-certificates.crt),)
ALGOHOST_EXTRA_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
export ALGOHOST_EXTRA_CA_BUNDLE
endif
ALGOHOST_STATE_DIR ?= $(HOME)/.local/state/algohost
export ALGOHOST_STATE_DIR

LINT_PATHS := $(wildcard algohost tests bench faults)

.PHONY: help setup demo test lint bench faults down clean

help:
	@echo "make setup   install system packages (if missing) and the .venv"
	@echo "make demo    start the local stack and run the demo calls"
	@echo "make test    start the local stack, lint, run the whole test suite"
	@echo "make lint    ruff and mypy"
	@echo "make bench   start the local stack and run the benchmarks"
	@echo "make faults  the fault-injection suite on its own stack (about 20 minutes)"
	@echo "make down    stop the API and workers"
	@echo "make clean   stop them and remove the .venv and caches"

setup:
	bash scripts/setup.sh

demo: setup
	$(BIN)/algohost dev up
	$(BIN)/algohost dev demo

test: setup
	$(BIN)/algohost dev up
	$(MAKE) lint
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

bench: setup
	$(BIN)/algohost dev up
	$(BIN)/python -m bench
	$(BIN)/python -m bench.async_repeat --runs 8
	$(BIN)/python -m bench.artifacts_bench
	$(BIN)/python -m bench.notebook_bench
	$(BIN)/python -m bench.sweep_bench

down:
	if [ -x $(BIN)/algohost ]; then $(BIN)/algohost dev down; fi

clean: down
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +

# Not part of `make test`: slow and disruptive. Starts its own Redis (AOF), dockerd, OpenBao,
# API and workers, breaks one part at a time under load, and prints what was lost.
faults: setup
	$(BIN)/python -m faults
