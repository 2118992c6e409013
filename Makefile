# The two commands: `make demo` (the whole pipeline on the embedded default) and `make test`.
# Both create .venv and install the pinned dependencies on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
BATCH_ASSETS_HOME ?= $(CURDIR)/.batch-assets

.PHONY: install demo test test-fast ui dev validate lint bench constraints clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	BATCH_ASSETS_HOME=$(BATCH_ASSETS_HOME) $(BIN)/batch-assets demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

ui dev: install
	BATCH_ASSETS_HOME=$(BATCH_ASSETS_HOME) $(BIN)/batch-assets init
	BATCH_ASSETS_HOME=$(BATCH_ASSETS_HOME) DAGSTER_HOME=$(BATCH_ASSETS_HOME)/dagster_home \
		$(BIN)/dagster dev -h $(HOST) -p $(PORT) -w workspace.yaml

validate: install
	BATCH_ASSETS_HOME=$(BATCH_ASSETS_HOME) DAGSTER_HOME=$(BATCH_ASSETS_HOME)/dagster_home \
		$(BIN)/dagster definitions validate -w workspace.yaml

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/bench_scoring.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_backfill.py

# Refresh constraints.txt from the current .venv after changing dependencies in pyproject.toml.
constraints:
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
