"""Named SQL statements of the SQLite store. Each state change is guarded by the state it expects.

Times are epoch seconds passed in as ``:now``. `STATEMENTS` holds the statements the shared logic runs.
"""

from geomill.store.common_queries import and_error, duration_histogram, sqlite_statements

# connection set-up
JOURNAL_MODE = "PRAGMA journal_mode"
WAL = "PRAGMA journal_mode=WAL"
SYNCHRONOUS = "PRAGMA synchronous={level}"  # a setting, not a parameter: checked by Settings
FOREIGN_KEYS = "PRAGMA foreign_keys=ON"

# transactions: the write lock up front, so a reader never has to upgrade (no upgrade deadlocks)
BEGIN_WRITE = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

# migrations: each under the write lock (BEGIN IMMEDIATE), so the "already applied" check is final
CREATE_MIGRATIONS = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
APPLIED_VERSIONS = "SELECT version FROM schema_migrations"
IS_APPLIED = "SELECT 1 FROM schema_migrations WHERE version = :version"
RECORD_MIGRATION = "INSERT INTO schema_migrations VALUES (:version, :now)"

INSERT_JOB = """
INSERT INTO jobs (job_id, job_type, params, status, stage, stage_count, resubmit_of,
                  created_at, deadline_at, updated_at, correlation_id)
VALUES (:job_id, :job_type, :params, 'queued', 0, :stage_count, :resubmit_of, :now, :deadline_at, :now,
        :correlation_id)
ON CONFLICT (job_id) DO NOTHING
"""

INSERT_EVENT = """
INSERT INTO events (kind, job_id, stage, created_at, visible_at) VALUES (:kind, :job_id, :stage, :now, :now)
"""

# Compare-and-set: only the handler that sees the job still at the previous stage moves it.
ADVANCE_JOB_STAGE = """
UPDATE jobs SET stage = :stage, status = 'processing', updated_at = :now, advances = advances + 1, started_at = COALESCE(started_at, :now)
WHERE job_id = :job_id AND stage = :stage - 1 AND status IN ('queued', 'processing')
"""

INSERT_STAGE = """
INSERT INTO stages (job_id, stage, name, total, remaining, failed, failure_policy, created_at, completed_at, sealed)
VALUES (:job_id, :stage, :name, :total, :total + :token, 0, :policy, :now,
        CASE WHEN :total + :token = 0 THEN :now END, :token = 0)
"""

# one more chunk of an unsealed stage, only if nobody else added it (compare-and-set on the inserted count)
GROW_STAGE = """
UPDATE stages SET total = total + :n, remaining = remaining + :n, sealed = :seal
WHERE job_id = :job_id AND stage = :stage AND NOT sealed AND total = :expected
"""

INSERT_TASK = """
INSERT INTO tasks (task_id, job_id, stage, task_key, task_type, params, status, attempt, max_attempts,
                   target_queue, timeout_seconds, created_at, available_at, correlation_id)
VALUES (:task_id, :job_id, :stage, :task_key, :task_type, :params, 'queued', 0, :max_attempts,
        :target_queue, :timeout_seconds, :now, :now, (SELECT correlation_id FROM jobs WHERE job_id = :job_id))
"""

FINISH_JOB = """
UPDATE jobs SET status = :status, result = :result, error = :error, finished_at = :now, updated_at = :now,
                advances = advances + 1
WHERE job_id = :job_id AND stage = :stage AND status IN ({sources})
"""

# a task of the stage re-opened (retried) since the orchestrator judged the stage finished
OPEN_STAGE_TASK = """
SELECT 1 FROM tasks WHERE job_id = :job_id AND stage = :stage AND status IN ('queued', 'processing') LIMIT 1
"""

CANCEL_QUEUED_TASKS = """
UPDATE tasks SET status = 'cancelled', finished_at = :now WHERE job_id = :job_id AND status = 'queued'
"""

CANCEL_JOB = """
UPDATE jobs SET status = 'cancelled', finished_at = :now, updated_at = :now
WHERE job_id = :job_id AND status IN ('queued', 'processing')
"""

PEEK_CLAIMABLE = """
SELECT task_id FROM tasks
WHERE status = 'queued' AND target_queue IN ({queues}) AND available_at <= :now
ORDER BY available_at LIMIT {limit}
"""

CLAIM_TASK = """
UPDATE tasks SET status = 'processing', attempt = attempt + 1, lease_expires_at = :now + :lease,
                 executed_by_app = :app, execution_started_at = :now, progress = NULL, progress_message = NULL,
                 published_at = NULL
WHERE task_id = :task_id AND status = 'queued'
RETURNING *
"""

# Broker dispatch: the task a message names, if still queued and due; clears published_at (see 004_outbox.sql).
CLAIM_TASK_BY_ID = """
UPDATE tasks SET status = 'processing', attempt = attempt + 1, lease_expires_at = :now + :lease,
                 executed_by_app = :app, execution_started_at = :now, progress = NULL, progress_message = NULL,
                 published_at = NULL
WHERE task_id = :task_id AND status = 'queued' AND available_at <= :now
RETURNING *
"""

CLAIM_EVENT_BY_ID = """
UPDATE events SET visible_at = :now + :visibility, claimed_by = :consumer, deliveries = deliveries + 1,
                  published_at = NULL
WHERE event_id = :event_id AND visible_at <= :now
RETURNING event_id, kind, job_id, stage
"""

# The outbox (one writer at a time in SQLite, so select-then-stamp inside one transaction is enough).
UNPUBLISHED_TASKS = """
SELECT task_id, job_id, stage, target_queue FROM tasks
WHERE status = 'queued' AND available_at <= :now AND (published_at IS NULL OR published_at < :now - :republish)
ORDER BY available_at LIMIT :limit
"""

UNPUBLISHED_EVENTS = """
SELECT event_id, job_id, stage FROM events
WHERE visible_at <= :now AND (published_at IS NULL OR published_at < :now - :republish)
ORDER BY event_id LIMIT :limit
"""

STAMP_TASK = "UPDATE tasks SET published_at = :now WHERE task_id = :id"
STAMP_EVENT = "UPDATE events SET published_at = :now WHERE event_id = :id"
UNMARK_TASK = "UPDATE tasks SET published_at = NULL WHERE task_id = :id AND status = 'queued'"
UNMARK_EVENT = "UPDATE events SET published_at = NULL WHERE event_id = :id"

HEARTBEAT = """
UPDATE tasks SET lease_expires_at = :now + :lease
WHERE task_id = :task_id AND attempt = :attempt AND status = 'processing'
"""


COMPLETE_TASK = """
UPDATE tasks SET status = 'completed', result = :result, error = NULL, finished_at = :now,
                 lease_expires_at = NULL, progress = 1.0
WHERE task_id = :task_id AND attempt = :attempt AND status = 'processing'
RETURNING job_id, stage
"""

RETRY_TASK = """
UPDATE tasks SET status = 'queued', error = :error, available_at = :now + :delay, lease_expires_at = NULL
WHERE task_id = :task_id AND attempt = :attempt AND status = 'processing'
RETURNING job_id, stage
"""

FAIL_TASK = """
UPDATE tasks SET status = 'failed', error = :error, finished_at = :now, lease_expires_at = NULL
WHERE task_id = :task_id AND attempt = :attempt AND status = 'processing'
RETURNING job_id, stage
"""

# O(1) stage accounting: one counter row per stage, decremented by the completion's own transaction.
COUNT_DOWN_STAGE = """
UPDATE stages SET remaining = remaining - 1, failed = failed + :failed,
                  completed_at = CASE WHEN remaining = 1 THEN :now ELSE completed_at END
WHERE job_id = :job_id AND stage = :stage AND remaining > 0
RETURNING remaining
"""

# a cheap read first: an idle poll does not take the write lock
ANY_VISIBLE_EVENT = "SELECT 1 FROM events WHERE visible_at <= :now LIMIT 1"

CLAIM_EVENT = """
UPDATE events SET visible_at = :now + :visibility, claimed_by = :consumer, deliveries = deliveries + 1,
                  published_at = NULL
WHERE event_id = (SELECT event_id FROM events WHERE visible_at <= :now ORDER BY event_id LIMIT 1)
RETURNING event_id, kind, job_id, stage
"""


STALLED_STAGES = """
SELECT s.job_id, s.stage FROM stages s JOIN jobs j ON j.job_id = s.job_id AND j.stage = s.stage
WHERE s.remaining = 0 AND s.completed_at < :before AND j.status IN ('queued', 'processing')
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = s.job_id AND e.stage = s.stage)
UNION ALL
SELECT j.job_id, 0 FROM jobs j
WHERE j.stage = 0 AND j.status = 'queued' AND j.created_at < :before
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = j.job_id AND e.stage = 0)
"""



CANCEL_RUNNING_TASK = """
UPDATE tasks SET status = 'cancelled', finished_at = :now, lease_expires_at = NULL
WHERE task_id = :task_id AND attempt = :attempt AND status = 'processing'
"""

# Manual retry: one more attempt for a failed task. Its stage counts it again, and a job that this stage failed
# is re-opened (processing, error cleared) - only while the job has not moved past that stage.
REOPEN_FAILED_TASK = """
UPDATE tasks SET status = 'queued', max_attempts = max_attempts + 1, available_at = :now, finished_at = NULL
WHERE task_id = :task_id AND status = 'failed'
  AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = tasks.job_id AND j.stage = tasks.stage
              AND j.status IN ('processing', 'failed'))
RETURNING job_id, stage
"""

REOPEN_STAGE = """
UPDATE stages SET remaining = remaining + 1, failed = failed - 1, completed_at = NULL
WHERE job_id = :job_id AND stage = :stage AND failed > 0
"""

REOPEN_JOB = """
UPDATE jobs SET status = 'processing', error = NULL, finished_at = NULL, updated_at = :now
WHERE job_id = :job_id AND stage = :stage AND status = 'failed'
"""

DROP_STAGE_EVENTS = "DELETE FROM events WHERE job_id = :job_id AND stage = :stage"

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (source, reason, payload, job_id, task_id, created_at)
VALUES (:source, :reason, :payload, :job_id, :task_id, :now)
"""

ACQUIRE_LEADERSHIP = """
INSERT INTO leader_leases (name, holder, expires_at) VALUES (:name, :holder, :now + :seconds)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < :now
"""

# Give back a prefetched task this worker will not run (drain): the attempt it took does not count.
RELEASE_TASK = """
UPDATE tasks SET status = 'queued', attempt = attempt - 1, lease_expires_at = NULL, executed_by_app = NULL,
                 execution_started_at = NULL, available_at = :now
WHERE task_id = :task_id AND attempt = :attempt AND status = 'processing'
"""


EXPIRED_LEASES = """
SELECT task_id, job_id, task_type, attempt, max_attempts FROM tasks
WHERE status = 'processing' AND lease_expires_at < :now LIMIT :limit
"""

OVERDUE_JOBS = """
SELECT job_id, stage FROM jobs
WHERE deadline_at IS NOT NULL AND deadline_at < :now AND status IN ('queued', 'processing')
"""

STATEMENTS = sqlite_statements(
    task_durations=duration_histogram("(finished_at - execution_started_at)"), expired_leases=EXPIRED_LEASES,
    overdue_jobs=OVERDUE_JOBS, heartbeat=HEARTBEAT, cancel_running_task=CANCEL_RUNNING_TASK,
    acquire_leadership=ACQUIRE_LEADERSHIP,
    and_error=and_error(("json_extract(jobs.error, '$.message')", "json_extract(jobs.error, '$.type')"),
                        ("json_extract(t.error, '$.message')", "json_extract(t.error, '$.type')")),
)
