-- What sync_container processed: per sync scope (a collection and a source with its filters and options) and object
-- key (relative to the source), the version processed (the object's etag; size and mtime for a local file) and
-- what it became (the STAC item, the COG geomill wrote when it was not one already). A sync diffs a container's
-- listing against these rows by key range, so `key` compares byte-wise (COLLATE "C"), as object stores list keys.
CREATE TABLE container_objects (
    scope      text NOT NULL,
    key        text COLLATE "C" NOT NULL,
    uri        text NOT NULL,
    version    text NOT NULL,
    item_id    text,
    cog_uri    text,
    job_id     text,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
