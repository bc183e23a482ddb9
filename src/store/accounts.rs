//! Account tokens (stored as their SHA-256, single use) and password history.

use sqlx::Row;

use super::{Store, StoreError};

/// A stored account token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub user_id: String,
    pub purpose: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A new password for a user, with what comes with it.
#[derive(Debug, Clone)]
pub struct PasswordChange<'a> {
    pub user_id: &'a str,
    pub hash: &'a str,
    /// How many hashes to keep in the history (the new one included); 0 keeps none.
    pub keep_history: usize,
    /// The user proved they own the mailbox: an `unverified` account becomes `enabled`.
    pub verifies: bool,
}

impl Store {
    /// Stores a new token and, in the same transaction, ends the user's unused tokens of the
    /// same purpose: of two links sent at once, only the newer works.
    pub async fn replace_account_token(
        &self,
        token_hash: &str,
        user_id: &str,
        purpose: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE account_tokens SET used_at = $1 \
             WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(purpose)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, user_id, purpose, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(purpose)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn account_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountToken>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, purpose, expires_at, used_at FROM account_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(AccountToken {
                user_id: row.try_get("user_id")?,
                purpose: row.try_get("purpose")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
            })
        })
        .transpose()
    }

    /// Marks a live token used; false when it was already used, expired or never existed, so
    /// that two requests with one token cannot both succeed.
    pub async fn use_account_token(
        &self,
        token_hash: &str,
        purpose: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE account_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash)
        .bind(purpose)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets tokens that expired before `before` (used or not).
    pub async fn delete_stale_account_tokens(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM account_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// `unverified` → `enabled`; false when the user was not unverified.
    pub async fn mark_verified(&self, user_id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET status = 'enabled', updated_at = $1 WHERE id = $2 AND status = 'unverified'",
        )
        .bind(now)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The user's recent password hashes, newest first.
    pub async fn password_history(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let hashes = sqlx::query_scalar(
            "SELECT password_hash FROM password_history WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?;
        Ok(hashes)
    }

    /// Records the password set at account creation as the first entry of the history (when a
    /// history is kept at all).
    pub async fn remember_password(
        &self,
        user_id: &str,
        hash: &str,
        keep: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        if keep == 0 {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO password_history (user_id, password_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sets a new password in one transaction: the hash and its time, a new session epoch (every
    /// session ends, on every instance), every unused account token ended, and the history
    /// trimmed to `keep_history`.
    pub async fn change_password(
        &self,
        change: &PasswordChange<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let status = if change.verifies {
            "CASE WHEN status = 'unverified' THEN 'enabled' ELSE status END"
        } else {
            "status"
        };
        let sql = format!(
            "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2, \
             session_epoch = session_epoch + 1, status = {status} WHERE id = $3"
        );
        let done = sqlx::query(&sql)
            .bind(change.hash)
            .bind(now)
            .bind(change.user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(change.user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(change.user_id)
        .execute(&mut *tx)
        .await?;
        if change.keep_history > 0 {
            sqlx::query(
                "INSERT INTO password_history (user_id, password_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(change.user_id)
            .bind(change.hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM password_history WHERE user_id = $1 AND id NOT IN \
             (SELECT id FROM password_history WHERE user_id = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(change.user_id)
        .bind(change.keep_history as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
