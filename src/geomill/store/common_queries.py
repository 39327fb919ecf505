"""The statements the dialect-independent store logic runs (`base.SQLStore`, `reads`, `service_sql`).

Most are the same text in both dialects: written once here with ``:name`` parameters (SQLite's style), they reach
PostgreSQL through `pyformat` (``%(name)s``). The few whose text differs (a clock, a duration) are required fields
that each dialect's queries module fills. Each dialect module exposes the result as ``STATEMENTS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def pyformat(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (a literal ``%`` doubled)."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def stages_with_counts(job: str) -> str:
    """A job's stage rows, each with its number of tasks running and cancelled (`job`: the SQL naming the job id).
    The other counts follow from the stage's counters (`reads.stage_counts`), so a status read costs
    O(stages + tasks running or cancelled), not O(tasks): counting a 20,000-task stage by status took PostgreSQL
    17 ms."""
    counted = ", ".join(f"(SELECT COUNT(*) FROM tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage "
                        f"AND t.status = '{status}') AS {status}_count" for status in ("processing", "cancelled"))
    return f"SELECT s.*, {counted} FROM stages s WHERE s.job_id = {job} ORDER BY s.stage"


def stage_timeline(job: str) -> str:
    """`stages_with_counts` plus each stage's first task start and last task finish, each read off its own index
    (`tasks_stage_started`, `tasks_stage_finished`: a min/max lookup, not a scan of the stage's tasks)."""
    times = ", ".join(f"(SELECT {fn}(t.{col}) FROM tasks t WHERE t.job_id = s.job_id AND t.stage = s.stage) AS {name}"
                      for fn, col, name in (("MIN", "execution_started_at", "first_started_at"),
                                            ("MAX", "finished_at", "last_finished_at")))
    return stages_with_counts(job).replace(" FROM stages s", f", {times} FROM stages s", 1)


def error_prefix(message: str, kind: str) -> str:
    """SQL true when an error's message (`message`: the dialect's SQL for it), or its ``type: message``, starts with
    the :error parameter (:error_len characters long); case-sensitive in both dialects, and no LIKE wildcards."""
    return (f"(substr({message}, 1, :error_len) = :error "
            f"OR substr({kind} || ': ' || {message}, 1, :error_len) = :error)")


def and_error(job_error: tuple[str, str], task_error: tuple[str, str], fence: str = "") -> str:
    """The jobs filter on error text: the job's own error, or one of its failed tasks' errors (via the partial
    index `tasks_failed`). Each argument is the dialect's (message, type) SQL of a ``jobs.error`` / ``t.error``;
    `fence` ends the subquery (PostgreSQL: ``OFFSET 0``, else it hashes every failed task's error up front: 37 ms
    with 10,000 failed tasks, where probing the 50-odd jobs a page scans costs 1 ms)."""
    return (f" AND ({error_prefix(*job_error)} OR EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.job_id "
            f"AND t.status = 'failed' AND {error_prefix(*task_error)}{fence}))")


def duration_histogram(duration: str) -> str:
    """Completed tasks by type: count, total run time and one cumulative bucket per DURATION_BUCKETS bound
    (`duration`: the dialect's SQL for a task's run time in seconds)."""
    buckets = ", ".join(f"SUM(CASE WHEN {duration} <= {b} THEN 1 ELSE 0 END) AS le_{i}"
                        for i, b in enumerate(DURATION_BUCKETS))
    return (f"SELECT task_type, COUNT(*) AS n, SUM({duration}) AS total, {buckets} FROM tasks "
            "WHERE status = 'completed' AND execution_started_at IS NOT NULL GROUP BY task_type")


@dataclass(frozen=True)
class Statements:
    """One dialect's statements for the shared logic (fields with a default: the same text in both dialects)."""

    # differ by dialect (their clock)
    task_durations: str  # duration_histogram(...)
    expired_leases: str  # running attempts past their lease (param: limit)
    overdue_jobs: str  # unfinished jobs past their deadline
    heartbeat: str  # renew the lease of a running attempt (task_id, attempt, lease seconds)
    cancel_running_task: str  # a running attempt of a cancelled job stops (task_id, attempt)
    acquire_leadership: str  # take or renew a named lease (name, holder, seconds)
    and_error: str  # and_error(...): list_jobs' error-text filter (error, error_len)

    # guarded single-statement updates
    report_progress: str = ("UPDATE tasks SET progress = :progress, progress_message = :message "
                            "WHERE task_id = :task_id AND attempt = :attempt AND status = 'processing'")
    ack_event: str = "DELETE FROM events WHERE event_id = :event_id"
    event_claimants: str = "SELECT DISTINCT claimed_by FROM events WHERE visible_at > :now AND claimed_by IS NOT NULL"
    release_claimed_events: str = ("UPDATE events SET visible_at = :now "
                                   "WHERE visible_at > :now AND claimed_by = :claimant")

    # reads
    job: str = "SELECT * FROM jobs WHERE job_id = :job_id"
    job_status: str = "SELECT status FROM jobs WHERE job_id = :job_id"
    find_jobs: str = "SELECT * FROM jobs WHERE job_id LIKE :prefix LIMIT 3"
    jobs: str = "SELECT * FROM jobs WHERE 1 = 1"  # list_jobs: the filters below follow, then jobs_page
    and_status: str = " AND status = :status"
    and_job_type: str = " AND job_type = :job_type"
    and_created_after: str = " AND created_at >= :created_after"
    and_created_before: str = " AND created_at < :created_before"
    # keyset: a row comparison, so the index scan starts at the cursor (an OR would scan from the newest job on)
    and_before_cursor: str = " AND (created_at, job_id) < (:cursor_at, :cursor_id)"
    jobs_page: str = " ORDER BY created_at DESC, job_id DESC LIMIT :limit"
    stages: str = stages_with_counts(":job_id")
    stage: str = "SELECT * FROM stages WHERE job_id = :job_id AND stage = :stage"
    stage_timeline: str = stage_timeline(":job_id")
    # the failed tasks a manual retry can take: those of the stage the job is at, while it is failed or processing
    retryable_tasks: str = ("SELECT t.task_id FROM tasks t JOIN jobs j ON j.job_id = t.job_id "
                            "WHERE t.job_id = :job_id AND t.status = 'failed' AND t.stage = j.stage "
                            "AND j.status IN ('processing', 'failed') ORDER BY t.task_key")
    stage_outcomes: str = ("SELECT task_key, status, result, error FROM tasks WHERE job_id = :job_id "
                           "AND stage = :stage AND status IN ('completed', 'failed')")
    tasks: str = "SELECT * FROM tasks WHERE job_id = :job_id"  # list_tasks: and_stage / and_status, tasks_order
    and_stage: str = " AND stage = :stage"
    and_after_task: str = " AND (stage, task_key) > (:after_stage, :after_key)"  # keyset: the unique index's order
    tasks_order: str = " ORDER BY stage, task_key"
    and_limit: str = " LIMIT :limit"
    tasks_by_status: str = ("SELECT * FROM tasks WHERE job_id = :job_id AND status = :status "
                            "ORDER BY stage, task_key LIMIT :limit")
    task: str = "SELECT * FROM tasks WHERE task_id = :task_id"
    dead_letters: str = "SELECT * FROM dead_letters ORDER BY id DESC LIMIT :limit"
    schema_version: str = "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations"

    # API keys: only a hash of the secret is stored
    insert_api_key: str = ("INSERT INTO api_keys (key_id, name, key_hash, scopes, created_at) "
                           "VALUES (:key_id, :name, :key_hash, :scopes, :now)")
    api_key_by_hash: str = "SELECT key_id, name, scopes, revoked_at FROM api_keys WHERE key_hash = :key_hash"
    revoke_api_key: str = "UPDATE api_keys SET revoked_at = :now WHERE key_id = :key_id AND revoked_at IS NULL"
    api_keys: str = "SELECT key_id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at"

    # idempotency keys, live workers, repair counters
    insert_idempotency_key: str = ("INSERT INTO idempotency_keys (idempotency_key, job_id, created_at) "
                                   "VALUES (:key, :job_id, :now) ON CONFLICT (idempotency_key) DO NOTHING")
    idempotency_key: str = "SELECT job_id FROM idempotency_keys WHERE idempotency_key = :key"
    upsert_worker: str = ("INSERT INTO workers (worker_id, info, started_at, last_seen_at) "
                          "VALUES (:worker_id, :info, :now, :now) ON CONFLICT (worker_id) DO UPDATE "
                          "SET info = excluded.info, last_seen_at = excluded.last_seen_at")
    workers_seen_since: str = "SELECT * FROM workers WHERE last_seen_at >= :since ORDER BY worker_id"
    bump_counter: str = ("INSERT INTO counters (name, value) VALUES (:name, :n) ON CONFLICT (name) DO UPDATE "
                         "SET value = counters.value + excluded.value")
    counters: str = "SELECT name, value FROM counters"

    # metrics and debugging
    jobs_by_type_and_status: str = "SELECT job_type, status, COUNT(*) AS n FROM jobs GROUP BY job_type, status"
    queue_depths: str = ("SELECT target_queue, status, COUNT(*) AS n FROM tasks "
                         "WHERE status IN ('queued', 'processing') GROUP BY target_queue, status")
    retries_by_type: str = ("SELECT task_type, SUM(CASE WHEN attempt > 1 THEN attempt - 1 ELSE 0 END) AS n "
                            "FROM tasks GROUP BY task_type")
    queue_depth_view: str = "SELECT * FROM geomill_queue_depth ORDER BY queue"
    running_by_app: str = ("SELECT executed_by_app AS app, target_queue AS queue, COUNT(*) AS n FROM tasks "
                           "WHERE status = 'processing' GROUP BY executed_by_app, target_queue")
    dead_letter_count: str = "SELECT COUNT(*) AS n FROM dead_letters"
    stuck_jobs: str = (
        "SELECT j.job_id, j.job_type, j.status, j.stage, j.stage_count, j.updated_at FROM jobs j "
        "WHERE j.status IN ('queued', 'processing') AND j.updated_at < :idle_since AND NOT EXISTS ("
        "SELECT 1 FROM tasks t WHERE t.job_id = j.job_id AND t.status = 'processing' AND t.lease_expires_at > :now) "
        "ORDER BY j.updated_at LIMIT 100")


def sqlite_statements(**specific: str) -> Statements:
    """The shared statements as written, with SQLite's own `specific` ones."""
    return Statements(**specific)


def postgres_statements(**specific: str) -> Statements:
    """The shared statements in psycopg's parameter style, with PostgreSQL's own `specific` ones (as written)."""
    common = {f.name: pyformat(f.default) for f in fields(Statements) if isinstance(f.default, str)}
    return Statements(**common, **specific)
