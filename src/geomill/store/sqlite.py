"""SQLite store (WAL): the embedded default. The database is also the queue, so state and wake-up commit together."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from geomill.domain import (
    Event,
    EventKind,
    FailurePolicy,
    Job,
    JobStatus,
    NewJob,
    NewTask,
    StoreError,
    Task,
    check_job_transition,
)
from geomill.domain.status import job_sources
from geomill.engine.ports import PendingMessage, TaskOutcome
from geomill.store import sqlite_queries as q
from geomill.store.base import SQLStore, event_from_row, pending_messages
from geomill.store.rows import task_from_row
from geomill.store.sql import migrations

log = logging.getLogger(__name__)


def _enable_wal(conn: sqlite3.Connection, path: Path, timeout_s: float) -> None:
    """Switch the database to WAL, retrying while another process holds a lock.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once, without its busy handler,
    when another process is writing (waiting could deadlock). That only happens while a new database is being
    created by several processes at once; once in WAL the mode persists and the first read here says so.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            if conn.execute(q.JOURNAL_MODE).fetchone()[0] == "wal":
                return
            conn.execute(q.WAL)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise StoreError(f"cannot open SQLite database {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise StoreError(f"SQLite database {path} stayed locked for {timeout_s:.0f} s: {exc}") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)



def _disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL: "database or disk is full"."""
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)

class SQLiteStore(SQLStore):
    """One connection per process (and per store object), guarded by a lock for the heartbeat thread."""

    dialect = "sqlite"
    _sql = q.STATEMENTS

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=busy_timeout_s, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        _enable_wal(self._conn, self.path, busy_timeout_s)
        self._conn.execute(q.SYNCHRONOUS.format(level=synchronous))
        self._conn.execute(q.FOREIGN_KEYS)

    # plumbing
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        with self._lock:
            try:
                self._conn.execute(q.BEGIN_WRITE)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite busy or unavailable: {exc}") from exc
            try:
                yield self._conn
            except BaseException as exc:
                try:
                    self._conn.execute(q.ROLLBACK)
                except sqlite3.OperationalError:
                    if not _disk_full(exc):  # SQLite may have rolled back a full disk's transaction itself
                        raise
                if _disk_full(exc):
                    raise self._full(exc) from exc
                raise
            else:
                try:
                    self._conn.execute(q.COMMIT)
                except sqlite3.OperationalError as exc:
                    if _disk_full(exc):
                        raise self._full(exc) from exc
                    raise

    def _full(self, exc: BaseException) -> StoreError:
        free = shutil.disk_usage(self.path.parent).free
        return StoreError(f"the disk holding the SQLite database {self.path} is full ({free:,} bytes free): "
                          f"free space there and try again ({exc})")

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        """Rows (`sqlite3.Row`: by name or index)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _write(self, sql: str, params: Any = (), what: str = "write") -> int:
        with self._tx() as c:
            return c.execute(sql, params).rowcount

    def _since(self, seconds: float) -> float:
        return time.time() - seconds

    def _clock(self) -> dict[str, Any]:
        return {"now": time.time()}

    def migrate(self) -> None:
        """Apply numbered migrations not yet applied, each in its own transaction."""
        with self._tx() as c:
            c.execute(q.CREATE_MIGRATIONS)
            done = {r[0] for r in c.execute(q.APPLIED_VERSIONS)}
        for version, sql in migrations("sqlite"):
            if version in done:
                continue
            with self._tx() as c:
                # another process may have applied it since we looked; the write lock makes this check final
                if c.execute(q.IS_APPLIED, {"version": version}).fetchone():
                    continue
                for statement in _split_sql(sql):
                    c.execute(statement)
                c.execute(q.RECORD_MIGRATION, {"version": version, "now": time.time()})
            log.info("applied migration %03d", version)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # jobs
    def create_job(self, job: NewJob) -> tuple[Job, bool]:
        now = round(time.time(), 6)  # whole microseconds, as a datetime holds them: a paging cursor round-trips
        deadline = now + job.deadline_seconds if job.deadline_seconds else None
        with self._tx() as c:
            cur = c.execute(q.INSERT_JOB, {
                "job_id": job.job_id, "job_type": job.job_type, "params": _json(job.params),
                "stage_count": job.stage_count, "resubmit_of": job.resubmit_of, "now": now, "deadline_at": deadline,
                "correlation_id": job.correlation_id,
            })
            created = cur.rowcount == 1
            if created:
                c.execute(q.INSERT_EVENT, {"kind": EventKind.JOB_SUBMITTED, "job_id": job.job_id, "stage": 0,
                                           "now": now})
        return self.get_job(job.job_id), created

    def start_stage(
        self, job_id: str, stage: int, name: str, policy: FailurePolicy, tasks: Sequence[NewTask],
        *, sealed: bool = True,
    ) -> bool:
        now = time.time()
        with self._tx() as c:
            if c.execute(q.ADVANCE_JOB_STAGE, {"job_id": job_id, "stage": stage, "now": now}).rowcount != 1:
                return False
            c.execute(q.INSERT_STAGE, {"job_id": job_id, "stage": stage, "name": name, "total": len(tasks),
                                       "token": 0 if sealed else 1, "policy": str(policy), "now": now})
            c.executemany(q.INSERT_TASK, [_task_row(job_id, stage, t, now) for t in tasks])
            if sealed and not tasks:  # a plan of 0 tasks completes the stage at once
                c.execute(q.INSERT_EVENT, {"kind": EventKind.STAGE_COMPLETE, "job_id": job_id, "stage": stage,
                                           "now": now})
        return True

    def add_stage_tasks(self, job_id: str, stage: int, tasks: Sequence[NewTask], *, expected_total: int,
                        seal: bool) -> bool:
        now = time.time()
        with self._tx() as c:
            if c.execute(q.GROW_STAGE, {"job_id": job_id, "stage": stage, "n": len(tasks), "seal": seal,
                                        "expected": expected_total}).rowcount != 1:
                return False
            c.executemany(q.INSERT_TASK, [_task_row(job_id, stage, t, now) for t in tasks])
            if seal:  # the plan's token counts down like a finished task: zero now means every task is done
                self._count_down(c, job_id, stage, 0, now)
        return True

    def finish_job(
        self, job_id: str, stage: int, status: JobStatus, result: dict[str, Any] | None, error: dict[str, Any] | None,
        *, stage_done: bool = False,
    ) -> bool:
        check_job_transition(JobStatus.PROCESSING, status)
        sources = ",".join(f"'{s}'" for s in job_sources(status))
        now = time.time()
        with self._tx() as c:
            if stage_done and c.execute(q.OPEN_STAGE_TASK, {"job_id": job_id, "stage": stage}).fetchone():
                return False
            cur = c.execute(q.FINISH_JOB.format(sources=sources), {
                "job_id": job_id, "stage": stage, "status": str(status), "result": _json(result),
                "error": _json(error), "now": now,
            })
            if cur.rowcount != 1:
                return False
            c.execute(q.CANCEL_QUEUED_TASKS, {"job_id": job_id, "now": now})
        return True

    def cancel_job(self, job_id: str) -> bool:
        now = time.time()
        with self._tx() as c:
            if c.execute(q.CANCEL_JOB, {"job_id": job_id, "now": now}).rowcount != 1:
                return False
            c.execute(q.CANCEL_QUEUED_TASKS, {"job_id": job_id, "now": now})
        return True

    def retry_task(self, task_id: str) -> bool:
        return self.retry_tasks([task_id]) == 1

    def retry_tasks(self, task_ids: Sequence[str]) -> int:
        now = time.time()
        retried = 0
        with self._tx() as c:
            for task_id in task_ids:
                row = c.execute(q.REOPEN_FAILED_TASK, {"task_id": task_id, "now": now}).fetchone()
                if row is None:
                    continue
                args = {"job_id": row["job_id"], "stage": row["stage"], "now": now}
                c.execute(q.REOPEN_STAGE, args)
                c.execute(q.REOPEN_JOB, args)
                c.execute(q.DROP_STAGE_EVENTS, args)  # the stage is open again: a pending stage_complete is stale
                retried += 1
        return retried

    def add_dead_letter(self, source: str, reason: str, payload: dict[str, Any], job_id: str | None = None,
                        task_id: str | None = None) -> None:
        with self._tx() as c:
            c.execute(q.INSERT_DEAD_LETTER, {"source": source, "reason": reason, "payload": _json(payload),
                                             "job_id": job_id, "task_id": task_id, "now": time.time()})

    # stages and tasks
    def claim_tasks(self, queues: Sequence[str], app: str, lease_seconds: float, limit: int) -> list[Task]:
        """Up to `limit` due tasks of `queues`, oldest first, each claimed with its own lease and attempt."""
        now = time.time()
        marks = ",".join("?" for _ in queues)
        peek = q.PEEK_CLAIMABLE.replace(":now", "?").format(queues=marks, limit=int(limit))
        for _ in range(5):  # another process may win the rows between peek and claim: look again
            ids = [r[0] for r in self._read(peek, [*queues, now])]
            if not ids:
                return []
            args = [{"task_id": i, "now": now, "lease": lease_seconds, "app": app} for i in ids]
            with self._tx() as c:
                rows = [c.execute(q.CLAIM_TASK, a).fetchone() for a in args]
            claimed = [task_from_row(r) for r in rows if r is not None]
            if claimed:
                return claimed
        return []

    def release_task(self, task_id: str, attempt: int) -> bool:
        with self._tx() as c:
            cur = c.execute(q.RELEASE_TASK, {"task_id": task_id, "attempt": attempt, "now": time.time()})
        return cur.rowcount == 1

    def complete_task(self, task_id: str, attempt: int, result: dict[str, Any]) -> TaskOutcome:
        now = time.time()
        with self._tx() as c:
            row = c.execute(q.COMPLETE_TASK, {"task_id": task_id, "attempt": attempt, "result": _json(result),
                                              "now": now}).fetchone()
            if row is None:
                return TaskOutcome(applied=False)
            return TaskOutcome(applied=True, stage_done=self._count_down(c, row["job_id"], row["stage"], 0, now))

    def complete_tasks(self, done: Sequence[tuple[str, int, dict[str, Any]]]) -> list[TaskOutcome]:
        now = time.time()
        outcomes = []
        with self._tx() as c:  # one transaction (one fsync) for the whole batch
            for task_id, attempt, result in done:
                row = c.execute(q.COMPLETE_TASK, {"task_id": task_id, "attempt": attempt, "result": _json(result),
                                                  "now": now}).fetchone()
                outcomes.append(TaskOutcome(applied=False) if row is None else TaskOutcome(
                    applied=True, stage_done=self._count_down(c, row["job_id"], row["stage"], 0, now)))
        return outcomes

    def fail_task(
        self, task_id: str, attempt: int, error: dict[str, Any], retry_in_seconds: float | None
    ) -> TaskOutcome:
        now = time.time()
        args = {"task_id": task_id, "attempt": attempt, "error": _json(error), "now": now, "delay": retry_in_seconds}
        with self._tx() as c:
            if retry_in_seconds is not None:
                return TaskOutcome(applied=c.execute(q.RETRY_TASK, args).fetchone() is not None)
            row = c.execute(q.FAIL_TASK, args).fetchone()
            if row is None:
                return TaskOutcome(applied=False)
            return TaskOutcome(applied=True, stage_done=self._count_down(c, row["job_id"], row["stage"], 1, now))

    def _count_down(self, c: sqlite3.Connection, job_id: str, stage: int, failed: int, now: float) -> bool:
        """Decrement the stage counter; the decrement that reaches zero emits stage_complete in the same tx."""
        row = c.execute(q.COUNT_DOWN_STAGE, {"job_id": job_id, "stage": stage, "failed": failed,
                                             "now": now}).fetchone()
        if row is None:
            raise StoreError(f"stage counter of job {job_id} stage {stage} is missing or already zero")
        if row[0] != 0:
            return False
        c.execute(q.INSERT_EVENT, {"kind": EventKind.STAGE_COMPLETE, "job_id": job_id, "stage": stage, "now": now})
        return True

    # events
    def claim_event(self, consumer: str, visibility_seconds: float) -> Event | None:
        now = time.time()
        if not self._read(q.ANY_VISIBLE_EVENT, {"now": now}):
            return None
        with self._tx() as c:
            row = c.execute(q.CLAIM_EVENT, {"now": now, "visibility": visibility_seconds,
                                            "consumer": consumer}).fetchone()
        return None if row is None else event_from_row(row)

    # broker dispatch
    def claim_tasks_by_ids(self, task_ids: Sequence[str], app: str, lease_seconds: float) -> list[Task]:
        now = time.time()
        with self._tx() as c:
            rows = [c.execute(q.CLAIM_TASK_BY_ID, {"task_id": t, "app": app, "lease": lease_seconds,
                                                   "now": now}).fetchone() for t in dict.fromkeys(task_ids)]
        return [task_from_row(r) for r in rows if r is not None]

    def claim_event_by_id(self, event_id: int, consumer: str, visibility_seconds: float) -> Event | None:
        with self._tx() as c:
            row = c.execute(q.CLAIM_EVENT_BY_ID, {"event_id": event_id, "consumer": consumer,
                                                  "visibility": visibility_seconds, "now": time.time()}).fetchone()
        return None if row is None else event_from_row(row)

    def take_unpublished_work(self, limit: int, republish_after_seconds: float | None = None) -> list[PendingMessage]:
        args = {"now": time.time(), "limit": int(limit), "republish": republish_after_seconds}
        with self._tx() as c:
            events = c.execute(q.UNPUBLISHED_EVENTS, args).fetchall()
            tasks = c.execute(q.UNPUBLISHED_TASKS, args).fetchall()
            c.executemany(q.STAMP_EVENT, [{"id": r["event_id"], "now": args["now"]} for r in events])
            c.executemany(q.STAMP_TASK, [{"id": r["task_id"], "now": args["now"]} for r in tasks])
        return pending_messages(events, tasks)

    def mark_unpublished(self, messages: Sequence[PendingMessage]) -> None:
        with self._tx() as c:
            c.executemany(q.UNMARK_TASK, [{"id": m.task_id} for m in messages if m.task_id is not None])
            c.executemany(q.UNMARK_EVENT, [{"id": m.event_id} for m in messages if m.event_id is not None])

    # janitor
    def resignal_stalled_stages(self, grace_seconds: float) -> int:
        """Stages at zero (or submitted jobs) whose job did not move and that have no pending event: signal again."""
        now = time.time()
        with self._tx() as c:
            rows = c.execute(q.STALLED_STAGES, {"before": now - grace_seconds}).fetchall()
            for job_id, stage in rows:
                kind = EventKind.JOB_SUBMITTED if stage == 0 else EventKind.STAGE_COMPLETE
                c.execute(q.INSERT_EVENT, {"kind": kind, "job_id": job_id, "stage": stage, "now": now})
                log.warning("re-signalled stalled stage %d", stage, extra={"job_id": job_id})
        return len(rows)


def _task_row(job_id: str, stage: int, t: NewTask, now: float) -> dict[str, Any]:
    return {
        "task_id": t.task_id, "job_id": job_id, "stage": stage, "task_key": t.task_key, "task_type": t.task_type,
        "params": _json(t.params), "max_attempts": t.max_attempts, "target_queue": t.target_queue,
        "timeout_seconds": t.timeout_seconds, "now": now,
    }


def _split_sql(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]
