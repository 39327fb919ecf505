"""Named SQL statements of the PostgreSQL store. Each state change is guarded by the state it expects.

Times come from the server: ``now()`` is the start of the statement's transaction, so every row a transaction
writes carries the same time. Durations arrive as seconds (``%(lease)s``) and become intervals here.
`STATEMENTS` holds the statements the shared logic runs.
"""

from geomill.store.common_queries import (
    and_error,
    duration_histogram,
    postgres_statements,
    pyformat,
    stages_with_counts,
)

MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7240193100412)"  # any fixed key: 'geomill migrate'

CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
IS_APPLIED = "SELECT 1 FROM schema_migrations WHERE version = %(version)s"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version) VALUES (%(version)s)"

# A status read in ONE statement (parameter: the job id): the job's row, with its stage rows (as
# `STATEMENTS.stages` reads them) as a JSON array `stage_rows`. One round trip, one result, and psycopg prepares the
# statement once it has run a few times. On the 2-CPU bench machine the API process spends about 0.30 ms of CPU on
# it, against 0.6-1.1 ms for the two statements in pipeline mode.
JOB_VIEW = (f"SELECT j.*, (SELECT json_agg(x ORDER BY x.stage) FROM ({stages_with_counts('j.job_id')}) x) "
            "AS stage_rows FROM jobs j WHERE j.job_id = %s")

# Submission in ONE statement (one round trip, atomic): the job, its job_submitted event and the NOTIFY when it is
# new; the existing job when it is not (created = false). A concurrent first insert of the same id that committed
# after this statement's snapshot returns no row at all: the caller reads the job then.
CREATE_JOB = """
WITH inserted AS (
    INSERT INTO jobs (job_id, job_type, params, status, stage, stage_count, resubmit_of,
                      created_at, deadline_at, updated_at, correlation_id)
    VALUES (%(job_id)s, %(job_type)s, %(params)s, 'queued', 0, %(stage_count)s, %(resubmit_of)s,
            now(), now() + make_interval(secs => %(deadline_seconds)s::float8), now(), %(correlation_id)s)
    ON CONFLICT (job_id) DO NOTHING
    RETURNING *
), e AS (
    INSERT INTO events (kind, job_id, stage, created_at, visible_at)
    SELECT 'job_submitted', job_id, 0, now(), now() FROM inserted
    RETURNING event_id
)
SELECT i.*, true AS created, (SELECT count(pg_notify(%(channel)s, '')) FROM e) AS notified FROM inserted i
UNION ALL
SELECT j.*, false, 0 FROM jobs j WHERE j.job_id = %(job_id)s AND NOT EXISTS (SELECT 1 FROM inserted)
"""

# The event and its wake-up commit together: NOTIFY is delivered only when the transaction commits.
INSERT_EVENT = """
WITH e AS (
    INSERT INTO events (kind, job_id, stage, created_at, visible_at)
    VALUES (%(kind)s, %(job_id)s, %(stage)s, now(), now())
    RETURNING event_id
)
SELECT e.event_id, pg_notify(%(channel)s, '') FROM e
"""

NOTIFY_CHANNELS = "SELECT pg_notify(c, '') FROM unnest(%(channels)s::text[]) AS c"

# Compare-and-set: only the handler that sees the job still at the previous stage moves it.
ADVANCE_JOB_STAGE = """
UPDATE jobs SET stage = %(stage)s, status = 'processing', updated_at = now(), advances = advances + 1,
                started_at = COALESCE(started_at, now())
WHERE job_id = %(job_id)s AND stage = %(stage)s - 1 AND status IN ('queued', 'processing')
"""

INSERT_STAGE = """
INSERT INTO stages (job_id, stage, name, total, remaining, failed, failure_policy, created_at, completed_at, sealed)
VALUES (%(job_id)s, %(stage)s, %(name)s, %(total)s, %(total)s + %(token)s, 0, %(policy)s, now(),
        CASE WHEN %(total)s + %(token)s = 0 THEN now() END, %(token)s = 0)
"""

# One more chunk of an unsealed stage, only if nobody else added it (compare-and-set on the inserted count). With
# `seal`, the plan's token is counted down in the same statement; reaching zero (every task already finished)
# emits stage_complete and its NOTIFY, as a completion would.
GROW_STAGE = """
WITH grown AS (
    UPDATE stages SET total = total + %(n)s, remaining = remaining + %(n)s - %(token)s, sealed = %(seal)s,
                      completed_at = CASE WHEN remaining + %(n)s - %(token)s = 0 THEN now() END
    WHERE job_id = %(job_id)s AND stage = %(stage)s AND NOT sealed AND total = %(expected)s
    RETURNING job_id, stage, remaining
), emitted AS (
    INSERT INTO events (kind, job_id, stage, created_at, visible_at)
    SELECT 'stage_complete', job_id, stage, now(), now() FROM grown WHERE remaining = 0
    RETURNING event_id
)
SELECT (SELECT count(*) FROM grown) AS applied,
       (SELECT count(pg_notify(%(jobs_channel)s, '')) FROM emitted) AS notified
"""

# A stage's tasks in one COPY (about 3x faster than row-by-row INSERTs at N = 10,000); the transaction's now()
# and the job's correlation id are read first so every row carries them.
STAGE_CLOCK = "SELECT now() AS now, correlation_id FROM jobs WHERE job_id = %(job_id)s"
COPY_TASKS = """
COPY tasks (task_id, job_id, stage, task_key, task_type, params, status, attempt, max_attempts,
            target_queue, timeout_seconds, created_at, available_at, correlation_id) FROM STDIN
"""

FINISH_JOB = """
UPDATE jobs SET status = %(status)s, result = %(result)s, error = %(error)s, finished_at = now(), updated_at = now(),
                advances = advances + 1
WHERE job_id = %(job_id)s AND stage = %(stage)s AND status = ANY(%(sources)s::text[])
"""

LOCK_JOB = "SELECT 1 FROM jobs WHERE job_id = %(job_id)s FOR UPDATE"

# a task of the stage re-opened (retried) since the orchestrator judged the stage finished
OPEN_STAGE_TASK = """
SELECT 1 FROM tasks WHERE job_id = %(job_id)s AND stage = %(stage)s AND status IN ('queued', 'processing') LIMIT 1
"""

CANCEL_QUEUED_TASKS = """
UPDATE tasks SET status = 'cancelled', finished_at = now() WHERE job_id = %(job_id)s AND status = 'queued'
"""

CANCEL_JOB = """
UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
WHERE job_id = %(job_id)s AND status IN ('queued', 'processing')
"""

# Each queue's oldest available task through the partial index (one short index range per queue), the oldest of
# those wins. SKIP LOCKED: rows another worker is claiming right now are passed over, never waited for.
# Up to :limit due tasks, oldest first, per queue through the partial index, skipping rows others are claiming.
CLAIM_TASKS = """
WITH next AS (
    SELECT t.task_id
    FROM unnest(%(queues)s::text[]) AS q (queue)
    CROSS JOIN LATERAL (
        SELECT task_id, available_at FROM tasks
        WHERE status = 'queued' AND target_queue = q.queue AND available_at <= now()
        ORDER BY available_at LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS t
    ORDER BY t.available_at LIMIT %(limit)s
)
UPDATE tasks SET status = 'processing', attempt = attempt + 1,
                 lease_expires_at = now() + make_interval(secs => %(lease)s::float8),
                 executed_by_app = %(app)s, execution_started_at = now(), progress = NULL, progress_message = NULL,
                 published_at = NULL
FROM next
WHERE tasks.task_id = next.task_id AND tasks.status = 'queued'
RETURNING tasks.*
"""

# Broker dispatch: the tasks messages name, those still queued and due (a duplicate or stale message claims
# nothing). The claim clears published_at: if the task comes back to the queue it is published again.
CLAIM_TASKS_BY_IDS = """
UPDATE tasks SET status = 'processing', attempt = attempt + 1,
                 lease_expires_at = now() + make_interval(secs => %(lease)s::float8),
                 executed_by_app = %(app)s, execution_started_at = now(), progress = NULL, progress_message = NULL,
                 published_at = NULL
WHERE task_id = ANY(%(ids)s::text[]) AND status = 'queued' AND available_at <= now()
RETURNING *
"""

CLAIM_EVENT_BY_ID = """
UPDATE events SET visible_at = now() + make_interval(secs => %(visibility)s::float8),
                  claimed_by = %(consumer)s, deliveries = deliveries + 1, published_at = NULL
WHERE event_id = %(event_id)s AND visible_at <= now()
RETURNING event_id, kind, job_id, stage
"""

# The outbox: due work not sent to the broker yet (or, with a republish age, sent that long ago and still not
# claimed: the message was lost). Stamped in the same statement, rows others are stamping skipped, so concurrent
# publishers split the work instead of sending it twice. A publisher that dies after stamping loses nothing: the
# janitor's republish pass sends the rows again once they are `republish` seconds old.
TAKE_UNPUBLISHED_TASKS = """
WITH due AS (
    SELECT task_id FROM tasks
    WHERE status = 'queued' AND available_at <= now()
      AND (published_at IS NULL OR published_at < now() - make_interval(secs => %(republish)s::float8))
    ORDER BY available_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks SET published_at = now() FROM due
WHERE tasks.task_id = due.task_id
RETURNING tasks.task_id, tasks.job_id, tasks.stage, tasks.target_queue
"""

TAKE_UNPUBLISHED_EVENTS = """
WITH due AS (
    SELECT event_id FROM events
    WHERE visible_at <= now()
      AND (published_at IS NULL OR published_at < now() - make_interval(secs => %(republish)s::float8))
    ORDER BY event_id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE events SET published_at = now() FROM due
WHERE events.event_id = due.event_id
RETURNING events.event_id, events.job_id, events.stage
"""

# A publish that failed: send these again on the next pass (only rows nobody claimed meanwhile).
UNMARK_TASKS = "UPDATE tasks SET published_at = NULL WHERE task_id = ANY(%(ids)s::text[]) AND status = 'queued'"
UNMARK_EVENTS = "UPDATE events SET published_at = NULL WHERE event_id = ANY(%(ids)s::bigint[])"

# Give back a prefetched task this worker will not run (drain): the attempt it took does not count.
# Re-queued with its queue's NOTIFY, so another worker can take it at once.
RELEASE_TASK = """
WITH released AS (
    UPDATE tasks SET status = 'queued', attempt = attempt - 1, lease_expires_at = NULL, executed_by_app = NULL,
                     execution_started_at = NULL, available_at = now()
    WHERE task_id = %(task_id)s AND attempt = %(attempt)s AND status = 'processing'
    RETURNING target_queue
)
SELECT count(*) AS applied, count(pg_notify(%(channel_prefix)s || target_queue, '')) AS notified FROM released
"""

HEARTBEAT = """
UPDATE tasks SET lease_expires_at = now() + make_interval(secs => %(lease)s::float8)
WHERE task_id = %(task_id)s AND attempt = %(attempt)s AND status = 'processing'
"""


# A finished attempt and its stage accounting in ONE statement (one round trip, atomic on its own): the guarded
# update of the task, the O(1) decrement of its stage counter, and - from the decrement that reaches zero - the
# stage_complete event and its NOTIFY. The stages row lock serializes concurrent completions, and PostgreSQL
# re-checks `remaining > 0` on the latest row version, so exactly one completion sees the counter reach zero.
# A task finished without a counter to decrement is a bug: geomill_raise aborts (rolls back) the whole statement.
_COUNT_DOWN = """
, counted AS (
    UPDATE stages s SET remaining = s.remaining - 1, failed = s.failed + {failed},
                        completed_at = CASE WHEN s.remaining = 1 THEN now() ELSE s.completed_at END
    FROM finished f
    WHERE s.job_id = f.job_id AND s.stage = f.stage AND s.remaining > 0
    RETURNING s.job_id, s.stage, s.remaining
), emitted AS (
    INSERT INTO events (kind, job_id, stage, created_at, visible_at)
    SELECT 'stage_complete', job_id, stage, now(), now() FROM counted WHERE remaining = 0
    RETURNING event_id
)
SELECT (SELECT count(*) FROM finished) AS applied,
       (SELECT count(*) FROM emitted) AS stage_done,
       (SELECT count(pg_notify(%(jobs_channel)s, '')) FROM emitted) AS notified,
       CASE WHEN (SELECT count(*) FROM finished) <> (SELECT count(*) FROM counted)
            THEN geomill_raise('stage counter of task ' || %(task_id)s || ' is missing or already zero') END
"""

COMPLETE_TASK = """
WITH finished AS (
    UPDATE tasks SET status = 'completed', result = %(result)s, error = NULL, finished_at = now(),
                     lease_expires_at = NULL, progress = 1.0
    WHERE task_id = %(task_id)s AND attempt = %(attempt)s AND status = 'processing'
    RETURNING job_id, stage
)""" + _COUNT_DOWN.format(failed=0)

# Many finished attempts of one worker in ONE statement: the guarded updates, one decrement per stage by the number of
# its tasks that finished (not one per task), and a stage_complete event (with NOTIFY) for each stage that reached
# zero. `results` is a JSON array aligned with `ids` / `attempts`. The same missing-counter check as _COUNT_DOWN.
COMPLETE_TASKS = """
WITH input AS (
    SELECT i.task_id, i.attempt, (%(results)s::jsonb) -> (i.ord::int - 1) AS result
    FROM unnest(%(ids)s::text[], %(attempts)s::int[]) WITH ORDINALITY AS i(task_id, attempt, ord)
), finished AS (
    UPDATE tasks t SET status = 'completed', result = i.result, error = NULL, finished_at = now(),
                       lease_expires_at = NULL, progress = 1.0
    FROM input i
    WHERE t.task_id = i.task_id AND t.attempt = i.attempt AND t.status = 'processing'
    RETURNING t.task_id, t.job_id, t.stage
), per_stage AS (
    SELECT job_id, stage, count(*)::int AS n FROM finished GROUP BY job_id, stage
), counted AS (
    UPDATE stages s SET remaining = s.remaining - p.n,
                        completed_at = CASE WHEN s.remaining = p.n THEN now() ELSE s.completed_at END
    FROM per_stage p
    WHERE s.job_id = p.job_id AND s.stage = p.stage AND s.remaining >= p.n
    RETURNING s.job_id, s.stage, s.remaining, p.n
), emitted AS (
    INSERT INTO events (kind, job_id, stage, created_at, visible_at)
    SELECT 'stage_complete', job_id, stage, now(), now() FROM counted WHERE remaining = 0
    RETURNING job_id, stage
)
SELECT (SELECT coalesce(array_agg(task_id), '{}') FROM finished) AS applied,
       (SELECT coalesce(array_agg(f.task_id), '{}') FROM emitted e
          JOIN LATERAL (SELECT task_id FROM finished WHERE job_id = e.job_id AND stage = e.stage LIMIT 1) f ON true
       ) AS emitters,
       (SELECT count(pg_notify(%(jobs_channel)s, '')) FROM emitted) AS notified,
       CASE WHEN (SELECT count(*) FROM finished) <> (SELECT coalesce(sum(n), 0) FROM counted)
            THEN geomill_raise('a stage counter of tasks ' || array_to_string(%(ids)s::text[], ', ')
                               || ' is missing or below its finished tasks') END
"""

FAIL_TASK = """
WITH finished AS (
    UPDATE tasks SET status = 'failed', error = %(error)s, finished_at = now(), lease_expires_at = NULL
    WHERE task_id = %(task_id)s AND attempt = %(attempt)s AND status = 'processing'
    RETURNING job_id, stage
)""" + _COUNT_DOWN.format(failed=1)

# A retry is not a finish: the stage is not counted down; the task's queue is woken (it may wait out a backoff).
RETRY_TASK = """
WITH requeued AS (
    UPDATE tasks SET status = 'queued', error = %(error)s, lease_expires_at = NULL,
                     available_at = now() + make_interval(secs => %(delay)s::float8)
    WHERE task_id = %(task_id)s AND attempt = %(attempt)s AND status = 'processing'
    RETURNING target_queue
)
SELECT count(*) AS applied, count(pg_notify(%(channel_prefix)s || target_queue, '')) AS notified FROM requeued
"""

CLAIM_EVENT = """
WITH next AS (
    SELECT event_id FROM events WHERE visible_at <= now()
    ORDER BY event_id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE events SET visible_at = now() + make_interval(secs => %(visibility)s::float8),
                  claimed_by = %(consumer)s, deliveries = deliveries + 1, published_at = NULL
FROM next
WHERE events.event_id = next.event_id
RETURNING events.event_id, events.kind, events.job_id, events.stage
"""



# Stages at zero (or submitted jobs) whose job did not move and that have no pending event: signal them again.
RESIGNAL_STALLED = """
INSERT INTO events (kind, job_id, stage, created_at, visible_at)
SELECT CASE WHEN stalled.stage = 0 THEN 'job_submitted' ELSE 'stage_complete' END,
       stalled.job_id, stalled.stage, now(), now()
FROM (
    SELECT s.job_id, s.stage FROM stages s JOIN jobs j ON j.job_id = s.job_id AND j.stage = s.stage
    WHERE s.remaining = 0 AND s.completed_at < now() - make_interval(secs => %(grace)s::float8)
      AND j.status IN ('queued', 'processing')
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = s.job_id AND e.stage = s.stage)
    UNION ALL
    SELECT j.job_id, 0 FROM jobs j
    WHERE j.stage = 0 AND j.status = 'queued' AND j.created_at < now() - make_interval(secs => %(grace)s::float8)
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = j.job_id AND e.stage = 0)
) AS stalled
RETURNING job_id, stage
"""



CANCEL_RUNNING_TASK = """
UPDATE tasks SET status = 'cancelled', finished_at = now(), lease_expires_at = NULL
WHERE task_id = %(task_id)s AND attempt = %(attempt)s AND status = 'processing'
"""

# Manual retry. The job row is locked first so that a concurrent stage compare-and-set either happened before
# (and the guard below sees the job moved on) or waits for the re-opened stage.
LOCK_JOB_OF_TASK = """
SELECT j.job_id FROM jobs j JOIN tasks t ON t.job_id = j.job_id WHERE t.task_id = %(task_id)s FOR UPDATE OF j
"""

# One more attempt for a failed task. Its stage counts it again, and a job that this stage failed is re-opened
# (processing, error cleared) - only while the job has not moved past that stage.
REOPEN_FAILED_TASK = """
UPDATE tasks SET status = 'queued', max_attempts = max_attempts + 1, available_at = now(), finished_at = NULL
WHERE task_id = %(task_id)s AND status = 'failed'
  AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = tasks.job_id AND j.stage = tasks.stage
              AND j.status IN ('processing', 'failed'))
RETURNING job_id, stage, target_queue
"""

REOPEN_STAGE = """
UPDATE stages SET remaining = remaining + 1, failed = failed - 1, completed_at = NULL
WHERE job_id = %(job_id)s AND stage = %(stage)s AND failed > 0
"""

REOPEN_JOB = """
UPDATE jobs SET status = 'processing', error = NULL, finished_at = NULL, updated_at = now()
WHERE job_id = %(job_id)s AND stage = %(stage)s AND status = 'failed'
"""

DROP_STAGE_EVENTS = "DELETE FROM events WHERE job_id = %(job_id)s AND stage = %(stage)s"

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (source, reason, payload, job_id, task_id, created_at)
VALUES (%(source)s, %(reason)s, %(payload)s, %(job_id)s, %(task_id)s, now())
"""

ACQUIRE_LEADERSHIP = """
INSERT INTO leader_leases (name, holder, expires_at)
VALUES (%(name)s, %(holder)s, now() + make_interval(secs => %(seconds)s::float8))
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < now()
"""

CHANNEL_PREFIX = "geomill_"


def channel_for(queue: str) -> str:
    """The LISTEN/NOTIFY channel of a queue (the jobs queue included): ``geomill_raster-tasks``."""
    return CHANNEL_PREFIX + queue


EXPIRED_LEASES = """
SELECT task_id, job_id, task_type, attempt, max_attempts FROM tasks
WHERE status = 'processing' AND lease_expires_at < now() LIMIT %(limit)s
"""

OVERDUE_JOBS = """
SELECT job_id, stage FROM jobs
WHERE deadline_at IS NOT NULL AND deadline_at < now() AND status IN ('queued', 'processing')
"""

STATEMENTS = postgres_statements(
    task_durations=duration_histogram("extract(epoch FROM finished_at - execution_started_at)"),
    expired_leases=EXPIRED_LEASES, overdue_jobs=OVERDUE_JOBS, heartbeat=HEARTBEAT,
    cancel_running_task=CANCEL_RUNNING_TASK, acquire_leadership=ACQUIRE_LEADERSHIP,
    and_error=pyformat(and_error(("(jobs.error->>'message')", "(jobs.error->>'type')"),
                                 ("(t.error->>'message')", "(t.error->>'type')"), " OFFSET 0")),
)
