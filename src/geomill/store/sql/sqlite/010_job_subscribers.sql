-- Callback subscribers of jobs (OGC API - Processes `subscriber`: successUri, failedUri, inProgressUri). The HTTP
-- process that holds the `job-callbacks` leadership delivers them: `notified` is the last state it delivered
-- ('' nothing yet), `attempts` the failed tries of the current delivery, `next_at` when to look again;
-- `closed_at` is set once the final notification went out (or was given up).
CREATE TABLE job_subscribers (
    subscriber_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id          TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    success_uri     TEXT,
    failed_uri      TEXT,
    in_progress_uri TEXT,
    notified        TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         REAL NOT NULL,
    created_at      REAL NOT NULL,
    closed_at       REAL
);
CREATE INDEX job_subscribers_due ON job_subscribers (next_at) WHERE closed_at IS NULL;
