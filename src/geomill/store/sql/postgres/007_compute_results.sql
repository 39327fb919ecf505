-- Compute contracts (issue 23): the result of each solve job (its id is the inputs hash) and the files it wrote.
CREATE TABLE compute_results (
    job_id          TEXT PRIMARY KEY REFERENCES jobs (job_id),
    app_id          TEXT,
    definition      TEXT NOT NULL,
    version         TEXT NOT NULL,
    contract_sha256 TEXT NOT NULL,
    engine          JSONB NOT NULL,
    outputs         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE compute_artifacts (
    job_id      TEXT NOT NULL REFERENCES compute_results (job_id),
    name        TEXT NOT NULL,
    uri         TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, name)
);
