-- What sync_container processed: per sync scope (a collection and a source with its filters and options) and object
-- key (relative to the source), the version processed (the object's etag; size and mtime for a local file) and
-- what it became (the STAC item, the COG geomill wrote when it was not one already). A sync diffs a container's
-- listing against these rows by key range, so `key` compares byte-wise (SQLite's BINARY collation).
CREATE TABLE container_objects (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    uri        TEXT NOT NULL,
    version    TEXT NOT NULL,
    item_id    TEXT,
    cog_uri    TEXT,
    job_id     TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
