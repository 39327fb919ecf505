"""The logic both SQL stores share, written once: claim wrappers, lease reclaim, overdue jobs, outbox messages,
dead letters. A dialect provides the statements (`_sql`), its plumbing and the methods whose SQL differs."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from geomill.domain import Event, EventKind, JobStatus, Task
from geomill.engine.ports import ExpiredLease, LeaseRetry, PendingMessage, TaskOutcome
from geomill.store.compute_sql import ComputeRecords
from geomill.store.ledger import ContainerLedger
from geomill.store.reads import SharedReads
from geomill.store.rows import js, ts
from geomill.store.service_sql import ServiceState
from geomill.store.subscribers import JobSubscribers

log = logging.getLogger(__name__)


def lease_expired_error(lease: ExpiredLease, retry: bool) -> dict[str, Any]:
    """The error record of an attempt that lost its lease; `retry` False says no attempt follows."""
    message = f"attempt {lease.attempt} lost its lease (worker died or hung)"
    if not retry:
        message += f"; no attempts left ({lease.attempt} of {lease.max_attempts}): the task failed"
    return {"type": "LeaseExpired", "message": message, "cause": "transient", "retryable": retry,
            "attempt": lease.attempt}


def event_from_row(r: Mapping[str, Any]) -> Event:
    return Event(r["event_id"], EventKind(r["kind"]), r["job_id"], r["stage"])


def pending_messages(events: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]]) -> list[PendingMessage]:
    """Outbox rows as messages: events first (they are few, and move jobs along), then tasks on their queues."""
    return [PendingMessage(r["job_id"], r["stage"], event_id=r["event_id"]) for r in events] + [
        PendingMessage(r["job_id"], r["stage"], task_id=r["task_id"], queue=r["target_queue"]) for r in tasks]


class SQLStore(SharedReads, ServiceState, ComputeRecords, ContainerLedger, JobSubscribers):
    """Dialect-independent methods over the dialect's statements; `_clock()` gives the time parameters its
    statements take (SQLite: ``now``; PostgreSQL: none, the server's clock)."""

    _unavailable_at = float("-inf")  # time.monotonic() of the last failure to reach the database

    def seconds_since_unavailable(self) -> float:
        """Seconds since a call last found the database unreachable (infinite: never); the janitor waits after it."""
        return time.monotonic() - self._unavailable_at

    dialect = "sql"

    def _clock(self) -> dict[str, Any]:
        return {}

    def schema_version(self) -> int:
        return int(self._read(self._sql.schema_version)[0]["v"])

    def is_job_cancelled(self, job_id: str) -> bool:
        rows = self._read(self._sql.job_status, {"job_id": job_id})
        return bool(rows) and rows[0]["status"] == JobStatus.CANCELLED

    def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{**dict(r), "payload": js(r["payload"]), "created_at": ts(r["created_at"])}
                for r in self._read(self._sql.dead_letters, {"limit": limit})]

    # the dialect's own
    def claim_tasks(self, queues: Sequence[str], app: str, lease_seconds: float, limit: int) -> list[Task]:
        raise NotImplementedError

    def claim_tasks_by_ids(self, task_ids: Sequence[str], app: str, lease_seconds: float) -> list[Task]:
        raise NotImplementedError

    def fail_task(
        self, task_id: str, attempt: int, error: dict[str, Any], retry_in_seconds: float | None
    ) -> TaskOutcome:
        raise NotImplementedError

    def finish_job(
        self, job_id: str, stage: int, status: JobStatus, result: dict[str, Any] | None, error: dict[str, Any] | None,
        *, stage_done: bool = False,
    ) -> bool:
        raise NotImplementedError

    # guarded single-statement updates (PostgreSQL: autocommit, one round trip)
    def heartbeat(self, task_id: str, attempt: int, lease_seconds: float) -> bool:
        args = {**self._clock(), "task_id": task_id, "attempt": attempt, "lease": lease_seconds}
        return self._write(self._sql.heartbeat, args, "heartbeat") == 1

    def report_progress(self, task_id: str, attempt: int, progress: float, message: str) -> bool:
        args = {"task_id": task_id, "attempt": attempt, "progress": progress, "message": message}
        return self._write(self._sql.report_progress, args, "report_progress") == 1

    def cancel_task(self, task_id: str, attempt: int) -> bool:
        args = {**self._clock(), "task_id": task_id, "attempt": attempt}
        return self._write(self._sql.cancel_running_task, args, "cancel_task") == 1

    def acquire_leadership(self, name: str, holder: str, seconds: float) -> bool:
        args = {**self._clock(), "name": name, "holder": holder, "seconds": seconds}
        return self._write(self._sql.acquire_leadership, args, "acquire_leadership") == 1

    def ack_event(self, event_id: int) -> None:
        self._write(self._sql.ack_event, {"event_id": event_id}, "ack_event")

    def event_claimants(self) -> list[str]:
        return [r["claimed_by"] for r in self._read(self._sql.event_claimants, {"now": self._since(0.0)})]

    def release_claimed_events(self, claimant: str) -> int:
        args = {"now": self._since(0.0), "claimant": claimant}
        return self._write(self._sql.release_claimed_events, args, "release_claimed_events")

    # claims of one: the batch claim with a batch of one (no extra statement)
    def claim_task(self, queues: Sequence[str], app: str, lease_seconds: float) -> Task | None:
        claimed = self.claim_tasks(queues, app, lease_seconds, 1)
        return claimed[0] if claimed else None

    def claim_task_by_id(self, task_id: str, app: str, lease_seconds: float) -> Task | None:
        return next(iter(self.claim_tasks_by_ids([task_id], app, lease_seconds)), None)

    # janitor
    def reclaim_expired_leases(self, retry_in: LeaseRetry, limit: int = 500) -> int:
        """Each expired attempt is requeued after ``retry_in(lease)`` seconds, or failed for good (its stage counted
        down) when that is None: `fail_task`'s guarded update, so an attempt that finished meanwhile is left alone."""
        reclaimed = 0
        for r in self._read(self._sql.expired_leases, {**self._clock(), "limit": limit}):
            lease = ExpiredLease(r["task_id"], r["job_id"], r["task_type"], r["attempt"], r["max_attempts"])
            delay = retry_in(lease)
            if self.fail_task(lease.task_id, lease.attempt, lease_expired_error(lease, delay is not None),
                              delay).applied:
                reclaimed += 1
                outcome = f"retry in {delay:.1f} s" if delay is not None else "failed, no attempts left"
                log.warning("reclaimed expired lease (%s)", outcome,
                            extra={"task_id": lease.task_id, "attempt": lease.attempt})
        return reclaimed

    def fail_overdue_jobs(self) -> list[str]:
        """Unfinished jobs past their deadline fail (compare-and-set on their stage, queued tasks cancelled)."""
        failed = []
        for r in self._read(self._sql.overdue_jobs, self._clock()):
            error = {"type": "DeadlineExceeded", "cause": "platform", "message": "the job ran past its deadline",
                     "stage": r["stage"]}
            if self.finish_job(r["job_id"], r["stage"], JobStatus.FAILED, None, error):
                failed.append(r["job_id"])
        return failed
