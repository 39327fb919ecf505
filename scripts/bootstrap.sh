#!/usr/bin/env bash
# Create ./.venv (Python >= 3.11) and install geomill into it; re-installs only when pyproject.toml changed.
# Usage: scripts/bootstrap.sh [extras], e.g. scripts/bootstrap.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "geomill needs Python >= 3.11 (found: $("$py" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
stamp=".venv/.geomill-installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
  touch "$stamp"
fi
