-- The HTTP service: correlation ids, API keys, idempotency keys, live workers, repair counters.
ALTER TABLE jobs ADD COLUMN correlation_id text;
ALTER TABLE tasks ADD COLUMN correlation_id text;

CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    name          text NOT NULL,
    key_hash      text NOT NULL UNIQUE,
    scopes        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE idempotency_keys (
    idempotency_key text PRIMARY KEY,
    job_id          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workers (
    worker_id     text PRIMARY KEY,
    info          jsonb NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE counters (
    name   text PRIMARY KEY,
    value  bigint NOT NULL
);
