//! File records and the claims on object keys being written (`pending_uploads`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: String,
    pub owner_id: String,
    pub route: String,
    pub store: String,
    pub key: String,
    /// The untouched upload, when the route keeps it beside an image variant.
    pub original_key: Option<String>,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: Option<String>,
    pub etag: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub acl: String,
    pub folder: Option<String>,
    pub alt: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// `ready`, or `deleting` when the object could not be removed yet.
    pub state: String,
    pub created_at: i64,
}

/// Which records a listing returns (all conditions must hold).
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub owner_id: Option<String>,
    pub route: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub folder: Option<String>,
    /// A full type (`image/png`) or a family (`image/`).
    pub content_type: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// What `PATCH` may change; `Some(None)` clears a field.
#[derive(Debug, Clone, Default)]
pub struct FileUpdate {
    pub alt: Option<Option<String>>,
    pub entity: Option<Option<(String, String)>>,
}

const COLUMNS: &str = "id, owner_id, route, store, object_key, original_key, name, content_type, \
     size, sha256, etag, width, height, acl, folder, alt, entity_type, entity_id, state, created_at";

fn from_row(row: &AnyRow) -> Result<FileRecord, StoreError> {
    Ok(FileRecord {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        route: row.try_get("route")?,
        store: row.try_get("store")?,
        key: row.try_get("object_key")?,
        original_key: row.try_get("original_key")?,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        etag: row.try_get("etag")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
        acl: row.try_get("acl")?,
        folder: row.try_get("folder")?,
        alt: row.try_get("alt")?,
        entity_type: row.try_get("entity_type")?,
        entity_id: row.try_get("entity_id")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The smallest string above every string starting with `prefix` (its last character, when
/// ASCII, raised by one): `users/1/` → `users/10`.
fn prefix_end(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if !last.is_ascii() || last == 0x7F {
        return None;
    }
    let mut end = prefix[..prefix.len() - 1].to_string();
    end.push(char::from(last + 1));
    Some(end)
}

/// `LIKE` pattern text with its wildcards escaped (`\` is the escape character).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Claims `key` in `store` for an object about to be written; `Conflict` when another
    /// upload is writing it or a record already names it (as its object or kept original).
    /// The claim goes first and the record check second: an upload that commits in between
    /// releases its claim in the same transaction that writes its record, so one of the two
    /// checks always sees it.
    pub async fn claim_object_key(
        &self,
        store: &str,
        key: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let claim: i64 = sqlx::query_scalar(
            "INSERT INTO pending_uploads (store, object_key, started_at) VALUES ($1, $2, $3) \
             RETURNING id",
        )
        .bind(store)
        .bind(key)
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(|e| StoreError::from_write(e, "a file with this name"))?;
        if self.key_recorded(store, key).await? {
            self.release_claims(&[claim]).await?;
            return Err(StoreError::Conflict("a file with this name"));
        }
        Ok(claim)
    }

    /// Whether a record names `key` in `store`, as its object or its kept original.
    pub async fn key_recorded(&self, store: &str, key: &str) -> Result<bool, StoreError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT id FROM files WHERE store = $1 AND (object_key = $2 OR original_key = $2) LIMIT 1",
        )
        .bind(store)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// Notes the S3 multipart upload a claim writes through, so that the sweep can abort it.
    pub async fn note_multipart_upload(
        &self,
        claim: i64,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE pending_uploads SET upload_id = $1 WHERE id = $2")
            .bind(upload_id)
            .bind(claim)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn release_claims(&self, claims: &[i64]) -> Result<(), StoreError> {
        for claim in claims {
            sqlx::query("DELETE FROM pending_uploads WHERE id = $1")
                .bind(claim)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Claims started before `before`: uploads a crash or a lost connection left behind.
    pub async fn stale_claims(
        &self,
        before: i64,
    ) -> Result<Vec<(i64, String, String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, store, object_key, upload_id FROM pending_uploads WHERE started_at < $1 \
             ORDER BY id LIMIT 500",
        )
        .bind(before)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("store")?,
                    r.try_get("object_key")?,
                    r.try_get("upload_id")?,
                ))
            })
            .collect()
    }

    /// Whether `key` in `store` is being written right now.
    pub async fn is_claimed(&self, store: &str, key: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM pending_uploads WHERE store = $1 AND object_key = $2",
        )
        .bind(store)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// Writes the records of one upload and releases its claims, all in one transaction.
    pub async fn insert_files(
        &self,
        records: &[FileRecord],
        claims: &[i64],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for f in records {
            sqlx::query(&format!(
                "INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
            ))
            .bind(&f.id)
            .bind(&f.owner_id)
            .bind(&f.route)
            .bind(&f.store)
            .bind(&f.key)
            .bind(f.original_key.as_deref())
            .bind(&f.name)
            .bind(&f.content_type)
            .bind(f.size)
            .bind(f.sha256.as_deref())
            .bind(f.etag.as_deref())
            .bind(f.width)
            .bind(f.height)
            .bind(&f.acl)
            .bind(f.folder.as_deref())
            .bind(f.alt.as_deref())
            .bind(f.entity_type.as_deref())
            .bind(f.entity_id.as_deref())
            .bind(&f.state)
            .bind(f.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_write(e, "a file with this name"))?;
        }
        for claim in claims {
            sqlx::query("DELETE FROM pending_uploads WHERE id = $1")
                .bind(claim)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM files WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Records matching `filter`, newest first, and how many match in all.
    pub async fn list_files(
        &self,
        filter: &FileFilter,
    ) -> Result<(Vec<FileRecord>, i64), StoreError> {
        let mut conditions = Vec::new();
        let mut values: Vec<String> = Vec::new();
        let mut add = |condition: &str, value: String| {
            values.push(value);
            conditions.push(condition.replace('?', &format!("${}", values.len())));
        };
        if let Some(v) = &filter.owner_id {
            add("owner_id = ?", v.clone());
        }
        if let Some(v) = &filter.route {
            add("route = ?", v.clone());
        }
        if let Some(v) = &filter.entity_type {
            add("entity_type = ?", v.clone());
        }
        if let Some(v) = &filter.entity_id {
            add("entity_id = ?", v.clone());
        }
        if let Some(v) = &filter.folder {
            add("folder = ?", v.clone());
        }
        if let Some(v) = &filter.content_type {
            if v.ends_with('/') {
                add("content_type LIKE ? ESCAPE '\\'", like_prefix(v));
            } else {
                add("content_type = ?", v.clone());
            }
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) FROM files{filter_sql}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for v in &values {
            count = count.bind(v);
        }
        let total = count.fetch_one(self.pool()).await?;
        let list_sql = format!(
            "SELECT {COLUMNS} FROM files{filter_sql} ORDER BY created_at DESC, id DESC \
             LIMIT {} OFFSET {}",
            filter.limit.max(0),
            filter.offset.max(0)
        );
        let mut list = sqlx::query(&list_sql);
        for v in &values {
            list = list.bind(v);
        }
        let rows = list.fetch_all(self.pool()).await?;
        let files = rows.iter().map(from_row).collect::<Result<_, _>>()?;
        Ok((files, total))
    }

    /// Every record in `store` whose key starts with `prefix` (a range on the key, so that the
    /// unique index answers it).
    pub async fn files_under(
        &self,
        store: &str,
        prefix: &str,
    ) -> Result<Vec<FileRecord>, StoreError> {
        let rows = match prefix_end(prefix) {
            Some(end) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM files WHERE store = $1 AND object_key >= $2 \
                     AND object_key < $3"
                ))
                .bind(store)
                .bind(prefix)
                .bind(end)
                .fetch_all(self.pool())
                .await?
            }
            None => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM files WHERE store = $1 AND object_key LIKE $2 ESCAPE '\\'"
            ))
            .bind(store)
            .bind(like_prefix(prefix))
            .fetch_all(self.pool())
            .await?,
        };
        rows.iter().map(from_row).collect()
    }

    pub async fn update_file(&self, id: &str, update: &FileUpdate) -> Result<(), StoreError> {
        if let Some(alt) = &update.alt {
            sqlx::query("UPDATE files SET alt = $1 WHERE id = $2")
                .bind(alt.as_deref())
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        if let Some(entity) = &update.entity {
            let (kind, entity_id) = match entity {
                Some((kind, entity_id)) => (Some(kind.as_str()), Some(entity_id.as_str())),
                None => (None, None),
            };
            sqlx::query("UPDATE files SET entity_type = $1, entity_id = $2 WHERE id = $3")
                .bind(kind)
                .bind(entity_id)
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Marks a record whose object is being removed: if the removal fails it stays marked, and a
    /// retry or a sync finishes it.
    pub async fn mark_file_deleting(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE files SET state = 'deleting' WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn delete_file_record(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The object's size and ETag as the store reports them now.
    pub async fn refresh_file(
        &self,
        id: &str,
        size: i64,
        etag: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE files SET size = $1, etag = $2 WHERE id = $3")
            .bind(size)
            .bind(etag)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
