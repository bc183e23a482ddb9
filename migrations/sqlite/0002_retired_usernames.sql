-- Usernames of deleted accounts (lower case). They are never given out again: object keys may be
-- built from the username, and a new account must not inherit a deleted one's objects.
CREATE TABLE retired_usernames (
    username TEXT PRIMARY KEY,
    retired_at INTEGER NOT NULL
);
