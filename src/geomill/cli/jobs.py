"""Job commands: run, submit, status, tasks, job-types, demo, cancel, retry, resubmit (`geomill jobs ...`: in
`cli/operator.py`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from geomill.cli import views
from geomill.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    AsJson,
    DataDir,
    Force,
    Params,
    ParamsFile,
    Processes,
    app,
    err,
    exit_for,
    fail,
    load_settings,
    out,
    parse_params,
    refuse,
)
from geomill.config import Settings
from geomill.domain import GeomillError, JobStatus, TaskStatus
from geomill.engine.ports import Store
from geomill.engine.report import job_doc
from geomill.roles import process_layout, resolve_role
from geomill.runtime import Runtime
from geomill.service import listing, operations
from geomill.service.listing import resolve_job_id
from geomill.service.status import job_status
from geomill.service.submit import submit as submit_job
from geomill.worker.runner import run_pool


@app.command()
def run(
    job_type: str, param: Params = None, params_file: ParamsFile = None, force: Force = False,
    processes: Processes = None, data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """Submit a job and process it here until it finishes, with live progress."""
    settings = load_settings(data_dir, workers=processes)
    try:
        rt = Runtime.open(settings)
        sub = submit_job(rt, job_type, parse_params(param, params_file), restricted=False, force=force)
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    job_id = sub.job.job_id
    if not sub.job.status.is_terminal:
        _process(rt, [job_id], quiet=as_json)
    doc = job_status(rt.store, rt.registry, job_id)
    doc["reused_existing_job"] = not sub.created
    if as_json:
        views.print_json(doc)
    else:
        if not sub.created:
            out.print(f"[dim]job {job_id[:12]} already existed; showing its outcome (use --force to re-run)[/]")
        out.print(views.status_view(doc))
    raise typer.Exit(exit_for(doc))


def _layout(settings: Settings) -> list[tuple[str, ...]]:
    """`geomill run` and `demo` process everything here: the standalone role."""
    return process_layout(resolve_role("standalone"), settings)


def _process(rt: Runtime, job_ids: list[str], *, quiet: bool) -> None:
    console = err if quiet else out
    with views.JobProgress(rt, job_ids, console) as progress:
        run_pool(rt, _layout(rt.settings), job_ids=job_ids, on_tick=progress.update)


@app.command()
def submit(
    job_type: str, param: Params = None, params_file: ParamsFile = None, force: Force = False,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """Queue a job without processing it (a `geomill worker` picks it up). Prints the job id."""
    try:
        rt = Runtime.open(load_settings(data_dir))
        sub = submit_job(rt, job_type, parse_params(param, params_file), restricted=False, force=force)
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json({**job_doc(sub.job), "created": sub.created})
    else:
        print(sub.job.job_id)


@app.command()
def status(job_id: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """A job's status, stage k/n, per-stage task counts, timings, and its result or error."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        doc = job_status(rt.store, rt.registry, resolve_job_id(rt.store, job_id))
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json(doc)
    else:
        out.print(views.status_view(doc))


@app.command("job-types")
def job_types(as_json: AsJson = False) -> None:
    """Job types with their descriptions, stages and parameter schemas."""
    from geomill.jobs import build_registry

    docs = listing.job_types(build_registry(Settings().plugins))
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

    rt = Runtime.open(load_settings(data_dir, workers=processes))
    subs = []
    for path in demo_raster_paths():
        uri = rt.storage.uri_for("bronze", f"samples/{path.name}")
        if not rt.storage.exists(uri):  # bronze may be a folder or a bucket
            rt.storage.put_file(path, uri)
        subs.append(submit_job(rt, "process_raster", {"source": f"bronze://samples/{path.name}"}, restricted=False,
                               force=force))
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
        out.print(f"STAC catalog: {rt.storage.local_mirror('silver://catalog/catalog.json')}")
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


@app.command()
def tasks(
    job_id: str,
    stage: Annotated[int | None, typer.Option(help="only this stage")] = None,
    status_filter: Annotated[str | None, typer.Option("--status", help="only tasks in this status")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (0: all), read a page at a time", min=0)] = 200,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """A job's tasks: status, attempts, target queue, which app ran them and when."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        wanted = TaskStatus(status_filter) if status_filter else None
        docs = _task_pages(rt.store, resolve_job_id(rt.store, job_id), stage, wanted, limit)
    except ValueError as exc:
        raise fail(str(exc), EXIT_FAILED, as_json) from None
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json(docs)
    else:
        out.print(views.tasks_table(docs))


def _task_pages(store: Store, job_id: str, stage: int | None, status: TaskStatus | None,
                limit: int) -> list[dict[str, Any]]:
    """Up to `limit` tasks (0: all), following the cursor a page of at most MAX_PAGE at a time."""
    docs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        size = listing.MAX_PAGE if limit == 0 else min(limit - len(docs), listing.MAX_PAGE)
        page = listing.list_tasks(store, job_id, stage=stage, status=status, limit=size, cursor=cursor)
        docs += page.items
        cursor = page.next_cursor
        if cursor is None or (limit and len(docs) >= limit):
            return docs


@app.command()
def cancel(job_id: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Cancel a job: queued tasks at once; running tasks stop at their next heartbeat (or are killed)."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        job, changed = operations.cancel(rt.store, resolve_job_id(rt.store, job_id))
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json({**job_doc(job), "changed": changed})
    elif changed:
        out.print(f"job {job.job_id[:12]} cancelled")
    else:
        out.print(f"job {job.job_id[:12]} is already {job.status}; nothing to cancel")


@app.command()
def retry(task_id: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Give a failed task one more attempt, re-opening its stage (and its job, if that stage failed it)."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        task = operations.retry(rt.store, task_id)
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json({"task_id": task_id, "job_id": task.job_id, "requeued": True})
    else:
        out.print(f"task {task_id} queued again; job {task.job_id[:12]} is processing")


@app.command()
def resubmit(job_id: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """A fresh run of a finished job (new id, `resubmit_of` the old one). Prints the new job id."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        sub = operations.resubmit(rt, resolve_job_id(rt.store, job_id))
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json({**job_doc(sub.job), "created": sub.created})
    else:
        print(sub.job.job_id)
