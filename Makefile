# Developer entry points. `make run` and `make test` are the two a newcomer needs.
# GNU make; recipes use tabs.

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
PORT ?= 8000

# The embedded default (SQLite, in-memory channel layer, eager Celery). The URLs are set
# empty rather than unset so that a DATABASE_URL/REDIS_URL in .env cannot switch it back.
EMBEDDED := env DATABASE_URL= REDIS_URL= DJANGO_SETTINGS_MODULE=config.settings.local

.PHONY: help venv install run test test-fast test-clock axe typecheck lint format stack migrate seed clean bench bench-api bench-worker bench-ws

help: ## List the targets
	@echo "make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-9s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when a requirements file is newer than the last install.
$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP) ## Create .venv and install requirements-dev.txt (when they changed)

install: $(STAMP) ## Same as venv

run: install ## Embedded product on http://127.0.0.1:8000 (SQLite, no Redis), demo data
	$(EMBEDDED) $(PY) manage.py migrate --noinput
	$(EMBEDDED) $(PY) manage.py seed_demo
	$(EMBEDDED) $(PY) manage.py runserver 127.0.0.1:8000

# pytest-xdist workers for make test and test-fast ("auto": one per core; 0 runs them in
# this process, for --pdb). Each xdist worker has its own in-memory SQLite database.
PYTEST_WORKERS ?= auto
# PYTEST_ARGS may narrow test-fast to nothing selected (pytest's exit status 5): not a failure.
PYTEST_PASS = run_pass() { "$$@" || { status=$$?; [ $$status -eq 5 ] || exit $$status; }; }; run_pass
FAST_TESTS := tests/domain tests/services tests/api tests/pages

# The whole suite on PostgreSQL and Redis (when they answer; CI starts them), then, on the
# embedded default that `make run` serves (SQLite, in-memory layers, eager Celery), every
# test that does not need PostgreSQL or Redis again. The first and last passes run under
# pytest-xdist (each xdist worker is a process with its own test database and run prefix);
# the tests that start workers, daphne or Chromium run after, one at a time.
# axe-core, the accessibility checker the browser tests inject into every page (npm).
AXE_VERSION := 4.11.1
AXE_STAMP := var/node/.axe-core-$(AXE_VERSION)
$(AXE_STAMP):
	npm install --silent --no-save --no-package-lock --prefix var/node axe-core@$(AXE_VERSION)
	touch $(AXE_STAMP)

axe: $(AXE_STAMP) ## Install axe-core for the accessibility test (npm, into var/node)

test: install axe ## Migrations check, ruff check, pytest on PostgreSQL+Redis (parallel, then worker/browser), then on SQLite (PYTEST_ARGS="...")
	$(EMBEDDED) SQLITE_PATH=:memory: $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(PYTEST_PASS) $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not worker and not browser" $(PYTEST_ARGS)
	$(PYTEST_PASS) $(PY) -m pytest -n 0 -m "worker or browser" $(PYTEST_ARGS)
	$(PYTEST_PASS) env SCHEDULING_TEST_EMBEDDED=1 $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not postgres and not redis" --clock $(EMBEDDED_CLOCK) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-clock

# The inner loop's tests again with the clock started ten minutes either side of Manila's
# midnight at a month's end (--clock, tests/conftest.py): "today", "tomorrow" and a day's
# bounds are where a test that reads the real date breaks. And at 21:30, when a visit for
# "soon" cannot end before midnight and moves past the dispatch horizon (a test that
# expected it on the queue failed in CI only in the evening). Each clock runs the fast
# tests that need PostgreSQL or Redis too (a few seconds). The embedded pass of `make
# test` runs at 07:30, when "now plus some days" lands inside the working day beside a
# test's bookings (a fixture that did so failed in CI only at that hour); the PostgreSQL
# pass runs at the real time.
CLOCKS := 2027-01-31T23:50+08:00 2027-02-01T00:10+08:00 2027-01-31T21:30+08:00
EMBEDDED_CLOCK := 2027-01-31T07:30+08:00
CLOCK_MARKS := not slow and not browser and not worker
test-clock: install ## The fast tests at Manila 23:50 and 00:10 on a month's last night, and at 21:30
	for clock in $(CLOCKS); do \
	  $(PYTEST_PASS) env SCHEDULING_TEST_EMBEDDED=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) \
	    -m "not postgres and not redis and $(CLOCK_MARKS)" \
	    $(FAST_TESTS) --clock $$clock $(PYTEST_ARGS) || exit 1; \
	  $(PYTEST_PASS) $(PY) -m pytest -q -n $(PYTEST_WORKERS) \
	    -m "(postgres or redis) and $(CLOCK_MARKS)" \
	    $(FAST_TESTS) --clock $$clock $(PYTEST_ARGS) || exit 1; \
	done

# The inner loop: the domain, services, API and pages tests on the embedded default, in
# parallel. Leaves out everything marked postgres, redis, slow, browser or worker, and the
# stream, worker, browser and ops folders; `make test` runs them all.
test-fast: install ## Domain, services, API, pages on SQLite in parallel; no slow/browser/worker/postgres/redis, no stream
	$(PYTEST_PASS) env SCHEDULING_TEST_EMBEDDED=1 $(PY) -m pytest -n $(PYTEST_WORKERS) \
	  -m "not postgres and not redis and not slow and not browser and not worker" \
	  $(FAST_TESTS) $(PYTEST_ARGS)

typecheck: install ## mypy over scheduling/ and config/ (strict where pyproject.toml says)
	$(VENV)/bin/mypy

lint: install ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## Fix what ruff can, then format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

stack: install ## Full stack on DATABASE_URL/REDIS_URL: gunicorn, daphne, celery worker+beat
	@if [ -z "$$DATABASE_URL" ] || [ -z "$$REDIS_URL" ]; then \
	  echo "make stack needs DATABASE_URL and REDIS_URL in the environment, e.g." >&2; \
	  echo "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/scheduling \\" >&2; \
	  echo "  REDIS_URL=redis://127.0.0.1:6379/0 make stack" >&2; \
	  echo "(use 'make run' for the embedded default without them)" >&2; \
	  exit 1; \
	fi
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput
	mkdir -p var
	# prometheus_client's multi-process files: wiped at each start, since a dead process's
	# counters would otherwise add to the new ones' (docs/operations.md#metrics).
	rm -rf var/metrics && mkdir -p var/metrics
	PROMETHEUS_MULTIPROC_DIR="$(CURDIR)/var/metrics" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" honcho start -f Procfile -p $(PORT)

migrate: install ## Apply migrations to the configured database
	$(PY) manage.py migrate --noinput

seed: install ## Load the demo data into the configured database (idempotent)
	$(PY) manage.py seed_demo

# The three below in turn and one dated report in bench/results/ (BENCH_ARGS=--quick: shorter).
bench: install ## All benchmarks, one report in bench/results/ (~15 min; --quick ~6 min)
	ulimit -n $$(ulimit -Hn) && $(PY) -m bench $(BENCH_ARGS)

# Creates or reuses the scheduling_bench database on 127.0.0.1:5432 (never another one);
# installs Debian's wrk on first use when it is missing (root only). BENCH_ARGS="--workers 3"
bench-api: install ## API benchmark: gunicorn + PostgreSQL, vs a bare view/insert (~4 min)
	$(PY) -m bench.api $(BENCH_ARGS)

# Creates or reuses the scheduling_bench_worker database on 127.0.0.1:5432 and uses Redis
# db 15; starts and stops its own workers. BENCH_ARGS="--pool threads --concurrency 8"
bench-worker: install ## Worker benchmark: dispatch and delivery, vs no-op tasks (~1.5 min)
	$(PY) -m bench.worker $(BENCH_ARGS)

# Creates or reuses the scheduling_bench_ws database on 127.0.0.1:5432; starts its own Redis
# and daphne on free loopback ports. BENCH_ARGS="--sockets 1000 --desk 100 --rate 200"
bench-ws: install ## Websocket benchmark: daphne + Redis; latency, fan-out, idle sockets (~4 min)
	ulimit -n $$(ulimit -Hn) && $(PY) -m bench.ws $(BENCH_ARGS)

clean: ## Remove the SQLite database, caches, collected static files and var/
	rm -rf db.sqlite3 db.sqlite3-* .pytest_cache .ruff_cache .hypothesis staticfiles var
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
