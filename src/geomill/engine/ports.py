"""The protocols the engine talks through. Stores and dispatchers implement them in their own packages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from geomill.domain import Event, FailurePolicy, Job, JobStatus, NewJob, NewTask, Stage, Task, TaskStatus
from geomill.engine.context import ObjectLedger


@dataclass(frozen=True)
class TaskOutcome:
    """What a guarded task update did: `applied` is False when the attempt was fenced."""

    applied: bool
    stage_done: bool = False


@dataclass(frozen=True)
class RepairReport:
    """What one janitor pass repaired; every repair is logged and counted."""

    reclaimed_leases: int = 0
    resignalled_stages: int = 0
    overdue_jobs: int = 0
    redelivered_events: int = 0


@dataclass(frozen=True)
class PendingMessage:
    """Work the database says is due but the broker has not been told of (the outbox): a queued task on its
    queue, or an orchestration event on the jobs queue (`queue` is None: the publisher maps it)."""

    job_id: str
    stage: int
    task_id: str | None = None
    event_id: int | None = None
    queue: str | None = None

    def body(self) -> dict[str, Any]:
        """The message: ids only, never parameters or results."""
        if self.task_id is not None:
            return {"kind": "task", "task_id": self.task_id, "job_id": self.job_id, "stage": self.stage}
        return {"kind": "event", "event_id": self.event_id, "job_id": self.job_id, "stage": self.stage}


@dataclass(frozen=True)
class JobView:
    """Everything a status report reads: the job, its stages with per-status task counts, and (at most 20 each)
    its failed and running tasks, read only when the counts say there are some."""

    job: Job
    stages: list[Stage]
    failed_tasks: list[Task]
    running_tasks: list[Task]


class AsyncStore(Protocol):
    """The store calls the HTTP API makes on its event loop (status reads and submissions): no thread hop per
    request, and the loop never blocks on the database."""

    async def job_view(self, job_id: str) -> JobView:
        """NotFound for an unknown id."""
        ...

    async def create_job(self, job: NewJob) -> tuple[Job, bool]:
        """As `JobStore.create_job`."""
        ...

    async def close(self) -> None: ...


class JobReads(Protocol):
    """The read side: what status documents, listings and the faces (API, CLI) read."""

    def get_job(self, job_id: str) -> Job:
        """NotFound for an unknown id."""
        ...

    def find_jobs(self, prefix: str) -> list[Job]:
        """Jobs whose id starts with `prefix` (at most 3: enough to tell unique from ambiguous)."""
        ...

    def list_jobs(self, status: JobStatus | None = None, job_type: str | None = None, limit: int = 100,
                  created_after: datetime | None = None, created_before: datetime | None = None,
                  after: tuple[datetime, str] | None = None) -> list[Job]:
        """Newest first; `after` is a keyset cursor, the (created_at, job_id) of the previous page's last job."""
        ...

    def get_stages(self, job_id: str) -> list[Stage]:
        """The job's stages, each with its tasks counted by status."""
        ...

    def job_view(self, job_id: str) -> JobView:
        """The job, its stages with counts and its failed/running tasks (PostgreSQL: one round trip when none)."""
        ...

    def stage_tasks(self, job_id: str, stage: int) -> list[Task]:
        """Every task of one stage, by key."""
        ...

    def list_tasks(self, job_id: str, stage: int | None = None, status: TaskStatus | None = None,
                   limit: int | None = None, after: tuple[int, str] | None = None) -> list[Task]:
        """A job's tasks by (stage, task_key), optionally of one stage and one status; `after` a keyset cursor."""
        ...

    def get_task(self, task_id: str) -> Task:
        """NotFound for an unknown id."""
        ...

    def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first."""
        ...


class JobStore(Protocol):
    """What the orchestrator and the job use cases change: submission, stage advance, finish, cancel, retry."""

    def create_job(self, job: NewJob) -> tuple[Job, bool]:
        """Insert the job and its job_submitted event in one transaction; an existing id returns (job, False)."""
        ...

    def get_job(self, job_id: str) -> Job:
        """NotFound for an unknown id."""
        ...

    def get_stage(self, job_id: str, stage: int) -> Stage | None:
        """One stage's counter row, without per-status counts (cheap: read per event)."""
        ...

    def stage_outcomes(self, job_id: str, stage: int) -> list[tuple[str, str, Any, Any]]:
        """(task_key, status, result, error) of the stage's completed and failed tasks."""
        ...

    def start_stage(
        self, job_id: str, stage: int, name: str, policy: FailurePolicy, tasks: Sequence[NewTask],
        *, sealed: bool = True,
    ) -> bool:
        """Compare-and-set the job from stage-1 to `stage`, insert the stage counter and its tasks; one transaction.
        With ``sealed=False`` more tasks follow through `add_stage_tasks` (the counter holds one extra unit until the
        last chunk seals the stage)."""
        ...

    def add_stage_tasks(self, job_id: str, stage: int, tasks: Sequence[NewTask], *, expected_total: int,
                        seal: bool) -> bool:
        """Insert one more chunk of an unsealed stage, in its own transaction, if the stage still has exactly
        `expected_total` tasks (compare-and-set: two planners never insert the same chunk); with `seal`, close the
        stage, which emits stage_complete at once when every task is already finished. False: someone else did."""
        ...

    def finish_job(
        self, job_id: str, stage: int, status: JobStatus, result: dict[str, Any] | None, error: dict[str, Any] | None,
        *, stage_done: bool = False,
    ) -> bool:
        """Move a job at `stage` to a terminal status (compare-and-set); cancels its queued tasks. With `stage_done`,
        only while no task of that stage is queued or running: a manual retry that lands while the orchestrator
        judges the stage wins over the judgement."""
        ...

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a queued or processing job and its queued tasks; False when it had already finished."""
        ...

    def retry_task(self, task_id: str) -> bool:
        """Re-queue a failed task (one more attempt), re-opening its stage, and its job if that stage failed it.
        False when the task is not failed or its job has already moved past the task's stage."""
        ...


class TaskQueue(Protocol):
    """What workers do: claim tasks and events, renew leases, finish attempts; every update is fenced by attempt."""

    def claim_task(self, queues: Sequence[str], app: str, lease_seconds: float) -> Task | None:
        """The oldest due task of `queues`, with a lease; None when there is none."""
        ...

    def claim_tasks(self, queues: Sequence[str], app: str, lease_seconds: float, limit: int) -> list[Task]:
        """Up to `limit` due tasks in one round trip (prefetch for short tasks); each has its own lease."""
        ...

    def claim_task_by_id(self, task_id: str, app: str, lease_seconds: float) -> Task | None:
        """Claim this task if it is still queued and due; None for a duplicate or stale message."""
        ...

    def claim_tasks_by_ids(self, task_ids: Sequence[str], app: str, lease_seconds: float) -> list[Task]:
        """`claim_task_by_id` for many messages in one transaction: the tasks claimed, in the order given."""
        ...

    def release_task(self, task_id: str, attempt: int) -> bool:
        """Give back a claimed task that was never started (its attempt does not count)."""
        ...

    def heartbeat(self, task_id: str, attempt: int, lease_seconds: float) -> bool:
        """Renew the lease of this attempt; False means fenced (the task moved on without us)."""
        ...

    def report_progress(self, task_id: str, attempt: int, progress: float, message: str) -> bool:
        """Record the attempt's progress; False when fenced."""
        ...

    def is_job_cancelled(self, job_id: str) -> bool:
        """True once the job was cancelled (a running attempt then stops)."""
        ...

    def get_task(self, task_id: str) -> Task:
        """NotFound for an unknown id."""
        ...

    def get_job(self, job_id: str) -> Job:
        """NotFound for an unknown id."""
        ...

    def complete_task(self, task_id: str, attempt: int, result: dict[str, Any]) -> TaskOutcome:
        """Finish the attempt with its result and count its stage down (one atomic change)."""
        ...

    def complete_tasks(self, done: Sequence[tuple[str, int, dict[str, Any]]]) -> list[TaskOutcome]:
        """`complete_task` for many ``(task_id, attempt, result)`` in one transaction (one commit), each guarded and
        counted as if alone; outcomes in the same order (a stage reaching zero marks one of its tasks)."""
        ...

    def fail_task(
        self, task_id: str, attempt: int, error: dict[str, Any], retry_in_seconds: float | None
    ) -> TaskOutcome:
        """Retry after a backoff (`retry_in_seconds`) or fail for good (None), counting the stage down."""
        ...

    def cancel_task(self, task_id: str, attempt: int) -> bool:
        """A running attempt whose job was cancelled stops as cancelled (no stage accounting: the job is over)."""
        ...

    def claim_event(self, consumer: str, visibility_seconds: float) -> Event | None:
        """The oldest visible orchestration event, hidden for `visibility_seconds` (the database as jobs queue)."""
        ...

    def event_claimants(self) -> list[str]:
        """Who holds the events claimed and not yet visible again (a planner's consumer name)."""
        ...

    def release_claimed_events(self, claimant: str) -> int:
        """Make the events `claimant` holds visible now (it is known dead); how many."""
        ...

    def claim_event_by_id(self, event_id: int, consumer: str, visibility_seconds: float) -> Event | None:
        """Claim this event if it is still pending and visible; None when it was handled (or is being handled)."""
        ...

    def ack_event(self, event_id: int) -> None:
        """The event was handled: delete it (twice is harmless)."""
        ...

    def add_dead_letter(self, source: str, reason: str, payload: dict[str, Any], job_id: str | None = None,
                        task_id: str | None = None) -> None:
        """Keep work that cannot be processed at all (unknown task type, undecodable parameters)."""
        ...


@dataclass(frozen=True)
class ExpiredLease:
    """A running attempt whose lease ran out (its worker died or hung): the reconciler decides its fate."""

    task_id: str
    job_id: str
    task_type: str
    attempt: int
    max_attempts: int


# Seconds until the next attempt of an expired lease (0: at once), or None: fail the task for good.
LeaseRetry = Callable[[ExpiredLease], float | None]


class Reconciler(Protocol):
    """The janitor's repairs, run by whoever holds the janitor lease."""

    def acquire_leadership(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the named lease (e.g. "janitor") for `holder`; False while another holder has it."""
        ...

    def seconds_since_unavailable(self) -> float:
        """Seconds since a call of this store last found its database unreachable (infinite: never)."""
        ...

    def reclaim_expired_leases(self, retry_in: LeaseRetry, limit: int = 500) -> int:
        """Each expired attempt (at most `limit`) is requeued after ``retry_in(lease)`` seconds or, when that is
        None, failed for good with a LeaseExpired error and its stage counted down; returns how many applied."""
        ...

    def resignal_stalled_stages(self, grace_seconds: float) -> int:
        """Stages at zero (or submitted jobs) that did not move for `grace_seconds` and have no pending event get
        their event again; returns how many."""
        ...

    def fail_overdue_jobs(self) -> list[str]:
        """Fail the unfinished jobs past their deadline; their ids."""
        ...

    def bump_counter(self, name: str, n: int = 1) -> None:
        """Add `n` to a repair counter (for metrics)."""
        ...


class OutboxStore(Protocol):
    """The outbox: due work the broker has not been told of yet."""

    def take_unpublished_work(self, limit: int, republish_after_seconds: float | None = None) -> list[PendingMessage]:
        """Due tasks and pending events not yet sent to the broker, stamped as sent in the same transaction.
        With `republish_after_seconds`, also those sent that long ago and still unclaimed (the message was lost)."""
        ...

    def mark_unpublished(self, messages: Sequence[PendingMessage]) -> None:
        """A publish failed: send these again on the next pass (rows claimed meanwhile are left alone)."""
        ...


class ServiceStore(Protocol):
    """Service-side state: API keys, idempotency keys, live workers, counters, metrics, the schema."""

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgres"."""
        ...

    def schema_version(self) -> int:
        """The highest migration applied (0 before any)."""
        ...

    def create_api_key(self, key_id: str, name: str, key_hash: str, scopes: Sequence[str]) -> None:
        """Store a new key; only a hash of its secret."""
        ...

    def api_key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        """The key (key_id, name, scopes, revoked) whose secret hashes to `key_hash`, or None."""
        ...

    def revoke_api_key(self, key_id: str) -> bool:
        """False when there is no such key or it was already revoked."""
        ...

    def list_api_keys(self) -> list[dict[str, Any]]:
        """Every key, oldest first, without hashes."""
        ...

    def remember_idempotency_key(self, key: str, job_id: str) -> str:
        """The job id first stored for `key` (this one, if the key is new)."""
        ...

    def job_for_idempotency_key(self, key: str) -> str | None:
        """The job id stored for `key`, or None."""
        ...

    def record_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        """A supervisor reports itself alive (inserted or refreshed)."""
        ...

    def list_workers(self, seen_within_seconds: float) -> list[dict[str, Any]]:
        """Workers seen within the last `seen_within_seconds`."""
        ...

    def counters(self) -> dict[str, int]:
        """The repair counters by name."""
        ...

    def metrics_snapshot(self) -> dict[str, Any]:
        """Jobs by type and status, queue depths, task durations as histogram buckets, retries, dead letters."""
        ...

    def stuck_jobs(self, idle_seconds: float) -> list[dict[str, Any]]:
        """Unfinished jobs that have not moved for `idle_seconds` and have no task running on a live lease."""
        ...


class ComputeStore(Protocol):
    """Results and artifacts of solve jobs (compute contracts): written by the solve task, read by the API."""

    def save_compute_result(self, result: dict[str, Any], artifacts: list[dict[str, Any]]) -> None:
        """Upsert a job's result row and its artifact rows (a re-run of the same job rewrites the same rows)."""
        ...

    def compute_result(self, job_id: str) -> dict[str, Any] | None:
        """The job's result row with its artifacts, or None when none was recorded."""
        ...


@dataclass(frozen=True)
class Subscriber:
    """Callback URLs a client gave for a job, and what was delivered to them so far."""

    subscriber_id: int
    job_id: str
    success_uri: str | None
    failed_uri: str | None
    in_progress_uri: str | None
    notified: str  # the state last delivered ('' nothing yet)
    attempts: int  # failed tries of the current delivery


class SubscriberStore(Protocol):
    """Job callback subscribers (OGC API - Processes `subscriber`), delivered by one process at a time."""

    def add_subscriber(self, job_id: str, success_uri: str | None, failed_uri: str | None,
                       in_progress_uri: str | None) -> None:
        """Record a subscriber of `job_id`, due at once."""
        ...

    def due_subscribers(self, limit: int) -> list[Subscriber]:
        """Open subscribers whose next look is due, oldest due first."""
        ...

    def update_subscriber(self, subscriber_id: int, expected: str, notified: str, attempts: int,
                          next_in_seconds: float, close: bool) -> bool:
        """Record a delivery (or a failed try) if the subscriber still has `expected` delivered; whether it did."""
        ...


class Store(JobReads, JobStore, TaskQueue, Reconciler, OutboxStore, ServiceStore, ComputeStore, ObjectLedger,
            SubscriberStore, Protocol):
    """All state, for the composition root; each caller is typed by the narrow port it uses (task handlers get
    the ObjectLedger part only, as `TaskContext.ledger`). Every state-changing
    method is guarded by the state it expects and says if it applied."""

    def migrate(self) -> None:
        """Apply the migrations not applied yet (safe to run from several processes at once)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class Dispatch(Protocol):
    """How a worker learns that work may be waiting. Only a hint: the store decides who gets what."""

    def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Block up to `timeout` seconds or until work may be available on one of `queues`."""
        ...

    def notify(self, queue: str) -> None: ...

    def found_work(self) -> None:
        """Tell the dispatcher the last poll found work, so it polls eagerly again."""
        ...
