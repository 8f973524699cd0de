# paysaga: two commands set everything up. `make dev` runs the stack, `make test` checks it.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

# Bandit reads the product packages; the bench starts its own stack with throwaway secrets
# (ruff's S105 is waived there for the same reason).
PRODUCT := api workflows activities db gateways domain paysaga tickets mail observability worker.py

.PHONY: install dev test lint bench bench-quick bench-drop integrity clean

install: $(VENV)/.installed

# Re-installs only when the dependency list changes; the project itself is editable.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

dev: install
	$(BIN)/paysaga dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/bandit -q -c pyproject.toml -r $(PRODUCT)

test: lint
	$(BIN)/pytest

# Full run (under 20 minutes): `make bench`; short run (under 5): `make bench-quick` or
# `make bench ARGS=--quick`; a ticket drop with mail on: `make bench-drop DROP=300` or
# `make bench ARGS="--drop 300"`. Reports land in bench/results/.
DROP ?= 300
bench: install
	$(BIN)/paysaga bench $(ARGS)

bench-quick: install
	$(BIN)/paysaga bench --quick

bench-drop: install
	$(BIN)/paysaga bench --drop $(DROP)

# The model-based integrity campaign (issue 12): `make integrity RUNS=200` runs 200 examples
# (STEPS steps each at most) against the real stack with faults, in SHARDS processes side by
# side (RUNS each, each its own stack and seed; MINUTES bounds each by time); merged figures go to
# build/integrity-report.json. `make test` runs a bounded one (8 examples of up to 12 steps).
RUNS    ?= 100
STEPS   ?= 25
SHARDS  ?= 1
MINUTES ?= 0
integrity: install
	$(BIN)/python -m tests.integrity.campaign --shards $(SHARDS) --runs $(RUNS) \
		--steps $(STEPS) --minutes $(MINUTES) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) .paysaga .pytest_cache .mypy_cache .ruff_cache
