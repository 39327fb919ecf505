#!/usr/bin/env bash
# The whole test suite in one command: venv + dev dependencies + pytest (unit, integration, acceptance, slow).
# Extra arguments go to pytest (e.g. -m "not slow", -k crash, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
scripts/services.sh || echo "services not ready: PostgreSQL tests will skip (fail when CI is set)" >&2
.venv/bin/ruff check --quiet --select F,E9 src tests bench  # undefined names, unused imports, syntax
exec .venv/bin/python -m pytest "$@"
