# Developer / CI entry points. `make test` works on a fresh clone: it builds the
# venv, starts a throwaway PostgreSQL + Redis (.ci/services.sh), lints, runs
# pytest against them and always stops them again.
#
#   make install   venv in .venv (re-runs only when pyproject.toml or deploy/requirements.lock change)
#   make lock      pin the runtime dependencies again (deploy/requirements.lock, the image's)
#   make lint      ruff check, ruff format --check, mypy app, lint-imports (the layers)
#   make services  start PostgreSQL (127.0.0.1:55432) and Redis (127.0.0.1:56379)
#   make test      install + services + lint + pytest, then stop services
#                  (extra pytest args: make test PYTEST_ARGS='-k foo -x')
#   make run       dualmcp standalone --demo (on another port: make run PORT=9000)
#   make bench     python -m bench (extra args: make bench BENCH_ARGS=--quick)
#   make screenshots  the runs page and a run page, from the browser tests, in docs/screenshots
#   make settings-docs  .env.example and docs/configuration.md's tables, from app/config.py
#   make clean     stop services, remove venv, state and caches

VENV   ?= .venv
# Where `make run` serves.
HOST   ?= 127.0.0.1
PORT   ?= 8000
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export VENV

# apt-get needs root; use sudo when we are not root (only if python3-venv is missing).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install lock lint services stop-services test run bench screenshots settings-docs clean

install: $(STAMP)

# Create the venv once. Debian/Ubuntu ship `venv` separately (python3-venv);
# install it if `python3 -m venv` fails because ensurepip is missing.
$(PY):
	python3 -m venv $(VENV) || { \
	  rm -rf $(VENV); \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv && \
	  python3 -m venv $(VENV); }

# The stamp makes the (slow) pip install re-run only when pyproject.toml or the lock changes.
# The lock constrains the runtime dependencies to the versions the image installs.
$(STAMP): pyproject.toml deploy/requirements.lock | $(PY)
	$(PY) -m pip install -c deploy/requirements.lock -e '.[dev]'
	touch $@

# deploy/requirements.lock: the runtime dependencies and the otel extra (no dev tools) resolved
# afresh in a throwaway venv and pinned; run after changing pyproject.toml's dependencies.
lock: | $(PY)
	rm -rf .ci/.lock-venv && $(PY) -m venv .ci/.lock-venv
	.ci/.lock-venv/bin/pip install --quiet '.[otel]'
	{ sed -n '1,2p' deploy/requirements.lock; .ci/.lock-venv/bin/pip freeze --exclude dualmcp; } \
	  > deploy/requirements.lock.new && mv deploy/requirements.lock.new deploy/requirements.lock
	rm -rf .ci/.lock-venv build

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app
	$(VENV)/bin/lint-imports --no-cache --no-logo

services:
	.ci/services.sh start

stop-services:
	.ci/services.sh stop

# .ci/test.sh starts the services, exports their env, lints, runs pytest and
# stops the services on exit (trap), keeping pytest's exit code.
test: install
	.ci/test.sh $(PYTEST_ARGS)

# A taken port is said in one line before anything is created: make run PORT=9000
run: install
	$(VENV)/bin/dualmcp standalone --demo --host $(HOST) --port $(PORT)

bench: install
	$(PY) -m bench $(BENCH_ARGS)

# The browser tests (tests/ui) against the real stack, keeping their screenshots; the services
# (and Debian's chromium, `tools`) as `make test` has them, stopped again afterwards.
screenshots: install
	.ci/services.sh start && .ci/services.sh tools && eval "$$(.ci/services.sh env)" && \
	  DUALMCP_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(VENV)/bin/pytest tests/ui/test_browser.py -q; \
	  rc=$$?; .ci/services.sh stop; exit $$rc

# .env.example and the tables of docs/configuration.md are generated: edit app/config.py.
settings-docs: install
	$(PY) -m app.settings_reference --write

clean:
	-.ci/services.sh clean
	-DUALMCP_SERVICES_DIR=$(CURDIR)/.ci/.services-bench/services DUALMCP_TEST_PG_PORT=55532 \
	  DUALMCP_TEST_REDIS_PORT=56479 .ci/services.sh clean
	rm -rf $(VENV) .ci/.services .ci/.services-bench *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
