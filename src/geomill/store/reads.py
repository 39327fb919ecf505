"""Reads both SQL stores share: jobs, stages with per-status counts, tasks. The statements are the dialect's
(`common_queries.Statements`); only the rows-to-objects logic lives here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from geomill.domain import Job, JobStatus, NotFound, Stage, Task, TaskStatus
from geomill.engine.ports import JobView, StageTimes
from geomill.store.common_queries import Statements
from geomill.store.rows import job_from_row, js, stage_from_row, task_from_row, ts

VIEW_STATUSES = (TaskStatus.FAILED, TaskStatus.PROCESSING)  # the tasks a status report lists
VIEW_TASKS = 20  # at most this many of each


def stage_counts(r: Mapping[str, Any]) -> dict[str, int]:
    """A stage's tasks by status (the non-zero ones), from a `Statements.stages` row. The counters change in the
    same statements as the tasks they count: `total` = tasks inserted; `remaining` = tasks neither completed nor
    failed (cancelled ones included), plus 1 while a chunked plan is still inserting (`sealed` false); `failed` =
    tasks failed for good. Only running and cancelled tasks are counted (via the (job_id, stage, status) index)."""
    unfinished = r["remaining"] - (0 if r["sealed"] else 1)
    processing, cancelled = r["processing_count"], r["cancelled_count"]
    counts = {"queued": unfinished - processing - cancelled, "processing": processing,
              "completed": r["total"] - unfinished - r["failed"], "failed": r["failed"], "cancelled": cancelled}
    return {status: n for status, n in counts.items() if n}


def job_and_stages_from_view_row(job_id: str, rows: Sequence[Mapping[str, Any]]) -> tuple[Job, list[Stage]]:
    """What `postgres_queries.JOB_VIEW` read, as the job and its stages."""
    job = job_from_rows(job_id, rows)
    return job, stages_from_rows(rows[0]["stage_rows"] or [])


def job_from_rows(job_id: str, rows: Sequence[Mapping[str, Any]]) -> Job:
    if not rows:
        raise NotFound(f"no job with id {job_id!r}")
    return job_from_row(rows[0])


def stages_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[Stage]:
    """Rows of `Statements.stages` as stages with their counts."""
    return [stage_from_row(r, stage_counts(r)) for r in rows]


def view_statuses(stages: Sequence[Stage]) -> set[str]:
    """The statuses of VIEW_STATUSES that some stage has tasks in (no query for what is not there)."""
    return {str(s) for s in VIEW_STATUSES if any(stage.counts.get(str(s)) for stage in stages)}


def filtered(base: str, clauses: Sequence[tuple[str, str, Any]]) -> tuple[str, dict[str, Any]]:
    """``base`` plus each ``(clause, name, value)`` whose value is not None, with its parameters by name."""
    sql, args = base, {}
    for clause, name, value in clauses:
        if value is not None:
            sql += clause
            args[name] = str(value) if isinstance(value, JobStatus | TaskStatus) else value
    return sql, args


class SharedReads:
    """Mixed into a store that provides its `_sql` statements and ``_read(sql, params) -> rows``."""

    _sql: Statements

    def _read(self, sql: str, params: Any = ()) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    def _time_param(self, value: datetime) -> Any:
        """A datetime as this store compares times (SQLite: epoch seconds)."""
        return value.timestamp()

    def get_job(self, job_id: str) -> Job:
        return job_from_rows(job_id, self._read(self._sql.job, {"job_id": job_id}))

    def find_jobs(self, prefix: str) -> list[Job]:
        return [job_from_row(r) for r in self._read(self._sql.find_jobs, {"prefix": prefix + "%"})]

    def list_jobs(self, status: JobStatus | None = None, job_type: str | None = None, limit: int = 100,
                  created_after: datetime | None = None, created_before: datetime | None = None,
                  after: tuple[datetime, str] | None = None, error: str | None = None) -> list[Job]:
        """Newest first. `after` is a keyset cursor: the (created_at, job_id) of the last job of the previous page.
        `error`: the job's error, or one of its failed tasks' errors, starts with it (message or ``type: message``)."""
        s, t = self._sql, self._time_param
        sql, args = filtered(s.jobs, [
            (s.and_status, "status", status), (s.and_job_type, "job_type", job_type),
            (s.and_created_after, "created_after", t(created_after) if created_after else None),
            (s.and_created_before, "created_before", t(created_before) if created_before else None),
            (s.and_error, "error", error or None),
            (s.and_before_cursor, "cursor_at", t(after[0]) if after else None)])
        if after is not None:
            args["cursor_id"] = after[1]
        if error:
            args["error_len"] = len(error)
        rows = self._read(sql + s.jobs_page, {**args, "limit": limit})
        return [job_from_row(r) for r in rows]

    def get_stages(self, job_id: str) -> list[Stage]:
        """Each stage's counter row with its tasks by status, in one query."""
        return stages_from_rows(self._read(self._sql.stages, {"job_id": job_id}))

    def stage_timeline(self, job_id: str) -> list[StageTimes]:
        """Each stage with its counts, first task start and last task finish, in one query (index lookups)."""
        return [StageTimes(stage_from_row(r, stage_counts(r)), ts(r["first_started_at"]), ts(r["last_finished_at"]))
                for r in self._read(self._sql.stage_timeline, {"job_id": job_id})]

    def retryable_tasks(self, job_id: str) -> list[str]:
        """The ids of the failed tasks `retry_task` can take now (those of the stage the job is at), by key."""
        return [r["task_id"] for r in self._read(self._sql.retryable_tasks, {"job_id": job_id})]

    def _job_and_stages(self, job_id: str) -> tuple[Job, list[Stage]]:
        return self.get_job(job_id), self.get_stages(job_id)

    def job_view(self, job_id: str) -> JobView:
        job, stages = self._job_and_stages(job_id)
        present = view_statuses(stages)

        def some(status: TaskStatus) -> list[Task]:
            if status not in present:
                return []
            args = {"job_id": job_id, "status": str(status), "limit": VIEW_TASKS}
            return [task_from_row(r) for r in self._read(self._sql.tasks_by_status, args)]

        return JobView(job, stages, some(TaskStatus.FAILED), some(TaskStatus.PROCESSING))

    def get_stage(self, job_id: str, stage: int) -> Stage | None:
        """One stage's counter row, without per-status counts (cheap: the orchestrator reads it per event)."""
        rows = self._read(self._sql.stage, {"job_id": job_id, "stage": stage})
        return stage_from_row(rows[0], {}) if rows else None

    def stage_outcomes(self, job_id: str, stage: int) -> list[tuple[str, str, Any, Any]]:
        """(task_key, status, result, error) of a stage's finished tasks: what plans and finalizers read."""
        rows = self._read(self._sql.stage_outcomes, {"job_id": job_id, "stage": stage})
        return [(r["task_key"], r["status"], js(r["result"]), js(r["error"])) for r in rows]

    def stage_tasks(self, job_id: str, stage: int) -> list[Task]:
        return self.list_tasks(job_id, stage)

    def list_tasks(self, job_id: str, stage: int | None = None, status: TaskStatus | None = None,
                   limit: int | None = None, after: tuple[int, str] | None = None) -> list[Task]:
        """By (stage, task_key); `after` is a keyset cursor, so a page walks the unique index, never sorts the job."""
        s = self._sql
        sql, args = filtered(s.tasks, [(s.and_stage, "stage", stage), (s.and_status, "status", status),
                                       (s.and_after_task, "after_stage", after[0] if after else None)])
        if after is not None:
            args["after_key"] = after[1]
        sql += s.tasks_order
        if limit is not None:
            sql += s.and_limit
            args["limit"] = int(limit)
        return [task_from_row(r) for r in self._read(sql, {**args, "job_id": job_id})]

    def get_task(self, task_id: str) -> Task:
        rows = self._read(self._sql.task, {"task_id": task_id})
        if not rows:
            raise NotFound(f"no task with id {task_id!r}")
        return task_from_row(rows[0])
