# paysaga: two commands set everything up. `make dev` runs the stack, `make test` checks it.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

# Bandit reads the product packages; the bench starts its own stack with throwaway secrets
# (ruff's S105 is waived there for the same reason).
PRODUCT := api workflows activities db gateways domain paysaga tickets mail observability worker.py

.PHONY: install dev test lint lock audit bench bench-quick bench-drop bench-vendors integrity clean

install: $(VENV)/.installed

# Re-installs only when the lock (or the project's own metadata) changes. Every package comes
# from requirements-dev.lock, each file checked against its hash (pip refuses anything else); the project itself is editable and
# brings nothing in (--no-deps), built by the locked setuptools (--no-build-isolation).
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# After a change to pyproject.toml's dependencies: `make lock` pins what changed (versions
# already locked stay; `make lock UPGRADE=--upgrade` moves everything to the newest).
# requirements.lock is the image's (runtime only), at the same versions.
LOCK = $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --no-annotate --custom-compile-command 'make lock'
lock: install
	$(LOCK) $(UPGRADE) pyproject.toml --extra test --extra bench deploy/build-tools.in \
		-o requirements-dev.lock
	$(LOCK) pyproject.toml deploy/build-tools.in --constraint requirements-dev.lock \
		-o requirements.lock

# Known vulnerabilities in the locked versions, where advisory data can be reached (PyPI's
# per-release JSON); without it the audit says so and skips rather than pass on no data.
audit: install
	@if $(BIN)/python -c "import json, urllib.request as u; \
		json.load(u.urlopen('https://pypi.org/pypi/pip/26.3/json', timeout=10))['vulnerabilities']" \
		2>/dev/null; then \
		$(BIN)/pip-audit --progress-spinner off --disable-pip --require-hashes -r requirements-dev.lock; \
	else echo "pip-audit skipped: no advisory data reachable (PyPI's release JSON did not answer)"; fi

dev: install
	$(BIN)/paysaga dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/bandit -q -c pyproject.toml -r $(PRODUCT)

test: lint audit
	$(BIN)/pytest

# Full run (under 20 minutes): `make bench`; short run (under 5): `make bench-quick` or
# `make bench ARGS=--quick`; a ticket drop with mail on: `make bench-drop DROP=300` or
# `make bench ARGS="--drop 300"`. Reports land in bench/results/.
DROP ?= 300
# DROP_SECONDS=15 with 300: the capacity rate (20/s) on these 2 cores.
DROP_SECONDS ?= 60
bench: install
	$(BIN)/paysaga bench $(ARGS)

bench-quick: install
	$(BIN)/paysaga bench --quick

bench-drop: install
	$(BIN)/paysaga bench --drop $(DROP) --drop-seconds $(DROP_SECONDS)

# Webhook -> new_order latency on the vendors' live stream (issue 28) with VENDORS connections
# open, webhooks at RATE/s (half capacity: the last quick bench measured 30/s) for
# VENDOR_SECONDS; WAKE=poll runs the stream's follower polling instead of woken by NOTIFY.
VENDORS ?= 100
RATE ?= 15
VENDOR_SECONDS ?= 30
WAKE ?= notify
bench-vendors: install
	$(BIN)/paysaga bench --vendors $(VENDORS) --rate $(RATE) --seconds $(VENDOR_SECONDS) --wake $(WAKE)

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
