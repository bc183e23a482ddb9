-- Login limits shared by every instance on this database: failure counters per user and per
-- address, attempts per address, and blocked addresses. Each counter's window starts at its
-- first event, as the in-memory counters of a single instance do.
CREATE TABLE limit_counters (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    hits BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX limit_counters_started ON limit_counters (started_at);

CREATE TABLE limit_blocks (
    key TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);
