-- Compute contracts (issue 23): the result of each solve job (its id is the inputs hash) and the files it wrote.
CREATE TABLE compute_results (
    job_id          TEXT PRIMARY KEY REFERENCES jobs (job_id),
    app_id          TEXT,
    definition      TEXT NOT NULL,
    version         TEXT NOT NULL,
    contract_sha256 TEXT NOT NULL,
    engine          TEXT NOT NULL,
    outputs         TEXT NOT NULL,
    created_at      REAL NOT NULL
);

CREATE TABLE compute_artifacts (
    job_id      TEXT NOT NULL REFERENCES compute_results (job_id),
    name        TEXT NOT NULL,
    uri         TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);
