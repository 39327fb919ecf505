"""The geomill command line (typer). Settings are read here, once, and passed down."""

from __future__ import annotations

import sys

from geomill.cli import jobs, ops  # noqa: F401  (each module registers its commands on `app`)
from geomill.cli.common import app


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]
