-- geomill schema, PostgreSQL. Times are timestamptz set by the server (now()); JSON columns are jsonb.

-- Lets a single statement abort itself (and so roll back) when it finds the database in a state that is a bug.
CREATE FUNCTION geomill_raise(message text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', message USING ERRCODE = 'data_exception';
END
$$;
CREATE TABLE jobs (
    job_id        text PRIMARY KEY,
    job_type      text NOT NULL,
    params        jsonb NOT NULL,
    status        text NOT NULL,
    stage         integer NOT NULL DEFAULT 0,
    stage_count   integer NOT NULL,
    advances      integer NOT NULL DEFAULT 0,  -- successful compare-and-sets: stage_count + 1 when finished
    result        jsonb,
    error         jsonb,
    resubmit_of   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    deadline_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_status ON jobs (status, created_at);
CREATE INDEX jobs_deadline ON jobs (deadline_at) WHERE deadline_at IS NOT NULL AND status IN ('queued', 'processing');

CREATE TABLE stages (
    job_id         text NOT NULL REFERENCES jobs (job_id),
    stage          integer NOT NULL,
    name           text NOT NULL,
    total          integer NOT NULL,
    remaining      integer NOT NULL CHECK (remaining >= 0),
    failed         integer NOT NULL DEFAULT 0,
    failure_policy text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    PRIMARY KEY (job_id, stage)
);
-- the janitor's look for stages at zero whose job did not move
CREATE INDEX stages_done ON stages (completed_at) WHERE remaining = 0;

CREATE TABLE tasks (
    task_id              text PRIMARY KEY,
    job_id               text NOT NULL REFERENCES jobs (job_id),
    stage                integer NOT NULL,
    task_key             text NOT NULL,
    task_type            text NOT NULL,
    params               jsonb NOT NULL,
    status               text NOT NULL,
    attempt              integer NOT NULL DEFAULT 0,
    max_attempts         integer NOT NULL,
    target_queue         text NOT NULL,
    timeout_seconds      double precision NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    available_at         timestamptz NOT NULL DEFAULT now(),
    lease_expires_at     timestamptz,
    executed_by_app      text,
    execution_started_at timestamptz,
    finished_at          timestamptz,
    result               jsonb,
    error                jsonb,
    progress             double precision,
    progress_message     text,
    UNIQUE (job_id, stage, task_key)
);
-- Claimable tasks only: claiming walks one queue's oldest available rows (FOR UPDATE SKIP LOCKED).
CREATE INDEX tasks_claim ON tasks (target_queue, available_at) WHERE status = 'queued';
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status = 'processing';
CREATE INDEX tasks_job_stage ON tasks (job_id, stage, status);

-- The jobs queue when the database is the queue: orchestration events, deleted once handled.
CREATE TABLE events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    job_id      text NOT NULL,
    stage       integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    visible_at  timestamptz NOT NULL DEFAULT now(),
    claimed_by  text,
    deliveries  integer NOT NULL DEFAULT 0
);
CREATE INDEX events_visible ON events (visible_at);
CREATE INDEX events_job ON events (job_id, stage);
