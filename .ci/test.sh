#!/usr/bin/env bash
# Full test run: start PostgreSQL + Redis, lint, pytest, and ALWAYS stop the
# services afterwards while keeping the exit code of whatever failed.
# Called by `make test` (after `make install`); extra args go to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
SERVICES=.ci/services.sh

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$SERVICES" stop || echo "test.sh: WARNING: stopping services failed" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$SERVICES" start
# tests/deploy check docker-compose.yml with Debian's docker-compose (no Docker engine needed).
"$SERVICES" tools
# DATABASE_URL and REDIS_URL for the services we just started.
eval "$("$SERVICES" env)"

# Same checks as `make lint`.
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy" app
# The layer contracts of pyproject.toml ([tool.importlinter]): no import points upward.
"$VENV/bin/lint-imports" --no-cache --no-logo

"$VENV/bin/pytest" "$@"
