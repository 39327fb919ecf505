-- Dead letters and leader leases (one janitor at a time, whatever the number of processes).
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    reason      text NOT NULL,
    payload     jsonb NOT NULL,
    job_id      text,
    task_id     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_created ON dead_letters (created_at);

CREATE TABLE leader_leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL
);
