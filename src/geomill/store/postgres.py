"""PostgreSQL store: the database is the queue (FOR UPDATE SKIP LOCKED), and NOTIFY wakes idle workers.

Connections come from one bounded pool per store (``min 1, max pool_size``); a process that also waits for work
holds one more, the dispatcher's LISTEN connection, so a process never holds more than ``pool_size + 1``.

Round trips. A single-statement change runs in autocommit (one round trip); finishing an attempt - the guarded
task update, the stage counter decrement and, at zero, the stage_complete event with its NOTIFY - is ONE statement
of data-modifying CTEs (see ``postgres_queries.COMPLETE_TASK``), so it is atomic and costs one round trip too.

Retrying after a lost connection. Every method runs as one function of a connection; when PostgreSQL is away
(``OperationalError``: refused, reset, shut down by an admin, pool timeout; also serialization failures and
deadlocks, which PostgreSQL rolls back) the whole function runs again with exponential backoff, for up to
``retry_seconds``. That is safe because each method is either a read, idempotent, or a guarded update:
- the error came before COMMIT: PostgreSQL rolled the transaction back, nothing happened, running it again is exact;
- the error came during COMMIT (or an autocommit statement; result unknown) and the commit did apply: the retry finds the state it expected
  already gone and reports "not applied". For ``complete_task`` / ``fail_task`` that means the task is already
  finished by this very attempt (the fence is the attempt number, nobody else can own it), the counter was
  decremented and any stage_complete event inserted in that committed transaction, so "not applied" loses nothing.
  ``start_stage`` / ``finish_job`` / ``retry_task`` likewise report False for a change that did happen;
  ``create_job`` reports an existing job. A claim (task or event) whose commit was lost is not returned to us: its
  lease (or visibility timeout) runs out and the janitor (or the queue) gives it back, costing one attempt.
  ``add_dead_letter`` is the one plain insert: a lost commit retried may record the same dead letter twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolClosed

from geomill.domain import (
    Event,
    EventKind,
    FailurePolicy,
    Job,
    JobStatus,
    NewJob,
    NewTask,
    Stage,
    StoreError,
    Task,
    check_job_transition,
)
from geomill.domain.status import job_sources
from geomill.engine.ports import PendingMessage, TaskOutcome
from geomill.engine.registry import JOBS_QUEUE
from geomill.pgconn import DEFAULT_SOCKET_TIMEOUT, Reachability, bounded, connect_kwargs, quiet_pool_logger
from geomill.store import postgres_queries as q
from geomill.store.base import SQLStore, event_from_row, pending_messages
from geomill.store.postgres_queries import channel_for
from geomill.store.reads import job_and_stages_from_view_row
from geomill.store.rows import job_from_row, task_from_row
from geomill.store.sql import migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_MAX_DELAY = 5.0  # seconds: the longest wait between two tries of a call while PostgreSQL is away
Cursor = psycopg.Cursor[dict[str, Any]]

_dumps = partial(json.dumps, default=str)
# Connection errors that no amount of waiting fixes (the server answered, and said no).
_PERMANENT_CONNECT = ("does not exist", "authentication failed", "no pg_hba.conf entry", "password",
                      "invalid connection option", "invalid URI", "invalid integer value")


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=_dumps)


def create_job_params(job: NewJob) -> dict[str, Any]:
    """The parameters of ``q.CREATE_JOB`` (the job, its job_submitted event and the NOTIFY, in one statement)."""
    return {
        "job_id": job.job_id, "job_type": job.job_type, "params": _jsonb(job.params),
        "stage_count": job.stage_count, "resubmit_of": job.resubmit_of, "correlation_id": job.correlation_id,
        "deadline_seconds": job.deadline_seconds or None, "channel": channel_for(JOBS_QUEUE),
    }


class PostgresStore(SQLStore):
    """All state in PostgreSQL, through a bounded pool; every method retries over a lost connection (see above)."""

    dialect = "postgres"
    _sql = q.STATEMENTS

    def __init__(self, url: str, *, pool_size: int = 4, retry_seconds: float = 60.0,
                 connect_timeout: float = 5.0, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.socket_timeout = socket_timeout  # the async pool and sinks bound their connections the same way
        _preflight(url, connect_timeout)
        quiet_pool_logger()
        self._reachability = Reachability(log)
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=True, name="geomill-store",
            connection_class=bounded(socket_timeout),  # a partition fails a call instead of hanging it
            kwargs={"autocommit": True, "row_factory": dict_row,
                    **connect_kwargs(socket_timeout, connect_timeout)},
            # No `check` round trip before each use: a connection the server dropped (restart) fails its first
            # statement before anything ran; the pool discards it and _run retries on a fresh one.
            timeout=min(10.0, retry_seconds),  # one getconn; _run retries around it up to retry_seconds
            reconnect_timeout=retry_seconds,
        )

    # plumbing
    def _run(self, what: str, fn: Callable[[psycopg.Connection[dict[str, Any]]], T]) -> T:
        """Run `fn` on a pooled connection; on a transient error run all of it again with backoff."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                with self._pool.connection() as conn:
                    result = fn(conn)
                self._reachability.answered()
                return result
            except PoolClosed as exc:
                raise StoreError(f"{what}: the store is closed") from exc
            except psycopg.OperationalError as exc:
                self._unavailable_at = time.monotonic()
                if time.monotonic() + delay > deadline:
                    raise StoreError(f"{what}: PostgreSQL unavailable for {self.retry_seconds:.0f} s: {exc}") from exc
                self._reachability.lost("PostgreSQL unavailable (%s); calls are retried for up to %.0f s each",
                                        str(exc).strip(), self.retry_seconds)  # one line per outage, not per retry
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
            except psycopg.Error as exc:
                raise StoreError(f"{what} failed: {exc}") from exc

    def _tx(self, what: str, fn: Callable[[Cursor], T]) -> T:
        """`fn` in one transaction (retried whole)."""
        def run(conn: psycopg.Connection[dict[str, Any]]) -> T:
            with conn.transaction(), conn.cursor() as cur:
                return fn(cur)
        return self._run(what, run)

    def _read(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return self._run("query", lambda conn: conn.execute(sql, params).fetchall())

    def _one(self, what: str, sql: str, params: Any) -> tuple[int, list[dict[str, Any]]]:
        """A single statement, atomic on its own (autocommit: no BEGIN/COMMIT round trips): (rowcount, rows)."""
        def run(conn: psycopg.Connection[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
            cur = conn.execute(sql, params)
            return cur.rowcount, (cur.fetchall() if cur.description else [])
        return self._run(what, run)

    def _write(self, sql: str, params: Any = (), what: str = "write") -> int:
        return self._one(what, sql, params)[0]

    def _time_param(self, value: datetime) -> datetime:
        return value

    def _since(self, seconds: float) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=seconds)

    def _job_and_stages(self, job_id: str) -> tuple[Job, list[Stage]]:
        """Both parts of a status report in one statement."""
        return job_and_stages_from_view_row(job_id, self._read(q.JOB_VIEW, (job_id,)))

    def migrate(self) -> None:
        """Apply numbered migrations not yet applied, each in its own transaction under an advisory lock."""
        for version, sql in migrations("postgres"):
            if self._tx(f"migration {version:03d}", partial(_apply_migration, version, sql)):
                log.info("applied migration %03d", version)

    def close(self) -> None:
        self._pool.close()

    # jobs
    def create_job(self, job: NewJob) -> tuple[Job, bool]:
        _, rows = self._one("create_job", q.CREATE_JOB, create_job_params(job))
        if not rows:  # a concurrent submission of the same job committed after our snapshot
            return self.get_job(job.job_id), False
        return job_from_row(rows[0]), bool(rows[0]["created"])

    def start_stage(
        self, job_id: str, stage: int, name: str, policy: FailurePolicy, tasks: Sequence[NewTask],
        *, sealed: bool = True,
    ) -> bool:
        def op(c: Cursor) -> bool:
            if c.execute(q.ADVANCE_JOB_STAGE, {"job_id": job_id, "stage": stage}).rowcount != 1:
                return False
            c.execute(q.INSERT_STAGE, {"job_id": job_id, "stage": stage, "name": name, "total": len(tasks),
                                       "token": 0 if sealed else 1, "policy": str(policy)})
            if tasks:
                _copy_tasks(c, job_id, stage, tasks)
                _notify(c, {t.target_queue for t in tasks})
            elif sealed:  # a plan of 0 tasks completes the stage at once
                _insert_event(c, EventKind.STAGE_COMPLETE, job_id, stage)
            return True
        return self._tx("start_stage", op)

    def add_stage_tasks(self, job_id: str, stage: int, tasks: Sequence[NewTask], *, expected_total: int,
                        seal: bool) -> bool:
        def op(c: Cursor) -> bool:
            row = c.execute(q.GROW_STAGE, {
                "job_id": job_id, "stage": stage, "n": len(tasks), "seal": seal, "token": 1 if seal else 0,
                "expected": expected_total, "jobs_channel": channel_for(JOBS_QUEUE)}).fetchone()
            if not row or row["applied"] != 1:
                return False
            if tasks:
                _copy_tasks(c, job_id, stage, tasks)
                _notify(c, {t.target_queue for t in tasks})
            return True
        return self._tx("add_stage_tasks", op)

    def finish_job(
        self, job_id: str, stage: int, status: JobStatus, result: dict[str, Any] | None, error: dict[str, Any] | None,
        *, stage_done: bool = False,
    ) -> bool:
        check_job_transition(JobStatus.PROCESSING, status)
        sources = [str(s) for s in job_sources(status)]

        def op(c: Cursor) -> bool:
            if stage_done:  # the job row lock orders this after (or before) a retry_task, which takes it too
                c.execute(q.LOCK_JOB, {"job_id": job_id})
                if c.execute(q.OPEN_STAGE_TASK, {"job_id": job_id, "stage": stage}).fetchone():
                    return False
            if c.execute(q.FINISH_JOB, {"job_id": job_id, "stage": stage, "status": str(status), "sources": sources,
                                        "result": _jsonb(result), "error": _jsonb(error)}).rowcount != 1:
                return False
            c.execute(q.CANCEL_QUEUED_TASKS, {"job_id": job_id})
            return True
        return self._tx("finish_job", op)

    def cancel_job(self, job_id: str) -> bool:
        def op(c: Cursor) -> bool:
            if c.execute(q.CANCEL_JOB, {"job_id": job_id}).rowcount != 1:
                return False
            c.execute(q.CANCEL_QUEUED_TASKS, {"job_id": job_id})
            return True
        return self._tx("cancel_job", op)

    def retry_task(self, task_id: str) -> bool:
        return self.retry_tasks([task_id]) == 1

    def retry_tasks(self, task_ids: Sequence[str]) -> int:
        def op(c: Cursor) -> int:
            queues: set[str] = set()
            retried = 0
            for task_id in task_ids:
                c.execute(q.LOCK_JOB_OF_TASK, {"task_id": task_id})
                row = c.execute(q.REOPEN_FAILED_TASK, {"task_id": task_id}).fetchone()
                if row is None:
                    continue
                args = {"job_id": row["job_id"], "stage": row["stage"]}
                c.execute(q.REOPEN_STAGE, args)
                c.execute(q.REOPEN_JOB, args)
                c.execute(q.DROP_STAGE_EVENTS, args)  # the stage is open again: a pending stage_complete is stale
                queues.add(row["target_queue"])
                retried += 1
            if queues:
                _notify(c, queues)
            return retried
        return self._tx("retry_tasks", op)

    def add_dead_letter(self, source: str, reason: str, payload: dict[str, Any], job_id: str | None = None,
                        task_id: str | None = None) -> None:
        self._one("add_dead_letter", q.INSERT_DEAD_LETTER, {
            "source": source, "reason": reason, "payload": _jsonb(payload), "job_id": job_id, "task_id": task_id})

    # stages and tasks
    def claim_tasks(self, queues: Sequence[str], app: str, lease_seconds: float, limit: int) -> list[Task]:
        if not queues:
            return []
        args = {"queues": list(queues), "app": app, "lease": lease_seconds, "limit": int(limit)}
        _, rows = self._one("claim_tasks", q.CLAIM_TASKS, args)
        return sorted((task_from_row(r) for r in rows), key=lambda t: t.available_at or t.created_at)

    def release_task(self, task_id: str, attempt: int) -> bool:
        """Re-queued with NOTIFY, so another worker can take it at once."""
        args = {"task_id": task_id, "attempt": attempt, "channel_prefix": q.CHANNEL_PREFIX}
        _, rows = self._one("release_task", q.RELEASE_TASK, args)
        return bool(rows[0]["applied"] == 1)

    def complete_task(self, task_id: str, attempt: int, result: dict[str, Any]) -> TaskOutcome:
        return self._finish("complete_task", q.COMPLETE_TASK, task_id, attempt, result=_jsonb(result))

    def complete_tasks(self, done: Sequence[tuple[str, int, dict[str, Any]]]) -> list[TaskOutcome]:
        if not done:
            return []
        _, rows = self._one("complete_tasks", q.COMPLETE_TASKS, {
            "ids": [t for t, _, _ in done], "attempts": [a for _, a, _ in done],
            "results": Jsonb([r for _, _, r in done]), "jobs_channel": channel_for(JOBS_QUEUE)})
        applied, emitters = set(rows[0]["applied"]), set(rows[0]["emitters"])
        return [TaskOutcome(applied=t in applied, stage_done=t in emitters) for t, _, _ in done]

    def fail_task(
        self, task_id: str, attempt: int, error: dict[str, Any], retry_in_seconds: float | None
    ) -> TaskOutcome:
        if retry_in_seconds is None:
            return self._finish("fail_task", q.FAIL_TASK, task_id, attempt, error=_jsonb(error))
        _, rows = self._one("fail_task", q.RETRY_TASK, {
            "task_id": task_id, "attempt": attempt, "error": _jsonb(error), "delay": retry_in_seconds,
            "channel_prefix": q.CHANNEL_PREFIX})
        return TaskOutcome(applied=rows[0]["applied"] == 1)

    def _finish(self, what: str, sql: str, task_id: str, attempt: int, **values: Any) -> TaskOutcome:
        """A guarded finish of an attempt with its stage count-down, in one statement (see the query)."""
        _, rows = self._one(what, sql, {"task_id": task_id, "attempt": attempt,
                                        "jobs_channel": channel_for(JOBS_QUEUE), **values})
        return TaskOutcome(applied=rows[0]["applied"] == 1, stage_done=rows[0]["stage_done"] == 1)

    # events
    def claim_event(self, consumer: str, visibility_seconds: float) -> Event | None:
        _, rows = self._one("claim_event", q.CLAIM_EVENT, {"consumer": consumer, "visibility": visibility_seconds})
        return event_from_row(rows[0]) if rows else None

    # broker dispatch
    def claim_tasks_by_ids(self, task_ids: Sequence[str], app: str, lease_seconds: float) -> list[Task]:
        if not task_ids:
            return []
        args = {"ids": list(task_ids), "app": app, "lease": lease_seconds}
        _, rows = self._one("claim_tasks_by_ids", q.CLAIM_TASKS_BY_IDS, args)
        order = {t: i for i, t in enumerate(dict.fromkeys(task_ids))}  # first mention of each id
        return sorted((task_from_row(r) for r in rows), key=lambda t: order[t.task_id])

    def claim_event_by_id(self, event_id: int, consumer: str, visibility_seconds: float) -> Event | None:
        args = {"event_id": event_id, "consumer": consumer, "visibility": visibility_seconds}
        _, rows = self._one("claim_event_by_id", q.CLAIM_EVENT_BY_ID, args)
        return event_from_row(rows[0]) if rows else None

    def take_unpublished_work(self, limit: int, republish_after_seconds: float | None = None) -> list[PendingMessage]:
        args = {"limit": int(limit), "republish": republish_after_seconds}
        _, events = self._one("take_unpublished_work", q.TAKE_UNPUBLISHED_EVENTS, args)
        _, tasks = self._one("take_unpublished_work", q.TAKE_UNPUBLISHED_TASKS, args)
        return pending_messages(events, tasks)

    def mark_unpublished(self, messages: Sequence[PendingMessage]) -> None:
        task_ids = [m.task_id for m in messages if m.task_id is not None]
        event_ids = [m.event_id for m in messages if m.event_id is not None]
        if task_ids:
            self._one("mark_unpublished", q.UNMARK_TASKS, {"ids": task_ids})
        if event_ids:
            self._one("mark_unpublished", q.UNMARK_EVENTS, {"ids": event_ids})

    # janitor
    def resignal_stalled_stages(self, grace_seconds: float) -> int:
        """Stages at zero (or submitted jobs) whose job did not move and that have no pending event: signal again."""
        def op(c: Cursor) -> list[dict[str, Any]]:
            rows = c.execute(q.RESIGNAL_STALLED, {"grace": grace_seconds}).fetchall()
            if rows:
                _notify(c, {JOBS_QUEUE})
            return rows
        rows = self._tx("resignal_stalled_stages", op)
        for r in rows:
            log.warning("re-signalled stalled stage %d", r["stage"], extra={"job_id": r["job_id"]})
        return len(rows)


# statements shared by several methods, each inside the caller's transaction
def _apply_migration(version: int, sql: str, c: Cursor) -> bool:
    c.execute(q.MIGRATION_LOCK)  # concurrent starters queue here; the check below is then final
    c.execute(q.CREATE_MIGRATIONS)
    if c.execute(q.IS_APPLIED, {"version": version}).fetchone():
        return False
    c.execute(sql)  # no parameters: the file's several statements run as one script
    c.execute(q.RECORD_MIGRATION, {"version": version})
    return True


def _insert_event(c: Cursor, kind: EventKind, job_id: str, stage: int) -> None:
    c.execute(q.INSERT_EVENT, {"kind": str(kind), "job_id": job_id, "stage": stage,
                               "channel": channel_for(JOBS_QUEUE)})


def _notify(c: Cursor, queues: set[str]) -> None:
    """Wake the listeners of these queues when this transaction commits (NOTIFY is transactional)."""
    c.execute(q.NOTIFY_CHANNELS, {"channels": sorted(channel_for(x) for x in queues)})


def _copy_tasks(c: Cursor, job_id: str, stage: int, tasks: Sequence[NewTask]) -> None:
    clock = c.execute(q.STAGE_CLOCK, {"job_id": job_id}).fetchone()
    assert clock is not None  # the compare-and-set on this job just succeeded in this transaction
    now, cid = clock["now"], clock["correlation_id"]
    with c.copy(q.COPY_TASKS) as copy:
        for t in tasks:
            copy.write_row((t.task_id, job_id, stage, t.task_key, t.task_type, _dumps(t.params), "queued", 0,
                            t.max_attempts, t.target_queue, float(t.timeout_seconds), now, now, cid))




def _preflight(url: str, timeout: float) -> None:
    """Fail at once on a URL the server refuses for good (unknown database or role, bad password); a server that
    is merely down or restarting is left to the pool and the retries."""
    try:
        psycopg.connect(url, **connect_kwargs(connect_timeout=timeout)).close()
    except psycopg.OperationalError as exc:
        if any(marker in str(exc) for marker in _PERMANENT_CONNECT):
            raise StoreError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from exc
        log.warning("PostgreSQL not reachable yet (%s); the store will keep trying", str(exc).strip())
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
