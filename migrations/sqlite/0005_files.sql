-- Uploaded files: one record per stored object (and its kept original, if any). A record is
-- written only once its object is complete; 'deleting' marks one whose object could not be
-- removed yet (a retry or a sync finishes it).
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    route TEXT NOT NULL,
    store TEXT NOT NULL,
    object_key TEXT NOT NULL,
    original_key TEXT,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT,
    etag TEXT,
    width BIGINT,
    height BIGINT,
    acl TEXT NOT NULL,
    folder TEXT,
    alt TEXT,
    entity_type TEXT,
    entity_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('ready', 'deleting')),
    created_at BIGINT NOT NULL,
    UNIQUE (store, object_key)
);
CREATE INDEX files_owner ON files (owner_id, route, created_at);
CREATE INDEX files_entity ON files (entity_type, entity_id);

-- Objects being written: claimed before the first byte goes to the store and released once
-- the record is written or the object removed. What a crash leaves here, the sweep cleans up
-- (aborting the S3 multipart upload, or removing an object that never got its record).
CREATE TABLE pending_uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    object_key TEXT NOT NULL,
    upload_id TEXT,
    started_at BIGINT NOT NULL,
    UNIQUE (store, object_key)
);
