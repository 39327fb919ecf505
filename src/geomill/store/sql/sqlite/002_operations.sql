-- Dead letters and leader leases (one janitor at a time, whatever the number of processes).
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    job_id      TEXT,
    task_id     TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX dead_letters_created ON dead_letters (created_at);

CREATE TABLE leader_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  REAL NOT NULL
);
