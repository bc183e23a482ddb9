//! The index of transformed images shared through a store (`images::shared`).

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Records (or refreshes) a shared variant.
    pub async fn record_variant(
        &self,
        store: &str,
        key: &str,
        size: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO shared_variants (store, object_key, size, last_used) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (store, object_key) DO UPDATE SET size = $3, last_used = $4",
        )
        .bind(store)
        .bind(key)
        .bind(size)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn touch_variant(&self, store: &str, key: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE shared_variants SET last_used = $3 WHERE store = $1 AND object_key = $2",
        )
        .bind(store)
        .bind(key)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The bytes the shared variants of `store` take.
    pub async fn variants_size(&self, store: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM shared_variants WHERE store = $1",
        )
        .bind(store)
        .fetch_one(self.pool())
        .await?)
    }

    /// The least recently used variants of `store`: (key, size).
    pub async fn oldest_variants(
        &self,
        store: &str,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT object_key, size FROM shared_variants WHERE store = $1 \
             ORDER BY last_used, object_key LIMIT $2",
        )
        .bind(store)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("object_key")?, r.try_get("size")?)))
            .collect()
    }

    pub async fn forget_shared_variant(&self, store: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM shared_variants WHERE store = $1 AND object_key = $2")
            .bind(store)
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
