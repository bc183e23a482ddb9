//! The audit trail: who did what, when, from where. Never passwords, hashes or session ids.

use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub kind: String,
    pub user_id: Option<String>,
    pub actor: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// A JSON object with details.
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub actor: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: serde_json::Value,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub user_id: Option<String>,
    pub kind: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

impl Store {
    pub async fn record_event(&self, event: &NewEvent, now: i64) -> Result<(), StoreError> {
        insert_event(self.pool(), event, now).await
    }

    /// Newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, user_id, actor, ip, user_agent, detail, created_at FROM events \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR kind = $2) \
             AND created_at >= $3 AND created_at <= $4 \
             ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6",
        )
        .bind(filter.user_id.as_deref())
        .bind(filter.kind.as_deref())
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(Event {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    user_id: row.try_get("user_id")?,
                    actor: row.try_get("actor")?,
                    ip: row.try_get("ip")?,
                    user_agent: row.try_get("user_agent")?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}

/// Writes an event through `executor` (the pool, or a transaction whose changes it records).
pub(crate) async fn insert_event<'e, E>(
    executor: E,
    event: &NewEvent,
    now: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let detail = if event.detail.is_null() {
        "{}".to_string()
    } else {
        event.detail.to_string()
    };
    sqlx::query(
        "INSERT INTO events (kind, user_id, actor, ip, user_agent, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&event.kind)
    .bind(event.user_id.as_deref())
    .bind(event.actor.as_deref())
    .bind(event.ip.as_deref())
    .bind(event.user_agent.as_deref())
    .bind(detail)
    .bind(now)
    .execute(executor)
    .await?;
    tracing::info!(
        target: "postern::events",
        kind = %event.kind,
        user_id = event.user_id.as_deref().unwrap_or(""),
        actor = event.actor.as_deref().unwrap_or(""),
        ip = event.ip.as_deref().unwrap_or(""),
        detail = %event.detail,
        "event"
    );
    Ok(())
}
