-- The HTTP service: correlation ids, API keys, idempotency keys, live workers, repair counters.
ALTER TABLE jobs ADD COLUMN correlation_id TEXT;
ALTER TABLE tasks ADD COLUMN correlation_id TEXT;

CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    scopes        TEXT NOT NULL,
    created_at    REAL NOT NULL,
    revoked_at    REAL
);

CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL,
    created_at      REAL NOT NULL
);

CREATE TABLE workers (
    worker_id     TEXT PRIMARY KEY,
    info          TEXT NOT NULL,
    started_at    REAL NOT NULL,
    last_seen_at  REAL NOT NULL
);

CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
