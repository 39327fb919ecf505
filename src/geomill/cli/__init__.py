"""The geomill command line (typer). Settings are read here, once, and passed down."""

from __future__ import annotations

import sys

from geomill.cli import catalog, jobs, operator, ops  # noqa: F401  (each module registers its commands on `app`)
from geomill.cli.common import app, err
from geomill.domain import GeomillError


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except GeomillError as exc:  # e.g. the database is unreachable: one clear line, no traceback
        err.print(f"[red]error:[/] {type(exc).__name__}: {exc}")
        sys.exit(1)


__all__ = ["app", "main"]
