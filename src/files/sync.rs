//! Reads a user's objects back from the store into their records: objects without a record get
//! one, records whose object is gone (or that were being deleted) are removed, size and ETag are
//! refreshed.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{FileError, Files, Owner, UploadRoute};
use crate::objects::ObjectStore;
use crate::objects::sniff::{self, SNIFF_LEN};
use crate::store::FileRecord;

/// How much of an adopted object is read: enough to sniff it and read an image header.
const HEAD_READ: usize = 64 << 10;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Objects that had no record and got one.
    pub added: usize,
    /// Records whose object is gone, or whose deletion this sync finished.
    pub removed: usize,
    /// Records whose size or ETag changed.
    pub updated: usize,
    pub unchanged: usize,
}

impl SyncReport {
    pub fn add(&mut self, other: SyncReport) {
        self.added += other.added;
        self.removed += other.removed;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }
}

/// An object as the store lists it.
struct Present {
    size: i64,
    etag: Option<String>,
}

impl Files {
    async fn list_objects(
        &self,
        store: usize,
        prefix: &str,
    ) -> Result<HashMap<String, Present>, FileError> {
        let failed = |e: &dyn std::fmt::Display| FileError::Store(e.to_string());
        Ok(match self.objects.get(store) {
            Some(ObjectStore::S3(s3)) => s3
                .client
                .list(prefix)
                .await
                .map_err(|e| failed(&e))?
                .into_iter()
                .map(|o| {
                    (
                        o.key,
                        Present {
                            size: o.size,
                            etag: o.etag,
                        },
                    )
                })
                .collect(),
            Some(ObjectStore::Fs(fs)) => fs
                .list(prefix)
                .await
                .map_err(|e| failed(&e))?
                .into_iter()
                .map(|o| {
                    (
                        o.key,
                        Present {
                            size: o.size,
                            etag: Some(o.etag),
                        },
                    )
                })
                .collect(),
            None => {
                return Err(FileError::Store(
                    "the route's store is not configured".into(),
                ));
            }
        })
    }

    async fn object_exists(&self, store: usize, key: &str) -> Result<bool, FileError> {
        match self.objects.get(store) {
            Some(ObjectStore::S3(s3)) => s3
                .client
                .exists(key)
                .await
                .map_err(|e| FileError::Store(e.to_string())),
            Some(ObjectStore::Fs(fs)) => match fs.open(key).await {
                Ok(_) => Ok(true),
                Err(crate::objects::fs::FsError::NotFound) => Ok(false),
                Err(e) => Err(FileError::Store(e.to_string())),
            },
            None => Err(FileError::Store("no such store".into())),
        }
    }

    async fn read_head(&self, store: usize, key: &str) -> Result<Vec<u8>, FileError> {
        let failed = |e: &dyn std::fmt::Display| FileError::Store(e.to_string());
        match self.objects.get(store) {
            Some(ObjectStore::S3(s3)) => Ok(s3
                .client
                .read_head(key, HEAD_READ)
                .await
                .map_err(|e| failed(&e))?
                .to_vec()),
            Some(ObjectStore::Fs(fs)) => {
                use tokio::io::AsyncReadExt;
                let object = fs.open(key).await.map_err(|e| failed(&e))?;
                let mut head = Vec::with_capacity(HEAD_READ);
                object
                    .file
                    .take(HEAD_READ as u64)
                    .read_to_end(&mut head)
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(head)
            }
            None => Err(FileError::Store("no such store".into())),
        }
    }

    /// Syncs `owner`'s objects under `route`'s per-user prefix.
    pub async fn sync_user(
        &self,
        route_name: &str,
        route: &UploadRoute,
        owner: &Owner,
    ) -> Result<SyncReport, FileError> {
        let prefix = route
            .key
            .user_prefix(&owner.user_id, &owner.username)
            .ok_or(FileError::SyncUnavailable(
                "this route's key template does not start with a per-user prefix",
            ))?;
        let db = self.db()?;
        let store_name = self
            .objects
            .get(route.store)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        // Records first, then the listing: a record committed after this read is left alone, and
        // its object, listed below, is recognised when its adoption meets the record.
        let records = db.files_under(&store_name, &prefix).await?;
        let present = self.list_objects(route.store, &prefix).await?;
        let mut report = SyncReport::default();
        let mut known: HashSet<&str> = HashSet::new();
        for record in &records {
            known.insert(&record.key);
            if let Some(original) = &record.original_key {
                known.insert(original);
            }
            // Another owner's record under this prefix is theirs to sync.
            if record.owner_id != owner.user_id {
                continue;
            }
            if record.state == "deleting" {
                if self.remove_objects(record).await.is_ok() {
                    db.delete_file_record(&record.id).await?;
                    report.removed += 1;
                }
                continue;
            }
            match present.get(&record.key) {
                // Deleted by now (or missed by a listing that raced a write): ask once more.
                None if !self.object_exists(route.store, &record.key).await? => {
                    if let Some(original) = &record.original_key {
                        let _ = self.delete_object(route.store, original).await;
                    }
                    db.delete_file_record(&record.id).await?;
                    report.removed += 1;
                }
                None => report.unchanged += 1,
                Some(object) if object.size != record.size || object.etag != record.etag => {
                    db.refresh_file(&record.id, object.size, object.etag.as_deref())
                        .await?;
                    report.updated += 1;
                }
                Some(_) => report.unchanged += 1,
            }
        }
        let mut adopted = Vec::new();
        for (key, object) in &present {
            if known.contains(key.as_str()) || db.is_claimed(&store_name, key).await? {
                continue;
            }
            let head = match self.read_head(route.store, key).await {
                Ok(head) => head,
                // Removed between the listing and now.
                Err(_) => continue,
            };
            let complete = head.len() as i64 >= object.size;
            let sniffed = sniff::sniff(&head[..head.len().min(SNIFF_LEN)], complete);
            // Only what the route would have taken becomes this user's file.
            if head.is_empty() || !sniff::allowed(sniffed.mime, &route.allowed_types) {
                continue;
            }
            let dimensions = if sniffed.mime.starts_with("image/") {
                image::ImageReader::new(std::io::Cursor::new(&head))
                    .with_guessed_format()
                    .ok()
                    .and_then(|r| r.into_dimensions().ok())
            } else {
                None
            };
            let name = key.rsplit('/').next().unwrap_or(key).to_string();
            adopted.push(FileRecord {
                id: uuid::Uuid::new_v4().to_string(),
                owner_id: owner.user_id.clone(),
                route: route_name.to_string(),
                store: store_name.clone(),
                key: key.clone(),
                original_key: None,
                name,
                content_type: sniffed.mime.to_string(),
                size: object.size,
                sha256: None,
                etag: object.etag.clone(),
                width: dimensions.map(|(w, _)| i64::from(w)),
                height: dimensions.map(|(_, h)| i64::from(h)),
                // What the object was stored with is not read back.
                acl: "unknown".into(),
                folder: None,
                alt: None,
                entity_type: None,
                entity_id: None,
                state: "ready".into(),
                created_at: self.now(),
            });
        }
        for record in adopted {
            match db.insert_files(std::slice::from_ref(&record), &[]).await {
                Ok(()) => report.added += 1,
                // An upload committed its record meanwhile.
                Err(crate::store::StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }
}

/// An upload route by name, as the sync of every user walks them.
pub struct NamedRoute<'a> {
    pub name: &'a str,
    pub route: &'a UploadRoute,
}

impl Files {
    /// Syncs every user (or only `only`) on every route with a per-user prefix.
    pub async fn sync_users(
        &self,
        routes: &[NamedRoute<'_>],
        only: Option<&Owner>,
    ) -> Result<SyncReport, FileError> {
        let mut report = SyncReport::default();
        let routes: Vec<&NamedRoute> = routes
            .iter()
            .filter(|r| r.route.key.user_prefix("u", "u").is_some())
            .collect();
        if routes.is_empty() {
            return Err(FileError::SyncUnavailable(
                "no upload route's key template starts with a per-user prefix",
            ));
        }
        if let Some(owner) = only {
            for r in &routes {
                report.add(self.sync_user(r.name, r.route, owner).await?);
            }
            return Ok(report);
        }
        let db = self.db()?;
        let mut offset = 0;
        loop {
            let filter = crate::store::UserFilter {
                limit: 200,
                offset,
                ..crate::store::UserFilter::default()
            };
            let (users, _) = db.search_users(&filter).await?;
            if users.is_empty() {
                break;
            }
            offset += users.len() as i64;
            for user in users {
                let owner = Owner {
                    user_id: user.id.clone(),
                    username: user.username.clone(),
                };
                for r in &routes {
                    report.add(self.sync_user(r.name, r.route, &owner).await?);
                }
            }
        }
        Ok(report)
    }
}
