-- What a session is for: 'browser' (a cookie) or 'refresh' (an OAuth refresh token, which is
-- never accepted as a cookie).
ALTER TABLE sessions ADD COLUMN purpose TEXT NOT NULL DEFAULT 'browser';
