//! Login limits shared by instances on one PostgreSQL database (`auth::Lockout` decides what
//! they mean).

use super::{Store, StoreError};

impl Store {
    /// Counts one more event for `key` in `scope`; the count within the window that began
    /// with the first event less than `window` seconds ago (or a new window now).
    pub async fn count_in_window(
        &self,
        scope: &str,
        key: &str,
        now: i64,
        window: i64,
    ) -> Result<(i64, i64), StoreError> {
        let row: (i64, i64) = sqlx::query_as(
            "INSERT INTO limit_counters (scope, key, hits, started_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (scope, key) DO UPDATE SET \
               hits = CASE WHEN $3 - limit_counters.started_at < $4 THEN limit_counters.hits + 1 ELSE 1 END, \
               started_at = CASE WHEN $3 - limit_counters.started_at < $4 THEN limit_counters.started_at ELSE $3 END \
             RETURNING hits, started_at",
        )
        .bind(scope)
        .bind(key)
        .bind(now)
        .bind(window)
        .fetch_one(self.pool())
        .await?;
        Ok(row)
    }

    pub async fn clear_count(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM limit_counters WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Blocks `key` until `until` (a later block wins).
    pub async fn block(&self, key: &str, until: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO limit_blocks (key, until) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET until = GREATEST(limit_blocks.until, $2)",
        )
        .bind(key)
        .bind(until)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn blocked_until(&self, key: &str, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT until FROM limit_blocks WHERE key = $1 AND until > $2")
                .bind(key)
                .bind(now)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Removes counters whose window has passed — a minute for the rate limit,
    /// `failure_window` seconds for failure counts — and blocks that have ended (PostgreSQL
    /// only).
    pub async fn prune_limits(&self, now: i64, failure_window: i64) -> Result<(), StoreError> {
        if self.backend() != super::Backend::Postgres {
            return Ok(());
        }
        sqlx::query(
            "DELETE FROM limit_counters WHERE (scope = 'rate' AND started_at < $1) OR started_at < $2",
        )
        .bind(now - 60)
        .bind(now - failure_window)
        .execute(self.pool())
        .await?;
        sqlx::query("DELETE FROM limit_blocks WHERE until <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
