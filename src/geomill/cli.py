"""The geomill command line (typer). Settings are read here, once, and passed down."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from geomill import console as views
from geomill.config import Settings
from geomill.domain import GeomillError, InvalidInput, JobStatus, NotFound
from geomill.engine.orchestrator import Submission
from geomill.engine.report import job_doc, job_report
from geomill.runtime import Runtime
from geomill.worker.logs import setup_logging
from geomill.worker.runner import run_pool

app = typer.Typer(help="geomill: raw geospatial files in, analysis-ready products out.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
out = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_WITH_ERRORS = 0, 1, 2, 3
EXIT_BY_STATUS = {
    JobStatus.COMPLETED: EXIT_OK, JobStatus.COMPLETED_WITH_ERRORS: EXIT_WITH_ERRORS,
    JobStatus.FAILED: EXIT_FAILED, JobStatus.CANCELLED: EXIT_FAILED,
}

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data folder [env GEOMILL_DATA_DIR; ./geomill-data]")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (value parsed as JSON if it can be)")]
ParamsFile = Annotated[Path | None, typer.Option("--params-file", help="a JSON file of parameters")]
Force = Annotated[bool, typer.Option("--force", help="re-run a finished job as a fresh job (resubmit)")]
Processes = Annotated[int | None, typer.Option("--processes", "-w", help="worker processes [GEOMILL_WORKERS; CPUs]")]


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    settings = Settings(**kwargs)
    setup_logging(settings.log_level, settings.log_json)
    return settings


def _fail(message: str, code: int, as_json: bool = False) -> typer.Exit:
    if as_json:
        views.print_json({"error": message, "exit_code": code})
    else:
        err.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


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


def _submit(rt: Runtime, job_type: str, params: dict[str, Any], force: bool) -> Submission:
    sub = rt.orchestrator.submit(job_type, params)
    if force and not sub.created and sub.job.status.is_terminal:
        sub = rt.orchestrator.resubmit(sub.job.job_id)
    return sub


def _resolve_job_id(rt: Runtime, job_id: str) -> str:
    """Full ids, or a unique prefix as `geomill jobs` prints them."""
    try:
        return rt.store.get_job(job_id).job_id
    except NotFound:
        matches = rt.store.find_jobs(job_id) if len(job_id) >= 4 else []
        if len(matches) == 1:
            return matches[0].job_id
        raise


@app.command()
def run(
    job_type: str, param: Params = None, params_file: ParamsFile = None, force: Force = False,
    processes: Processes = None, data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """Submit a job and process it here until it finishes, with live progress."""
    settings = _settings(data_dir, workers=processes)
    try:
        rt = Runtime.open(settings)
        sub = _submit(rt, job_type, parse_params(param, params_file), force)
    except GeomillError as exc:
        raise _fail(str(exc), EXIT_INVALID, as_json) from None
    job_id = sub.job.job_id
    if not sub.job.status.is_terminal:
        _process(rt, [job_id], quiet=as_json)
    doc = job_report(rt.store, rt.registry, job_id)
    doc["reused_existing_job"] = not sub.created
    if as_json:
        views.print_json(doc)
    else:
        if not sub.created:
            out.print(f"[dim]job {job_id[:12]} already existed; showing its outcome (use --force to re-run)[/]")
        out.print(views.status_view(doc))
    raise typer.Exit(EXIT_BY_STATUS.get(JobStatus(doc["status"]), EXIT_FAILED))


def _process(rt: Runtime, job_ids: list[str], *, quiet: bool) -> None:
    console = err if quiet else out
    with views.JobProgress(rt, job_ids, console) as progress:
        run_pool(rt, processes=rt.settings.workers, queues=rt.settings.queues, job_ids=job_ids,
                 on_tick=progress.update)


@app.command()
def submit(
    job_type: str, param: Params = None, params_file: ParamsFile = None, force: Force = False,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """Queue a job without processing it (a `geomill worker` picks it up). Prints the job id."""
    try:
        rt = Runtime.open(_settings(data_dir))
        sub = _submit(rt, job_type, parse_params(param, params_file), force)
    except GeomillError as exc:
        raise _fail(str(exc), EXIT_INVALID, as_json) from None
    if as_json:
        views.print_json({**job_doc(sub.job), "created": sub.created})
    else:
        print(sub.job.job_id)


@app.command()
def worker(
    processes: Processes = None,
    queues: Annotated[str | None, typer.Option(help="comma-separated queues [all, incl. 'jobs']")] = None,
    data_dir: DataDir = None,
) -> None:
    """Process queued work until stopped (SIGTERM or Ctrl-C drains: running tasks finish first)."""
    settings = _settings(data_dir, workers=processes)
    if queues:
        settings = settings.model_copy(update={"queues": [q.strip() for q in queues.split(",") if q.strip()]})
    rt = Runtime.open(settings)
    err.print(f"geomill worker: {settings.workers} process(es) on {', '.join(settings.queues)}; "
              f"data in {settings.data_dir}")
    pool = run_pool(rt, processes=settings.workers, queues=settings.queues)
    err.print(f"stopped ({pool.restarts} worker restart(s))")


@app.command()
def status(job_id: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """A job's status, stage k/n, per-stage task counts, timings, and its result or error."""
    rt = Runtime.open(_settings(data_dir))
    try:
        doc = job_report(rt.store, rt.registry, _resolve_job_id(rt, job_id))
    except NotFound as exc:
        raise _fail(str(exc), EXIT_FAILED, as_json) from None
    if as_json:
        views.print_json(doc)
    else:
        out.print(views.status_view(doc))


@app.command()
def jobs(
    status_filter: Annotated[JobStatus | None, typer.Option("--status", help="only jobs in this status")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="only jobs of this type")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """List jobs, newest first."""
    rt = Runtime.open(_settings(data_dir))
    docs = [job_doc(j) for j in rt.store.list_jobs(status_filter, job_type, limit)]
    if as_json:
        views.print_json(docs)
    else:
        out.print(views.jobs_table(docs))


@app.command("job-types")
def job_types(as_json: AsJson = False) -> None:
    """Job types with their descriptions, stages and parameter schemas."""
    from geomill.jobs import build_registry

    registry = build_registry(Settings().plugins)
    docs = [
        {"name": jt.name, "description": jt.description,
         "stages": [{"name": s.name, "description": s.description, "failure_policy": str(s.failure_policy)}
                    for s in jt.stages],
         "parameters": jt.params_model.model_json_schema()}
        for jt in registry.job_types()
    ]
    if as_json:
        views.print_json(docs)
    else:
        out.print(views.job_types_table(docs))


@app.command()
def demo(
    processes: Processes = None, data_dir: DataDir = None, force: Force = False, as_json: AsJson = False,
) -> None:
    """Process the bundled sample rasters: validate → COG → STAC item, with live progress."""
    from geomill.examples import demo_raster_paths

    rt = Runtime.open(_settings(data_dir, workers=processes))
    subs = []
    for path in demo_raster_paths():
        target = rt.storage.local_path(rt.storage.uri_for("bronze", f"samples/{path.name}"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(path, target)
        subs.append(_submit(rt, "process_raster", {"source": f"bronze://samples/{path.name}"}, force))
    pending = [s.job.job_id for s in subs if not s.job.status.is_terminal]
    if not as_json:
        out.print(f"geomill demo: {len(subs)} sample rasters, data in [bold]{rt.settings.data_dir}[/]")
    if pending:
        _process(rt, pending, quiet=as_json)
    rows = [_demo_row(rt, s.job.job_id) for s in subs]
    if as_json:
        views.print_json({"data_dir": str(rt.settings.data_dir), "jobs": rows})
    else:
        out.print(views.outputs_table(rows))
        out.print(f"STAC catalog: {rt.storage.local_path('silver://catalog/catalog.json')}")
    failed = any(r["status"] != JobStatus.COMPLETED for r in rows)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _demo_row(rt: Runtime, job_id: str) -> dict[str, Any]:
    job = rt.store.get_job(job_id)
    row: dict[str, Any] = {"job_id": job_id, "source": job.params["source"], "status": str(job.status)}
    outputs = (job.result or {}).get("outputs") or []
    if outputs:
        o = outputs[0]
        row.update(cog_path=o.get("cog_path"), size_bytes=o.get("size_bytes"),
                   stac_item_path=o.get("stac_item_path"), reused=o.get("reused"))
    if job.error:
        row["error"] = job.error.get("message")
    return row


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
