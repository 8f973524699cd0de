# paysaga: two commands set everything up. `make dev` runs the stack, `make test` checks it.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install dev test lint bench bench-quick clean

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

test: lint
	$(BIN)/pytest

# Full run (under 20 minutes): `make bench`; short run (under 5): `make bench-quick` or
# `make bench ARGS=--quick`. Reports land in bench/results/.
bench: install
	$(BIN)/paysaga bench $(ARGS)

bench-quick: install
	$(BIN)/paysaga bench --quick

clean:
	rm -rf $(VENV) .paysaga .pytest_cache .mypy_cache .ruff_cache
