//! The mail queue: messages rendered when queued, sent by the worker, retried with backoff,
//! kept as failed after the last try. A sent message's body is cleared: it may hold a link
//! with a token.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct NewMail {
    pub kind: String,
    pub user_id: Option<String>,
    pub sender: String,
    pub recipient: String,
    pub subject: String,
    /// The whole RFC 5322 message.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    pub id: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub recipient: String,
    pub subject: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// A message due for sending, claimed by one worker.
#[derive(Debug, Clone)]
pub struct DueMail {
    pub record: MailRecord,
    pub sender: String,
    pub message: String,
}

const RECORD_COLUMNS: &str = "id, kind, user_id, recipient, subject, status, attempts, \
     next_attempt_at, last_error, created_at, sent_at";

fn record_from_row(row: &AnyRow) -> Result<MailRecord, StoreError> {
    Ok(MailRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        user_id: row.try_get("user_id")?,
        recipient: row.try_get("recipient")?,
        subject: row.try_get("subject")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

impl Store {
    pub async fn enqueue_mail(&self, mail: &NewMail, now: i64) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO mail_queue (kind, user_id, sender, recipient, subject, message, status, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) RETURNING id",
        )
        .bind(&mail.kind)
        .bind(mail.user_id.as_deref())
        .bind(&mail.sender)
        .bind(&mail.recipient)
        .bind(&mail.subject)
        .bind(&mail.message)
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    /// Claims up to `limit` due messages: each is leased until `lease_until` (a worker that dies
    /// mid-send leaves it to be tried again then) and its attempt counted.
    pub async fn claim_due_mail(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<DueMail>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, sender, message FROM mail_queue \
             WHERE status = 'pending' AND next_attempt_at <= $1 AND message IS NOT NULL \
             ORDER BY next_attempt_at, id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let mut claimed = Vec::new();
        for row in rows {
            let mut record = record_from_row(&row)?;
            let done = sqlx::query(
                "UPDATE mail_queue SET next_attempt_at = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND status = 'pending' AND next_attempt_at = $3",
            )
            .bind(lease_until)
            .bind(record.id)
            .bind(record.next_attempt_at)
            .execute(self.pool())
            .await?;
            if done.rows_affected() == 1 {
                record.attempts += 1;
                claimed.push(DueMail {
                    record,
                    sender: row.try_get("sender")?,
                    message: row.try_get("message")?,
                });
            }
        }
        Ok(claimed)
    }

    pub async fn mail_sent(&self, id: i64, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mail_queue SET status = 'sent', sent_at = $1, message = NULL, last_error = NULL \
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a failed try: tried again at `retry_at`, or kept as failed when `None`.
    pub async fn mail_attempt_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(1000).collect();
        match retry_at {
            Some(at) => sqlx::query(
                "UPDATE mail_queue SET next_attempt_at = $1, last_error = $2 WHERE id = $3",
            )
            .bind(at)
            .bind(error)
            .bind(id),
            None => sqlx::query(
                "UPDATE mail_queue SET status = 'failed', last_error = $1 WHERE id = $2",
            )
            .bind(error)
            .bind(id),
        }
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Newest first; only failed messages with `failed_only`.
    pub async fn mail_records(
        &self,
        failed_only: bool,
        limit: i64,
    ) -> Result<Vec<MailRecord>, StoreError> {
        let filter = if failed_only {
            "WHERE status = 'failed'"
        } else {
            ""
        };
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM mail_queue {filter} ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(&sql).bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn mail_record(&self, id: i64) -> Result<Option<MailRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM mail_queue WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Puts a failed message back in the queue with a fresh count of attempts.
    pub async fn retry_mail(&self, id: i64, now: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE mail_queue SET status = 'pending', attempts = 0, next_attempt_at = $1 \
             WHERE id = $2 AND status = 'failed' AND message IS NOT NULL",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return match self.mail_record(id).await? {
                None => Err(StoreError::NotFound("message")),
                Some(m) => Err(StoreError::InUse(format!(
                    "message {id} is {}, not failed: only failed messages are retried",
                    m.status
                ))),
            };
        }
        Ok(())
    }

    /// Forgets sent messages older than `before`, and clears the bodies of messages that
    /// failed before it (their links have expired by then).
    pub async fn prune_mail(&self, before: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mail_queue WHERE status = 'sent' AND created_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "UPDATE mail_queue SET message = NULL WHERE status = 'failed' AND created_at < $1",
        )
        .bind(before)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn count_pending_mail(&self) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM mail_queue WHERE status = 'pending'")
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }
}
