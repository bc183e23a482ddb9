//! One upload request: its files streamed into the store one after the other, then all their
//! records written in one transaction. Until then each object's key is claimed in
//! `pending_uploads`, so that a crash leaves something the sweep can clean up; on any failure
//! the objects already written are removed again and nothing is recorded.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{FileError, Files, Meta, Owner, UploadRoute};
use crate::images::RenderError;
use crate::objects::ObjectStore;
use crate::objects::fs::FsStore;
use crate::objects::s3_client::S3Client;
use crate::objects::sniff::{self, FileType, SNIFF_LEN};
use crate::store::{FileRecord, NewEvent, Store, StoreError};

/// How much of a file's start is kept to read an image's dimensions from its header.
const HEADER_KEEP: usize = 64 << 10;
/// The longest file name kept from the client.
const MAX_NAME: usize = 255;

/// Where a file's bytes come from (a multipart field).
#[async_trait::async_trait]
pub trait ChunkSource: Send {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, UploadError>;
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("a file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("at most {limit} files may be sent at once")]
    TooMany { limit: usize },
    #[error("files of type {found} are not accepted here")]
    TypeRefused { found: &'static str },
    #[error(transparent)]
    Invalid(FileError),
    #[error("the upload did not arrive whole: {0}")]
    Incomplete(String),
    #[error("the upload took longer than allowed")]
    Timeout,
    #[error("a file with this name already exists")]
    Taken,
    #[error("the object store failed: {0}")]
    Store(String),
    #[error("the filesystem of the store is full")]
    StorageFull,
    #[error(transparent)]
    Database(#[from] StoreError),
    #[error("the user database is not available")]
    Unavailable,
    #[error(transparent)]
    Image(#[from] RenderError),
}

fn store_failed(e: impl std::fmt::Display) -> UploadError {
    UploadError::Store(e.to_string())
}

/// A write to a filesystem store: a full disk (or quota) is said as such.
fn fs_write_failed(e: std::io::Error) -> UploadError {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            UploadError::StorageFull
        }
        _ => store_failed(e),
    }
}

/// A filesystem store's failure outside a write (creating the temporary file, the key's
/// directories, the final name).
fn fs_failed(e: crate::objects::fs::FsError) -> UploadError {
    match e {
        crate::objects::fs::FsError::Exists => UploadError::Taken,
        crate::objects::fs::FsError::Io(io) => fs_write_failed(io),
        other => store_failed(other),
    }
}

/// Types the image pipeline can decode (and so turn into a variant).
fn is_transformable(kind: FileType) -> bool {
    matches!(kind, sniff::JPEG | sniff::PNG | sniff::GIF | sniff::WEBP)
}

/// The client's file name as a record keeps it: its last path component, without control
/// characters, at most 255 bytes; `None` when nothing is left.
pub fn clean_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned_trimmed = cleaned.trim();
    if cleaned_trimmed.is_empty() || cleaned_trimmed == "." || cleaned_trimmed == ".." {
        return None;
    }
    cleaned = cleaned_trimmed.to_string();
    while cleaned.len() > MAX_NAME {
        cleaned.pop();
    }
    Some(cleaned)
}

/// Width and height from an image's header, when it is one postern reads.
fn dimensions(head: &[u8]) -> Option<(i64, i64)> {
    let reader = image::ImageReader::new(std::io::Cursor::new(head))
        .with_guessed_format()
        .ok()?;
    let (w, h) = reader.into_dimensions().ok()?;
    Some((i64::from(w), i64::from(h)))
}

/// An object being written.
enum Writer<'a> {
    S3 {
        client: &'a S3Client,
        db: std::sync::Arc<Store>,
        claim: i64,
        key: String,
        content_type: String,
        acl: String,
        part_size: usize,
        buffer: BytesMut,
        upload_id: Option<String>,
        etags: Vec<String>,
    },
    Fs {
        store: &'a FsStore,
        key: String,
        temp: PathBuf,
        file: tokio::fs::File,
    },
}

impl Writer<'_> {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        match self {
            Self::S3 {
                client,
                db,
                claim,
                key,
                content_type,
                acl,
                part_size,
                buffer,
                upload_id,
                etags,
            } => {
                // A part is cut exactly at `part_size`, from a buffer of that capacity, so that
                // memory stays at one part per upload however the chunks fall.
                let mut rest = chunk;
                while !rest.is_empty() {
                    let take = (*part_size - buffer.len()).min(rest.len());
                    buffer.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buffer.len() < *part_size {
                        continue;
                    }
                    let id = match upload_id {
                        Some(id) => id.clone(),
                        None => {
                            let id = client
                                .start_multipart(key, content_type, acl)
                                .await
                                .map_err(store_failed)?;
                            *upload_id = Some(id.clone());
                            db.note_multipart_upload(*claim, &id).await?;
                            id
                        }
                    };
                    let part = std::mem::take(buffer).freeze();
                    let number = i32::try_from(etags.len() + 1)
                        .map_err(|_| store_failed("too many parts"))?;
                    let etag = client
                        .upload_part(key, &id, number, part.clone())
                        .await
                        .map_err(store_failed)?;
                    etags.push(etag);
                    // The client is done with the part: its memory holds the next one.
                    *buffer = match part.try_into_mut() {
                        Ok(mut reused) => {
                            reused.clear();
                            reused
                        }
                        Err(_) => BytesMut::with_capacity(*part_size),
                    };
                }
                Ok(())
            }
            Self::Fs { file, .. } => file.write_all(chunk).await.map_err(fs_write_failed),
        }
    }

    /// Completes the object; its ETag.
    async fn finish(self) -> Result<Option<String>, UploadError> {
        match self {
            Self::S3 {
                client,
                key,
                content_type,
                acl,
                buffer,
                upload_id,
                mut etags,
                ..
            } => match upload_id {
                None => client
                    .put(&key, buffer.freeze(), &content_type, &acl)
                    .await
                    .map_err(store_failed),
                Some(id) => {
                    let result = async {
                        if !buffer.is_empty() {
                            let number = i32::try_from(etags.len() + 1)
                                .map_err(|_| store_failed("too many parts"))?;
                            etags.push(
                                client
                                    .upload_part(&key, &id, number, buffer.freeze())
                                    .await
                                    .map_err(store_failed)?,
                            );
                        }
                        client
                            .complete_multipart(&key, &id, &etags)
                            .await
                            .map_err(store_failed)
                    }
                    .await;
                    if result.is_err() {
                        // Whether it worked or not, the caller settles the claim.
                        let _ = abort_multipart(client, &key, &id).await;
                    }
                    result
                }
            },
            Self::Fs {
                store,
                key,
                temp,
                mut file,
            } => {
                let synced = async {
                    file.flush().await?;
                    file.sync_all().await
                }
                .await;
                drop(file);
                if let Err(e) = synced {
                    let _ = tokio::fs::remove_file(&temp).await;
                    return Err(fs_write_failed(e));
                }
                match store.commit_temp(temp.clone(), &key).await {
                    Ok(etag) => Ok(Some(etag)),
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&temp).await;
                        Err(fs_failed(e))
                    }
                }
            }
        }
    }

    /// Gives up: the multipart upload is aborted, the temporary file removed. `false` when
    /// that failed (the claim must then stay, for the sweep).
    async fn abort(self) -> bool {
        match self {
            Self::S3 {
                client,
                key,
                upload_id: Some(id),
                ..
            } => abort_multipart(client, &key, &id).await,
            Self::S3 { .. } => true,
            Self::Fs { temp, file, .. } => {
                drop(file);
                match tokio::fs::remove_file(&temp).await {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => {
                        tracing::warn!(error = %e, path = %temp.display(), "cannot remove an upload's temporary file");
                        false
                    }
                }
            }
        }
    }
}

async fn abort_multipart(client: &S3Client, key: &str, upload_id: &str) -> bool {
    match client.abort_multipart(key, upload_id).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, key, "cannot abort a multipart upload; the sweep will");
            false
        }
    }
}

/// What is known of a file once its first bytes are in.
struct NewFile<'m> {
    id: String,
    /// The client's name, cleaned.
    name: Option<String>,
    sniffed: FileType,
    meta: &'m Meta,
}

/// A file whose object (or objects) are complete, waiting for its record.
struct Stored {
    record: FileRecord,
    claims: Vec<i64>,
}

pub struct Upload<'a> {
    files: &'a Files,
    db: std::sync::Arc<Store>,
    route: &'a UploadRoute,
    route_name: &'a str,
    owner: Owner,
    stored: Vec<Stored>,
}

impl<'a> Upload<'a> {
    pub fn new(
        files: &'a Files,
        route: &'a UploadRoute,
        route_name: &'a str,
        owner: Owner,
    ) -> Result<Self, UploadError> {
        let db = files.store.load_full().ok_or(UploadError::Unavailable)?;
        Ok(Self {
            files,
            db,
            route,
            route_name,
            owner,
            stored: Vec::new(),
        })
    }

    pub fn count(&self) -> usize {
        self.stored.len()
    }

    /// Streams one file into the store. On error nothing of this file is left (the caller
    /// then calls [`Upload::abandon`] for the files before it).
    pub async fn add_file(
        &mut self,
        meta: &Meta,
        client_name: Option<&str>,
        source: &mut dyn ChunkSource,
    ) -> Result<(), UploadError> {
        let route = self.route;
        if self.stored.len() >= route.max_files {
            return Err(UploadError::TooMany {
                limit: route.max_files,
            });
        }
        let (head, complete) = self.read_head(source).await?;
        let sniffed = sniff::sniff(&head[..head.len().min(SNIFF_LEN)], complete);
        if !sniff::allowed(sniffed.mime, &route.allowed_types) {
            return Err(UploadError::TypeRefused {
                found: sniffed.mime,
            });
        }
        let file = NewFile {
            id: uuid::Uuid::new_v4().to_string(),
            name: client_name.and_then(clean_name),
            sniffed,
            meta,
        };
        let stored = match &route.variant {
            Some(variant) if is_transformable(sniffed) => {
                let whole = self.read_rest(head, complete, source).await?;
                self.store_variant(&file, variant, whole).await?
            }
            _ => self.stream_file(&file, head, complete, source).await?,
        };
        self.files
            .metrics
            .upload_bytes
            .inc_by(stored.record.size.max(0) as u64);
        self.stored.push(stored);
        Ok(())
    }

    fn too_large(&self, size: usize) -> Result<(), UploadError> {
        let limit = self.route.max_file_size;
        if size as u64 > limit {
            Err(UploadError::TooLarge { limit })
        } else {
            Ok(())
        }
    }

    /// The file's first bytes (enough to sniff), and whether they are all of it.
    async fn read_head(
        &self,
        source: &mut dyn ChunkSource,
    ) -> Result<(BytesMut, bool), UploadError> {
        let mut head = BytesMut::new();
        while head.len() < SNIFF_LEN {
            match source.next_chunk().await? {
                Some(chunk) => {
                    head.extend_from_slice(&chunk);
                    self.too_large(head.len())?;
                }
                None => {
                    if head.is_empty() {
                        return Err(UploadError::Invalid(FileError::Invalid {
                            field: "file",
                            message: "is empty".into(),
                        }));
                    }
                    return Ok((head, true));
                }
            }
        }
        Ok((head, false))
    }

    /// The whole file in memory (for an image variant), within the size limit.
    async fn read_rest(
        &self,
        mut whole: BytesMut,
        complete: bool,
        source: &mut dyn ChunkSource,
    ) -> Result<Bytes, UploadError> {
        if !complete {
            while let Some(chunk) = source.next_chunk().await? {
                self.too_large(whole.len() + chunk.len())?;
                whole.extend_from_slice(&chunk);
            }
        }
        Ok(whole.freeze())
    }

    /// The record of `file` before its object is written.
    fn record(&self, file: &NewFile) -> FileRecord {
        FileRecord {
            id: file.id.clone(),
            owner_id: self.owner.user_id.clone(),
            route: self.route_name.to_string(),
            store: self.store_name().to_string(),
            key: String::new(),
            original_key: None,
            name: file
                .name
                .clone()
                .unwrap_or_else(|| format!("{}.{}", file.id, file.sniffed.ext)),
            content_type: file.sniffed.mime.to_string(),
            size: 0,
            sha256: None,
            etag: None,
            width: None,
            height: None,
            acl: file.meta.acl.clone(),
            folder: file.meta.folder.clone(),
            alt: file.meta.alt.clone(),
            entity_type: file.meta.entity.as_ref().map(|(t, _)| t.clone()),
            entity_id: file.meta.entity.as_ref().map(|(_, i)| i.clone()),
            state: "ready".into(),
            created_at: self.files.now(),
        }
    }

    /// The key of `file` stored with extension `ext`. A client-chosen name keeps its stem; the
    /// extension is always the stored type's, and no name is hidden (a leading dot) or taken for
    /// a temporary file.
    fn key_for(&self, file: &NewFile, ext: &str) -> Result<String, UploadError> {
        let name_part = match (&file.name, self.route.client_names) {
            (Some(n), true) if !n.trim_start_matches('.').is_empty() => {
                with_extension(n.trim_start_matches('.'), ext)
            }
            _ => format!("{}.{ext}", file.id),
        };
        self.route
            .key
            .render(&super::KeyParts {
                user_id: &self.owner.user_id,
                username: &self.owner.username,
                folder: file.meta.folder.as_deref().unwrap_or(""),
                uuid: &file.id,
                ext,
                name: &name_part,
            })
            .map_err(|message| {
                UploadError::Invalid(FileError::Invalid {
                    field: "file",
                    message: format!("its name {message}"),
                })
            })
    }

    /// Resizes and converts an image on the worker pool, then stores the variant (and the
    /// original, when kept).
    async fn store_variant(
        &self,
        file: &NewFile<'_>,
        variant: &super::VariantSettings,
        original: Bytes,
    ) -> Result<Stored, UploadError> {
        let output = self
            .files
            .images
            .fit_upload(
                original.clone(),
                (variant.max_width, variant.max_height),
                variant.format,
                variant.quality,
            )
            .await?;
        let format = variant.format;
        let ext = match format {
            crate::images::params::Format::Jpeg => "jpg",
            other => other.as_str(),
        };
        let mut record = self.record(file);
        record.key = self.key_for(file, ext)?;
        record.content_type = format.content_type().to_string();
        record.width = Some(i64::from(output.width));
        record.height = Some(i64::from(output.height));
        let bytes = Bytes::from(output.bytes);
        record.size = bytes.len() as i64;
        record.sha256 = Some(hex(&Sha256::digest(&bytes)));
        let acl = &file.meta.acl;
        let (etag, claim) = self
            .write_whole(&record.key, bytes, format.content_type(), acl)
            .await?;
        record.etag = etag;
        let mut claims = vec![claim];
        if variant.keep_original {
            let original_key = original_key_for(&record.key, ext, file.sniffed.ext);
            match self
                .write_whole(&original_key, original, file.sniffed.mime, acl)
                .await
            {
                Ok((_, claim)) => {
                    claims.push(claim);
                    record.original_key = Some(original_key);
                }
                Err(e) => {
                    self.remove(&record.key, &claims).await;
                    return Err(e);
                }
            }
        }
        Ok(Stored { record, claims })
    }

    /// Streams the file into the store as it arrives, hashing it on the way.
    async fn stream_file(
        &self,
        file: &NewFile<'_>,
        head: BytesMut,
        complete: bool,
        source: &mut dyn ChunkSource,
    ) -> Result<Stored, UploadError> {
        let mut record = self.record(file);
        record.key = self.key_for(file, file.sniffed.ext)?;
        let claim = self.claim(&record.key).await?;
        let mut writer = match self
            .writer(&record.key, claim, file.sniffed.mime, &file.meta.acl)
            .await
        {
            Ok(writer) => writer,
            Err(e) => {
                self.settle(&record.key, claim, true).await;
                return Err(e);
            }
        };
        let mut hasher = Sha256::new();
        let mut size = head.len();
        let mut header = head.to_vec();
        hasher.update(&head);
        let streamed = async {
            writer.write(&head).await?;
            if !complete {
                while let Some(chunk) = source.next_chunk().await? {
                    size += chunk.len();
                    self.too_large(size)?;
                    if header.len() < HEADER_KEEP {
                        let take = chunk.len().min(HEADER_KEEP - header.len());
                        header.extend_from_slice(&chunk[..take]);
                    }
                    hasher.update(&chunk);
                    writer.write(&chunk).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            let cleaned = writer.abort().await;
            self.settle(&record.key, claim, cleaned).await;
            return Err(e);
        }
        match writer.finish().await {
            Ok(etag) => record.etag = etag,
            Err(e) => {
                self.settle_finish(&record.key, claim, &e).await;
                return Err(e);
            }
        }
        record.size = size as i64;
        record.sha256 = Some(hex(&hasher.finalize()));
        if file.sniffed.mime.starts_with("image/")
            && let Some((w, h)) = dimensions(&header)
        {
            record.width = Some(w);
            record.height = Some(h);
        }
        Ok(Stored {
            record,
            claims: vec![claim],
        })
    }

    /// After a failure: releases the claim on `key` when nothing of the object can be left
    /// (`cleaned`), or once the object is removed; otherwise the claim stays for the sweep.
    async fn settle(&self, key: &str, claim: i64, cleaned: bool) {
        let gone = cleaned
            || self
                .files
                .delete_object(self.route.store, key)
                .await
                .is_ok();
        if gone {
            let _ = self.db.release_claims(&[claim]).await;
        } else {
            tracing::warn!(
                key,
                "an upload's object may be left; the sweep will remove it"
            );
        }
    }

    /// [`Upload::settle`] after a failed `finish`: whether an object was written is unknown,
    /// except when the key turned out to be taken (then the object there is not ours).
    async fn settle_finish(&self, key: &str, claim: i64, error: &UploadError) {
        let taken = matches!(error, UploadError::Taken);
        self.settle(key, claim, taken).await;
    }

    /// Claims `key`; with client-chosen names, an object already at the key (one without a
    /// record) also makes it taken: S3 would overwrite it. (The filesystem refuses at the rename.)
    async fn claim(&self, key: &str) -> Result<i64, UploadError> {
        let claim = match self
            .db
            .claim_object_key(self.store_name(), key, self.files.now())
            .await
        {
            Ok(claim) => claim,
            Err(StoreError::Conflict(_)) => return Err(UploadError::Taken),
            Err(e) => return Err(e.into()),
        };
        if self.route.client_names
            && let Some(ObjectStore::S3(s3)) = self.files.objects.get(self.route.store)
        {
            let exists = s3.client.exists(key).await;
            if !matches!(exists, Ok(false)) {
                let _ = self.db.release_claims(&[claim]).await;
                return Err(match exists {
                    Ok(_) => UploadError::Taken,
                    Err(e) => store_failed(e),
                });
            }
        }
        Ok(claim)
    }

    fn store_name(&self) -> &str {
        self.files
            .objects
            .get(self.route.store)
            .map_or("", |s| s.name())
    }

    async fn writer(
        &self,
        key: &str,
        claim: i64,
        content_type: &str,
        acl: &str,
    ) -> Result<Writer<'a>, UploadError> {
        match self.files.objects.get(self.route.store) {
            Some(ObjectStore::S3(s3)) => Ok(Writer::S3 {
                client: &s3.client,
                db: self.db.clone(),
                claim,
                key: key.to_string(),
                content_type: content_type.to_string(),
                acl: acl.to_string(),
                part_size: usize::try_from(self.route.part_size).unwrap_or(usize::MAX),
                buffer: BytesMut::new(),
                upload_id: None,
                etags: Vec::new(),
            }),
            Some(ObjectStore::Fs(fs)) => {
                let (temp, file) = fs.create_temp().await.map_err(fs_failed)?;
                Ok(Writer::Fs {
                    store: fs,
                    key: key.to_string(),
                    temp,
                    file,
                })
            }
            None => Err(store_failed("the route's store is not configured")),
        }
    }

    /// Writes a whole, in-memory object under a new claim; its ETag and the claim.
    async fn write_whole(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        acl: &str,
    ) -> Result<(Option<String>, i64), UploadError> {
        let claim = self.claim(key).await?;
        let mut writer = match self.writer(key, claim, content_type, acl).await {
            Ok(writer) => writer,
            Err(e) => {
                self.settle(key, claim, true).await;
                return Err(e);
            }
        };
        if let Err(e) = writer.write(&bytes).await {
            let cleaned = writer.abort().await;
            self.settle(key, claim, cleaned).await;
            return Err(e);
        }
        match writer.finish().await {
            Ok(etag) => Ok((etag, claim)),
            Err(e) => {
                self.settle_finish(key, claim, &e).await;
                Err(e)
            }
        }
    }

    /// Removes the objects at `key` (and its claims) after a later step failed.
    async fn remove(&self, key: &str, claims: &[i64]) {
        match self.files.delete_object(self.route.store, key).await {
            Ok(()) => {
                let _ = self.db.release_claims(claims).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, key, "cannot remove an object after a failed upload; the sweep will");
            }
        }
    }

    /// Removes every object this upload wrote (the request failed).
    pub async fn abandon(self) {
        for stored in &self.stored {
            let keys =
                std::iter::once(&stored.record.key).chain(stored.record.original_key.as_ref());
            let mut removed = true;
            for key in keys {
                if let Err(e) = self.files.delete_object(self.route.store, key).await {
                    tracing::warn!(error = %e, key, "cannot remove an object after a failed upload; the sweep will");
                    removed = false;
                }
            }
            if removed {
                let _ = self.db.release_claims(&stored.claims).await;
            }
        }
    }

    /// Writes every record (one transaction) and the audit events; if the records cannot be
    /// written, the objects are removed and the error returned.
    pub async fn commit(
        self,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<Vec<FileRecord>, UploadError> {
        let records: Vec<FileRecord> = self.stored.iter().map(|s| s.record.clone()).collect();
        let claims: Vec<i64> = self
            .stored
            .iter()
            .flat_map(|s| s.claims.iter().copied())
            .collect();
        if let Err(e) = self.db.insert_files(&records, &claims).await {
            tracing::warn!(error = %e, "cannot record uploaded files; removing their objects");
            self.abandon().await;
            return Err(match e {
                StoreError::Conflict(_) => UploadError::Taken,
                other => other.into(),
            });
        }
        let now = self.files.now();
        for record in &records {
            let event = NewEvent {
                kind: "file.uploaded".into(),
                user_id: Some(record.owner_id.clone()),
                actor: None,
                ip: ip.clone(),
                user_agent: user_agent.clone(),
                detail: serde_json::json!({
                    "file_id": record.id,
                    "route": record.route,
                    "store": record.store,
                    "key": record.key,
                    "size": record.size,
                    "content_type": record.content_type,
                }),
            };
            if let Err(e) = self.db.record_event(&event, now).await {
                tracing::warn!(error = %e, "cannot record the file.uploaded event");
            }
        }
        Ok(records)
    }
}

/// `name` with its extension replaced by (or, without one, extended with) `ext`.
fn with_extension(name: &str, ext: &str) -> String {
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    };
    format!("{stem}.{ext}")
}

/// Where a kept original goes: the variant's key with the original's extension
/// (`a/b.webp` → `a/b.original.jpg`).
fn original_key_for(key: &str, variant_ext: &str, original_ext: &str) -> String {
    let stem = key.strip_suffix(&format!(".{variant_ext}")).unwrap_or(key);
    format!("{stem}.original.{original_ext}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_lose_their_paths_and_controls() {
        assert_eq!(
            clean_name("C:\\Users\\me\\photo.jpg").as_deref(),
            Some("photo.jpg")
        );
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("a\u{0}b\n.txt").as_deref(), Some("ab.txt"));
        assert_eq!(clean_name(".."), None);
        assert_eq!(clean_name("dir/"), None);
        assert_eq!(clean_name(&"é".repeat(200)).map(|n| n.len()), Some(254));
    }

    #[test]
    fn client_names_take_the_stored_type_s_extension() {
        assert_eq!(with_extension("report.exe", "pdf"), "report.pdf");
        assert_eq!(
            with_extension("photo.final.jpg", "webp"),
            "photo.final.webp"
        );
        assert_eq!(with_extension("README", "txt"), "README.txt");
        assert_eq!(with_extension(".bashrc", "txt"), ".bashrc.txt");
    }

    #[test]
    fn originals_sit_beside_their_variant() {
        assert_eq!(
            original_key_for("u/1/a.webp", "webp", "jpg"),
            "u/1/a.original.jpg"
        );
        assert_eq!(
            original_key_for("u/1/a", "webp", "png"),
            "u/1/a.original.png"
        );
    }
}
