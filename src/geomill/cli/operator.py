"""`geomill jobs`: the operator's commands over many jobs. Without a subcommand it lists jobs (filters, newest
first); `rerun` retries the failed tasks of the jobs a filter matches; `retry-failed` those of one job; `timeline`
a job's stages with counts, progress and ETA. The same filters as GET /api/jobs and POST /api/jobs/rerun."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from geomill.cli import views
from geomill.cli.common import AsJson, DataDir, app, load_settings, out, refuse
from geomill.domain import GeomillError, InvalidInput, JobStatus
from geomill.runtime import Runtime
from geomill.service import listing, operations
from geomill.service.listing import resolve_job_id
from geomill.service.timeline import job_timeline

jobs_app = typer.Typer(help="List jobs (filters, newest first); rerun or retry failed work.",
                       invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str | None, option: str) -> datetime | None:
    """ISO 8601 (a time without an offset is UTC) or an age like ``30m``, ``2h``, ``7d`` (that long ago)."""
    if not value:
        return None
    ago = _AGO.fullmatch(value.strip())
    if ago:
        return datetime.now(UTC) - timedelta(seconds=float(ago[1]) * _UNIT[ago[2]])
    try:
        stamp = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise InvalidInput(f"{option} {value!r}: expected ISO 8601 (2024-05-01T12:00:00Z) or an age (30m, 2h, 7d)",
                           errors=[{"field": option, "message": "not a time"}]) from exc
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


Status = Annotated[JobStatus | None, typer.Option("--status", help="only jobs in this status")]
JobType = Annotated[str | None, typer.Option("--type", help="only jobs of this type")]
ErrorPrefix = Annotated[str | None, typer.Option(
    "--error-prefix", "--error", help="the job's or a failed task's error starts with this (message or "
                                      "'type: message'; case-sensitive)")]
Since = Annotated[str | None, typer.Option("--since", help="created at or after: ISO 8601 or an age (2h, 7d)")]
Until = Annotated[str | None, typer.Option("--until", help="created before: ISO 8601 or an age (2h, 7d)")]


@jobs_app.callback()
def jobs(
    ctx: typer.Context, status_filter: Status = None, job_type: JobType = None, error: ErrorPrefix = None,
    since: Since = None, until: Until = None,
    limit: Annotated[int, typer.Option(help="at most this many", min=1, max=listing.MAX_PAGE)] = 50,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """List jobs, newest first (filters: --status, --type, --error-prefix, --since, --until)."""
    if ctx.invoked_subcommand is not None:
        return
    rt = Runtime.open(load_settings(data_dir))
    try:
        docs = listing.list_jobs(rt.store, status=status_filter, job_type=job_type, limit=limit, error=error,
                                 created_after=parse_time(since, "--since"),
                                 created_before=parse_time(until, "--until")).items
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json(docs)
    else:
        out.print(views.jobs_table(docs))


@jobs_app.command()
def rerun(
    status_filter: Annotated[JobStatus, typer.Option("--status", help="jobs in this status")] = JobStatus.FAILED,
    job_type: JobType = None, error: ErrorPrefix = None, since: Since = None, until: Until = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="change nothing; say what would be retried")] = False,
    limit: Annotated[int, typer.Option(help="at most this many jobs, newest first", min=1,
                                       max=operations.RERUN_MAX_JOBS)] = 100,
    data_dir: DataDir = None, as_json: AsJson = False,
) -> None:
    """Retry the failed tasks of every job the filter matches (failed jobs unless --status says otherwise)."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        which = operations.RerunFilter(status=status_filter, job_type=job_type, error_prefix=error,
                                       created_after=parse_time(since, "--since"),
                                       created_before=parse_time(until, "--until"), limit=limit)
        done = operations.rerun(rt.store, which, dry_run=dry_run)
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json({"matched": done.matched, "retried_tasks": done.retried_tasks, "jobs": done.jobs,
                          "dry_run": done.dry_run})
        return
    verb = "would retry" if dry_run else "retried"
    out.print(f"{done.matched} job(s) matched; {verb} {done.retried_tasks} failed task(s)")
    for job_id in done.jobs:
        out.print(f"  {job_id}")


@jobs_app.command("retry-failed")
def retry_failed(job_id: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Give every failed task of the stage a job is at one more attempt."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        full = resolve_job_id(rt.store, job_id)
        retried = operations.retry_failed(rt.store, full)
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json({"job_id": full, "retried": retried})
    else:
        out.print(f"job {full[:12]}: {retried} failed task(s) queued again")


@jobs_app.command()
def timeline(job_id: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """A job's stages: task counts by status, first start, last finish, progress and ETA."""
    rt = Runtime.open(load_settings(data_dir))
    try:
        doc = job_timeline(rt.store, rt.registry, resolve_job_id(rt.store, job_id))
    except GeomillError as exc:
        raise refuse(exc, as_json) from None
    if as_json:
        views.print_json(doc)
    else:
        out.print(views.timeline_table(doc))
