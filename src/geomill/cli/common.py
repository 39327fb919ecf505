"""Shared pieces of the CLI: the typer app, consoles, options, settings, parameter parsing, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from geomill.cli import views
from geomill.config import Settings
from geomill.domain import GeomillError, InvalidInput, JobStatus
from geomill.logs import setup_logging

app = typer.Typer(help="geomill: raw geospatial files in, analysis-ready products out.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
out = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_WITH_ERRORS = 0, 1, 2, 3
EXIT_BY_STATUS = {
    JobStatus.COMPLETED: EXIT_OK, JobStatus.COMPLETED_WITH_ERRORS: EXIT_WITH_ERRORS,
    JobStatus.FAILED: EXIT_FAILED, JobStatus.CANCELLED: EXIT_FAILED,
}



def exit_for(doc: dict[str, Any]) -> int:
    """The exit code of a finished job's status document: 2 when it failed because its input was refused."""
    status = JobStatus(doc["status"])
    if status is JobStatus.FAILED and (doc.get("error") or {}).get("cause") == "invalid_input":
        return EXIT_INVALID
    return EXIT_BY_STATUS.get(status, EXIT_FAILED)


DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data folder [env GEOMILL_DATA_DIR; ./geomill-data]")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (value parsed as JSON if it can be)")]
ParamsFile = Annotated[Path | None, typer.Option("--params-file", help="a JSON file of parameters")]
Force = Annotated[bool, typer.Option("--force", help="re-run a finished job as a fresh job (resubmit)")]
Processes = Annotated[int | None, typer.Option("--processes", "-w", help="worker processes [GEOMILL_WORKERS; CPUs]")]


def load_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    settings = Settings(**kwargs)
    setup_logging(settings.log_level, settings.log_json)
    return settings


def fail(message: str, code: int, as_json: bool = False) -> typer.Exit:
    if as_json:
        views.print_json({"error": message, "exit_code": code})
    else:
        err.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def exit_code(exc: GeomillError) -> int:
    """The exit code of a domain error: 2 for input a person must fix, 1 for anything else (not found, conflict)."""
    return EXIT_INVALID if isinstance(exc, InvalidInput) else EXIT_FAILED


def refuse(exc: GeomillError, as_json: bool = False) -> typer.Exit:
    """`fail` with the message and exit code of a domain error."""
    return fail(str(exc), exit_code(exc), as_json)


def parse_params(pairs: list[str] | None, params_file: Path | None) -> dict[str, Any]:
    """--params-file first, then each --param key=value on top; values are JSON when they parse as JSON."""
    params: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read parameters from {params_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{params_file} must hold a JSON object of parameters")
        params.update(loaded)
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param {pair!r}: expected key=value")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params
