//! Uploaded files: the upload pipeline (streamed to S3 or the filesystem, checked by magic
//! bytes, optionally turned into an image variant), the records kept of them, removal, and the
//! sync that reads a user's objects back into records. The record and the object always agree:
//! a record is written only after its object is complete, and an object whose record cannot be
//! written is removed again (see `upload`).

mod settings;
mod sweep;
mod sync;
mod upload;

use std::sync::Arc;

use crate::auth::Clock;
use crate::images::Images;
use crate::metrics::Metrics;
use crate::objects::{ObjectStore, ObjectStores};
use crate::services::StoreHandle;
use crate::store::{FileRecord, NewEvent, Store, StoreError};

pub use settings::{
    CANNED_ACLS, DEFAULT_KEY_TEMPLATE, KeyParts, MIN_PART_SIZE, UploadKey, UploadRoute,
    VariantSettings,
};
pub use sweep::UploadSweeper;
pub use sync::{NamedRoute, SyncReport};
pub use upload::{ChunkSource, Upload, UploadError};

/// The longest `alt` text.
const MAX_ALT: usize = 1000;
/// The longest entity type or id.
const MAX_ENTITY: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such file")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the object store failed: {0}")]
    Store(String),
    #[error(transparent)]
    Database(#[from] StoreError),
    #[error("the user database is not available")]
    Unavailable,
    #[error("{0}")]
    SyncUnavailable(&'static str),
}

fn invalid(field: &'static str, message: impl Into<String>) -> FileError {
    FileError::Invalid {
        field,
        message: message.into(),
    }
}

/// Who owns an upload.
#[derive(Debug, Clone)]
pub struct Owner {
    pub user_id: String,
    pub username: String,
}

/// The fields sent with files (before them), checked against the route.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub folder: Option<String>,
    pub alt: Option<String>,
    pub entity: Option<(String, String)>,
    pub acl: String,
}

/// An entity type or id: letters, digits and `_-.:`, at most 128 characters.
pub fn valid_entity_part(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ENTITY
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// A folder name: one key segment of letters, digits, `-`, `_` and `.`, at most 64 bytes.
pub fn valid_folder(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `alt` text: at most 1000 characters, no control characters but line breaks.
pub fn check_alt(alt: &str) -> Result<(), FileError> {
    if alt.chars().count() > MAX_ALT {
        return Err(invalid("alt", format!("at most {MAX_ALT} characters")));
    }
    if alt.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid("alt", "control characters are not allowed"));
    }
    Ok(())
}

/// Both parts of an entity, or neither.
pub fn check_entity(
    entity_type: Option<&str>,
    entity_id: Option<&str>,
) -> Result<Option<(String, String)>, FileError> {
    match (entity_type, entity_id) {
        (None, None) => Ok(None),
        (Some(t), Some(id)) => {
            if !valid_entity_part(t) {
                return Err(invalid(
                    "entity_type",
                    "1 to 128 letters, digits or _ - . :",
                ));
            }
            if !valid_entity_part(id) {
                return Err(invalid("entity_id", "1 to 128 letters, digits or _ - . :"));
            }
            Ok(Some((t.to_string(), id.to_string())))
        }
        (Some(_), None) => Err(invalid("entity_id", "required with entity_type")),
        (None, Some(_)) => Err(invalid("entity_type", "required with entity_id")),
    }
}

impl Meta {
    /// Checks the sent fields against `route`; an empty field counts as not sent.
    pub fn parse(
        route: &UploadRoute,
        field: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FileError> {
        let sent = |name: &str| field(name).filter(|v| !v.is_empty());
        let folder = match sent("folder") {
            None => None,
            Some(folder) if route.folders.contains(&folder) => Some(folder),
            Some(_) if route.folders.is_empty() => {
                return Err(invalid("folder", "this route takes no folder"));
            }
            Some(_) => {
                return Err(invalid(
                    "folder",
                    format!("must be one of {}", route.folders.join(", ")),
                ));
            }
        };
        let alt = sent("alt");
        if let Some(alt) = &alt {
            check_alt(alt)?;
        }
        let entity = check_entity(sent("entity_type").as_deref(), sent("entity_id").as_deref())?;
        let acl = match sent("acl") {
            None => route
                .acls
                .first()
                .cloned()
                .unwrap_or_else(|| "private".into()),
            Some(acl) if route.acls.contains(&acl) => acl,
            Some(acl) => {
                return Err(invalid(
                    "acl",
                    format!(
                        "{acl:?} is not allowed here (allowed: {})",
                        route.acls.join(", ")
                    ),
                ));
            }
        };
        Ok(Self {
            folder,
            alt,
            entity,
            acl,
        })
    }
}

/// The file service: shared by the upload routes, the admin API, the CLI and the sweep.
pub struct Files {
    store: StoreHandle,
    objects: Arc<ObjectStores>,
    images: Arc<Images>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Files {
    pub fn new(
        store: StoreHandle,
        objects: Arc<ObjectStores>,
        images: Arc<Images>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            objects,
            images,
            clock,
            metrics,
        }
    }

    fn db(&self) -> Result<Arc<Store>, FileError> {
        self.store.load_full().ok_or(FileError::Unavailable)
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn count_upload(&self, route: &str, result: &str) {
        self.metrics
            .uploads
            .with_label_values(&[route, result])
            .inc();
    }

    pub fn objects(&self) -> &ObjectStores {
        &self.objects
    }

    /// A record the caller may see: their own, or any for an administrator.
    pub async fn get(&self, id: &str, owner: Option<&str>) -> Result<FileRecord, FileError> {
        let record = self.db()?.file(id).await?.ok_or(FileError::NotFound)?;
        match owner {
            Some(owner) if record.owner_id != owner => Err(FileError::NotFound),
            _ => Ok(record),
        }
    }

    pub async fn list(
        &self,
        filter: &crate::store::FileFilter,
    ) -> Result<(Vec<FileRecord>, i64), FileError> {
        Ok(self.db()?.list_files(filter).await?)
    }

    pub async fn update(
        &self,
        record: &FileRecord,
        update: &crate::store::FileUpdate,
    ) -> Result<FileRecord, FileError> {
        let db = self.db()?;
        db.update_file(&record.id, update).await?;
        db.file(&record.id).await?.ok_or(FileError::NotFound)
    }

    /// Removes the object(s) and then the record. When the store fails the record stays,
    /// marked `deleting`, and the error is returned: a retry or a sync finishes it.
    pub async fn delete(
        &self,
        record: &FileRecord,
        actor: Option<&str>,
        ip: Option<String>,
    ) -> Result<(), FileError> {
        let db = self.db()?;
        db.mark_file_deleting(&record.id).await?;
        self.remove_objects(record).await?;
        db.delete_file_record(&record.id).await?;
        let event = NewEvent {
            kind: "file.deleted".into(),
            user_id: Some(record.owner_id.clone()),
            actor: actor.map(str::to_owned),
            ip,
            user_agent: None,
            detail: serde_json::json!({
                "file_id": record.id,
                "store": record.store,
                "key": record.key,
            }),
        };
        if let Err(e) = db.record_event(&event, self.now()).await {
            tracing::warn!(error = %e, "cannot record the file.deleted event");
        }
        Ok(())
    }

    async fn remove_objects(&self, record: &FileRecord) -> Result<(), FileError> {
        let index = self
            .objects
            .index_of(&record.store)
            .ok_or_else(|| FileError::Store(format!("no store named {:?}", record.store)))?;
        for key in std::iter::once(&record.key).chain(record.original_key.as_ref()) {
            self.delete_object(index, key).await?;
        }
        Ok(())
    }

    /// Removes one object (missing is fine).
    pub(crate) async fn delete_object(&self, store: usize, key: &str) -> Result<(), FileError> {
        match self.objects.get(store) {
            Some(ObjectStore::S3(s3)) => s3
                .client
                .delete(key)
                .await
                .map_err(|e| FileError::Store(e.to_string())),
            Some(ObjectStore::Fs(fs)) => fs
                .delete(key)
                .await
                .map_err(|e| FileError::Store(e.to_string())),
            None => Err(FileError::Store("no such store".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> UploadRoute {
        UploadRoute {
            store: 0,
            key: UploadKey::parse("users/{user_id}/{folder}/{uuid}.{ext}", false).unwrap(),
            max_file_size: 1 << 20,
            max_files: 2,
            allowed_types: vec!["image/*".into()],
            acls: vec!["private".into(), "public-read".into()],
            folders: vec!["avatars".into()],
            client_names: false,
            mode: crate::config::AssetMode::Stream,
            link_ttl: std::time::Duration::from_secs(3600),
            cache_control: "private".into(),
            inline_types: Arc::new(crate::objects::InlineTypes::default()),
            part_size: 8 << 20,
            timeout: std::time::Duration::from_secs(60),
            variant: None,
        }
    }

    fn meta(fields: &[(&str, &str)]) -> Result<Meta, FileError> {
        Meta::parse(&route(), |name| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn fields_are_checked_against_the_route() {
        let m = meta(&[]).unwrap();
        assert_eq!(m.acl, "private");
        assert_eq!(m.folder, None);
        let m = meta(&[("folder", "avatars"), ("acl", "public-read")]).unwrap();
        assert_eq!(m.folder.as_deref(), Some("avatars"));
        assert_eq!(m.acl, "public-read");
        assert!(meta(&[("folder", "../etc")]).is_err());
        assert!(meta(&[("acl", "public-read-write")]).is_err());
        assert!(meta(&[("acl", "bogus")]).is_err());
        assert!(meta(&[("entity_type", "post")]).is_err());
        assert!(meta(&[("entity_type", "post"), ("entity_id", "a b")]).is_err());
        let m = meta(&[("entity_type", "post"), ("entity_id", "42")]).unwrap();
        assert_eq!(m.entity, Some(("post".into(), "42".into())));
        assert!(meta(&[("alt", &"x".repeat(1001))]).is_err());
        assert!(meta(&[("alt", "a\u{0}b")]).is_err());
    }
}
