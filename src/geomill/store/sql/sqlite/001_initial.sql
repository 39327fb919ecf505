-- geomill schema, SQLite. Times are UNIX epoch seconds (REAL). JSON columns are TEXT.
CREATE TABLE jobs (
    job_id        TEXT PRIMARY KEY,
    job_type      TEXT NOT NULL,
    params        TEXT NOT NULL,
    status        TEXT NOT NULL,
    stage         INTEGER NOT NULL DEFAULT 0,
    stage_count   INTEGER NOT NULL,
    advances      INTEGER NOT NULL DEFAULT 0,  -- successful compare-and-sets: stage_count + 1 when finished
    result        TEXT,
    error         TEXT,
    resubmit_of   TEXT,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    deadline_at   REAL,
    updated_at    REAL NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_status ON jobs (status, created_at);

CREATE TABLE stages (
    job_id         TEXT NOT NULL REFERENCES jobs (job_id),
    stage          INTEGER NOT NULL,
    name           TEXT NOT NULL,
    total          INTEGER NOT NULL,
    remaining      INTEGER NOT NULL CHECK (remaining >= 0),
    failed         INTEGER NOT NULL DEFAULT 0,
    failure_policy TEXT NOT NULL,
    created_at     REAL NOT NULL,
    completed_at   REAL,
    PRIMARY KEY (job_id, stage)
);

CREATE TABLE tasks (
    task_id              TEXT PRIMARY KEY,
    job_id               TEXT NOT NULL REFERENCES jobs (job_id),
    stage                INTEGER NOT NULL,
    task_key             TEXT NOT NULL,
    task_type            TEXT NOT NULL,
    params               TEXT NOT NULL,
    status               TEXT NOT NULL,
    attempt              INTEGER NOT NULL DEFAULT 0,
    max_attempts         INTEGER NOT NULL,
    target_queue         TEXT NOT NULL,
    timeout_seconds      REAL NOT NULL,
    created_at           REAL NOT NULL,
    available_at         REAL NOT NULL,
    lease_expires_at     REAL,
    executed_by_app      TEXT,
    execution_started_at REAL,
    finished_at          REAL,
    result               TEXT,
    error                TEXT,
    progress             REAL,
    progress_message     TEXT,
    UNIQUE (job_id, stage, task_key)
);
CREATE INDEX tasks_claim ON tasks (target_queue, available_at) WHERE status = 'queued';
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status = 'processing';
CREATE INDEX tasks_job_stage ON tasks (job_id, stage, status);

-- The jobs queue when the database is the queue: orchestration events, deleted once handled.
CREATE TABLE events (
    event_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    stage       INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    visible_at  REAL NOT NULL,
    claimed_by  TEXT,
    deliveries  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_visible ON events (visible_at);
CREATE INDEX events_job ON events (job_id, stage);
