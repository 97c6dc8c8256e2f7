# The one entry point. `make dev` starts the platform on embedded engines; `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dev test lint fmt typecheck pytest check migration migrate migrations-check bench bench-harness bench-quick bench-short fuzz lock clean

# Fresh Debian/Ubuntu machine: create the venv if needed and install the locked set.
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { echo "installing python3-venv"; \
		(apt-get update -qq && apt-get install -y -qq python3-venv) || sudo apt-get install -y -qq python3-venv; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/taskgate dev

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks
	$(BIN)/ruff format --check app tests benchmarks

fmt: $(STAMP)
	$(BIN)/ruff check --fix app tests benchmarks
	$(BIN)/ruff format app tests benchmarks

# What and how strictly: [tool.mypy] in pyproject.toml (strict: app, tests, benchmarks).
typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The benchmark harness's quick mode last: it checks that every scenario runs and gives figures
# (never a speed), in about two minutes of its own.
test: lint typecheck pytest
	$(MAKE) --no-print-directory bench-quick

check: test

migration: $(STAMP)
	@test -n "$(m)" || { echo 'usage: make migration m="add task leases"'; exit 2; }
	$(BIN)/alembic revision --autogenerate -m "$(m)"

migrate: $(STAMP)
	$(BIN)/taskgate migrate

# schemathesis over the served OpenAPI document (tests/e2e/test_fuzz.py): `make test` runs a short
# seeded pass; this one tries many more examples per operation and the stateful phase.
fuzz: $(STAMP)
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-300} FUZZ_PHASES=$${FUZZ_PHASES:-examples,coverage,fuzzing,stateful} \
		$(BIN)/pytest tests/e2e/test_fuzz.py -o timeout=3600 $(PYTEST_ARGS)

migrations-check: $(STAMP)
	$(BIN)/pytest tests/integration/test_migrations.py

# docs/benchmarks.md. bench: the harness (taskgate against raw Celery, Flower, a bare FastAPI app
# and PgQueuer, same run, same engines; rewrites the results in the docs), then `taskgate dev` to
# /health/ready (cold, warm) and a worker's memory on file jobs. bench-quick: the harness on small
# sizes (run by `make test`); bench-short: the other two once on small inputs.
bench: bench-harness
	$(BIN)/python -m benchmarks.dev_startup
	$(BIN)/python -m benchmarks.file_memory

bench-harness: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

bench-short: $(STAMP)
	$(BIN)/python -m benchmarks.dev_startup --short
	$(BIN)/python -m benchmarks.file_memory --short

# Re-resolve the pinned set after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^taskgate' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
