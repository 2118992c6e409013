# The two commands: `make demo` (the whole pipeline on the embedded default) and `make test`.
# Both create .venv and install the pinned dependencies on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
BATCH_ASSETS_HOME ?= $(CURDIR)/.batch-assets

.PHONY: install test-deps demo test test-fast ui dev validate lint bench constraints clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Debian packages the tests run for real: Chromium (UI screenshots), a Prometheus Pushgateway (metrics) and
# PostgreSQL 15 (instance storage). Installed quietly when missing and when running as root with apt-get;
# otherwise the tests that need them fail saying what to install.
TEST_DEBS := chromium prometheus-pushgateway postgresql-15
test-deps:
	@missing=""; for p in $(TEST_DEBS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $$missing (apt-get)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing Debian packages for the tests: $$missing (apt-get install -y $$missing)" >&2; \
	fi

demo: install
	BATCH_ASSETS_HOME=$(BATCH_ASSETS_HOME) $(BIN)/batch-assets demo

test: install test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 --dist loadfile

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

# BENCH_ARGS go to bench_scoring.py (e.g. --full, --rounds 5); SCALEOUT_ARGS to bench_scaleout.py
# (e.g. --partitions 32 --rows 200000, --storage local). Results land in benchmarks/results/ (git-ignored).
bench: install
	mkdir -p benchmarks/results
	set -o pipefail; $(BIN)/python benchmarks/bench_scoring.py $(BENCH_ARGS) | tee benchmarks/results/scoring.md
	set -o pipefail; $(BIN)/python benchmarks/bench_backfill.py | tee benchmarks/results/backfill.md
	set -o pipefail; $(BIN)/python benchmarks/bench_scaleout.py $(SCALEOUT_ARGS) | tee benchmarks/results/scaleout.md

# Refresh constraints.txt from the current .venv after changing dependencies in pyproject.toml.
constraints:
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
