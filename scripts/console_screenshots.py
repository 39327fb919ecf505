"""Refresh docs/img/console-*.png: run the console's browser tests (tests/browser), which save a screenshot of each
page they visit when GEOMILL_CONSOLE_SCREENSHOTS names a folder. Needs Debian's chromium and playwright (dev extras).

    python scripts/console_screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    env = dict(os.environ, GEOMILL_CONSOLE_SCREENSHOTS=str(ROOT / "docs" / "img"))
    return subprocess.call([sys.executable, "-m", "pytest", "tests/browser", "-q", "-p", "no:cacheprovider"],
                           cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
