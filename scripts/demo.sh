#!/usr/bin/env bash
# The demo in one command: venv + install + `geomill demo` (SQLite, local folders, no servers).
# Extra arguments go to `geomill demo` (e.g. --data-dir /tmp/gm, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/geomill demo "$@"
