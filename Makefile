# paysaga: two commands set everything up. `make dev` runs the stack, `make test` checks it.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install dev test lint bench clean

install: $(VENV)/.installed

# Re-installs only when the dependency list changes; the project itself is editable.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

dev: install
	$(BIN)/paysaga dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: install
	@echo "make bench: the benchmark suite is not built yet (see the benchmarks issue)" >&2; exit 2

clean:
	rm -rf $(VENV) .paysaga .pytest_cache .mypy_cache .ruff_cache
