# The one entry point. `make dev` starts the platform on embedded engines; `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dev test test-lowest lint fmt typecheck pytest check migration migrate migrations-check bench bench-harness bench-quick bench-short soak soak-short fuzz lock clean

# Fresh Debian/Ubuntu machine: create the venv if needed and install the locked dev set, every
# file checked against its hash (pip included), then the project itself. The project is its own
# pip call: an editable install has no hash, and --no-deps keeps it from resolving anything.
$(STAMP): pyproject.toml requirements/dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { echo "installing python3-venv"; \
		(apt-get update -qq && apt-get install -y -qq python3-venv) || sudo apt-get install -y -qq python3-venv; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e '.[dev]'
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

# One pytest process per core (PYTEST_WORKERS=0: one process), each with engines of its own; a
# test file runs in one of them, so its tests keep their order and their module's fixtures.
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

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

# docs/benchmarks.md, "Soak": mixed load with a worker SIGKILLed every 5 minutes, then checks that
# no task is stuck or lost and that memory and latency stay flat. soak: 30 minutes (not in CI);
# soak-short: the same checks over 45 s with two kills (tests/e2e/test_soak.py runs it in pytest).
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

soak-short: $(STAMP)
	$(BIN)/python -m benchmarks.soak --short $(SOAK_ARGS)

# Re-resolve the locks (requirements/, docs/decisions/0020) after changing dependencies in
# pyproject.toml. Each keeps the pins it has unless pyproject.toml rules them out; to move on,
# LOCK_ARGS="--upgrade" or "--upgrade-package NAME". runtime, flower and audit (pip-audit alone,
# for CI) take the dev lock's versions, so the image runs what the suite tested; lowest holds the
# lowest versions pyproject.toml allows for its own dependencies (`make test-lowest`). Universal:
# one file for every platform, from Python 3.11 up.
COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes
lock: $(STAMP)
	$(COMPILE) pyproject.toml --extra dev $(LOCK_ARGS) -o requirements/dev.txt
	$(COMPILE) pyproject.toml -c requirements/dev.txt -o requirements/runtime.txt
	$(COMPILE) pyproject.toml --extra flower -c requirements/dev.txt -o requirements/flower.txt
	$(COMPILE) requirements/audit.in -c requirements/dev.txt -o requirements/audit.txt
	$(COMPILE) pyproject.toml --extra dev --resolution lowest-direct $(LOCK_ARGS) -o requirements/lowest.txt

# The lowest versions pyproject.toml allows (requirements/lowest.txt) in a venv of their own: the
# unit tests and an integration subset over every engine (PostgreSQL, Redis, S3, Celery messages).
LOWEST := .venv-lowest
LOWEST_TESTS ?= tests/unit tests/integration/tasks/test_routes.py tests/integration/tasks/test_job_messages.py \
	tests/integration/files/test_storage.py tests/integration/test_packaging.py
test-lowest:
	rm -rf $(LOWEST) && $(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --require-hashes -r requirements/lowest.txt
	$(LOWEST)/bin/python -m pip install --quiet --no-deps -e .
	$(LOWEST)/bin/pytest $(LOWEST_TESTS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache
