//! Server-side sessions, stored by the SHA-256 of the cookie value (the value itself is never stored).

use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    pub epoch: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `browser` (the session cookie) or `refresh` (an OAuth refresh token).
    pub purpose: String,
}

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: row.try_get("id_hash")?,
        user_id: row.try_get("user_id")?,
        epoch: row.try_get("epoch")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        purpose: row.try_get("purpose")?,
    })
}

impl Store {
    pub async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, epoch, created_at, last_seen_at, idle_expires_at, \
             absolute_expires_at, ip, user_agent, purpose) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(s.epoch)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.idle_expires_at)
        .bind(s.absolute_expires_at)
        .bind(s.ip.as_deref())
        .bind(s.user_agent.as_deref())
        .bind(&s.purpose)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::from_write(e, "session"))?;
        Ok(())
    }

    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, user_id, epoch, created_at, last_seen_at, idle_expires_at, \
             absolute_expires_at, ip, user_agent, purpose FROM sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// A user's sessions, newest first.
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id_hash, user_id, epoch, created_at, last_seen_at, idle_expires_at, \
             absolute_expires_at, ip, user_agent, purpose FROM sessions WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Ends one session of a user, named by the start of its stored hash (never the cookie value).
    pub async fn delete_user_session(
        &self,
        user_id: &str,
        handle: &str,
    ) -> Result<bool, StoreError> {
        if handle.len() < 16 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash LIKE $2")
            .bind(user_id)
            .bind(format!("{}%", handle.to_ascii_lowercase()))
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_session(
        &self,
        id_hash: &str,
        last_seen: i64,
        idle_expires: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE id_hash = $3",
        )
        .bind(last_seen)
        .bind(idle_expires)
        .bind(id_hash)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn count_active_sessions(&self, now: i64) -> Result<i64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE idle_expires_at > $1 AND absolute_expires_at > $1",
        )
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(count)
    }

    pub async fn delete_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE idle_expires_at <= $1 OR absolute_expires_at <= $1",
        )
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
