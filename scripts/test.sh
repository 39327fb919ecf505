#!/usr/bin/env bash
# The whole test suite in one command: venv + dev dependencies + pytest (unit, integration, acceptance, slow).
# Extra arguments go to pytest (e.g. -m "not slow", -k crash, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
if ! scripts/services.sh; then
  # Under CI a missing service must stop the run here, not surface later as skipped or failing tests.
  [ -n "${CI:-}" ] && { echo "services not ready (CI is set): stopping" >&2; exit 1; }
  echo "services not ready: PostgreSQL and RabbitMQ tests will skip" >&2
fi
.venv/bin/ruff check --quiet src tests bench  # pyproject's rules: pyflakes, bugbear, import order, pyupgrade
.venv/bin/mypy                                 # src/geomill with the pydantic plugin (pyproject), no ignores of ours
exec .venv/bin/python -m pytest "$@"
