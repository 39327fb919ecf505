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
.venv/bin/ruff check --quiet --select F,E9 src tests bench  # undefined names, unused imports, syntax
# enabled at merge (issue 17), replacing the line above: pyproject's rules (F, E9, bugbear, imports, pyupgrade) and
# mypy with the pydantic plugin over src/geomill. Both still fail on src/ until the merge fixes it.
# .venv/bin/ruff check --quiet src tests bench
# .venv/bin/mypy  # enabled at merge
exec .venv/bin/python -m pytest "$@"
