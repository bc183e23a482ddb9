//! Transformed images shared through a store (`images.shared_store`): a variant rendered by
//! one instance is written under the store's prefix, and any instance that misses it in memory
//! reads it from there before rendering, so N instances render each variant once. Objects are
//! named by an HMAC (under the first link key, which instances share) of the same key the
//! memory cache uses — the source's ETag included, so a changed source is a new name, and
//! nobody who can read the store's objects can tell which name belongs to which source. An
//! index in the database keeps their total under `shared_max_size`, the least recently used
//! removed first.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::Rendered;
use crate::auth::Clock;
use crate::config::SharedVariantSettings;
use crate::objects::{ObjectStore, ObjectStores};
use crate::services::StoreHandle;

/// The first line of a shared variant object; the second is its content type.
const MAGIC: &[u8] = b"postern-variant 1\n";
const CONTENT_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];
/// Variants removed per round while the store is over its cap.
const EVICT_BATCH: i64 = 64;

/// Variants written back at once; more renders meanwhile are not shared (they are still
/// answered).
const CONCURRENT_SAVES: usize = 4;

pub struct SharedVariants {
    settings: SharedVariantSettings,
    saves: tokio::sync::Semaphore,
    /// The key object names are an HMAC under.
    naming_key: Vec<u8>,
    objects: Arc<ObjectStores>,
    db: StoreHandle,
    clock: Arc<dyn Clock>,
}

/// An object's bytes: the header, then the image.
fn encode(rendered: &Rendered) -> Bytes {
    let mut out = Vec::with_capacity(MAGIC.len() + 16 + rendered.bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(rendered.content_type.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&rendered.bytes);
    Bytes::from(out)
}

/// The image and its content type, if `object` is a shared variant.
pub fn decode(object: &Bytes) -> Option<(&'static str, Bytes)> {
    let rest = object.strip_prefix(MAGIC)?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let content_type = CONTENT_TYPES
        .into_iter()
        .find(|t| t.as_bytes() == &rest[..end])?;
    let start = MAGIC.len() + end + 1;
    Some((content_type, object.slice(start..)))
}

impl SharedVariants {
    pub fn new(
        settings: SharedVariantSettings,
        naming_key: Vec<u8>,
        objects: Arc<ObjectStores>,
        db: StoreHandle,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            saves: tokio::sync::Semaphore::new(CONCURRENT_SAVES),
            naming_key,
            objects,
            db,
            clock,
        }
    }

    pub fn store(&self) -> usize {
        self.settings.store
    }

    fn store_name(&self) -> &str {
        self.objects
            .get(self.settings.store)
            .map_or("", ObjectStore::name)
    }

    /// Where the variant with this cache key of this source lives. The source's own bytes
    /// count, not only its ETag (a filesystem ETag is a time and a size, which a replaced file
    /// can keep).
    pub fn object_key(&self, result_key: &str, source: &[u8]) -> String {
        use hmac::Mac;
        let name = match hmac::Hmac::<Sha256>::new_from_slice(&self.naming_key) {
            Ok(mut mac) => {
                mac.update(result_key.as_bytes());
                mac.update(b"\n");
                mac.update(&Sha256::digest(source));
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            }
            // Any key length is accepted; this arm only keeps the code total.
            Err(_) => URL_SAFE_NO_PAD.encode(Sha256::digest(result_key.as_bytes())),
        };
        format!("{}{name}", self.settings.prefix)
    }

    /// Notes that a shared variant was read (it is kept longer).
    pub async fn used(&self, object_key: &str) {
        if let Some(db) = self.db.load_full()
            && let Err(e) = db
                .touch_variant(self.store_name(), object_key, self.clock.now())
                .await
        {
            tracing::debug!(error = %e, "could not note a shared variant's use");
        }
    }

    /// Writes a freshly rendered variant (under `key`) for the other instances, then keeps the
    /// store under its cap. It is indexed before it is written, so that nothing lands in the
    /// store that eviction does not know of. Failures only cost a later render: they are
    /// logged, never answered; when enough writes are under way, this one is skipped.
    pub async fn save(&self, key: &str, rendered: &Rendered) {
        let Ok(_permit) = self.saves.try_acquire() else {
            return;
        };
        let Some(db) = self.db.load_full() else {
            return;
        };
        let body = encode(rendered);
        let size = body.len() as i64;
        if let Err(e) = db
            .record_variant(self.store_name(), key, size, self.clock.now())
            .await
        {
            tracing::warn!(error = %e, "could not index a shared variant");
            return;
        }
        let key = key.to_string();
        let written = match self.objects.get(self.settings.store) {
            Some(ObjectStore::S3(s3)) => s3
                .client
                .put(&key, body, "application/octet-stream", "private")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some(ObjectStore::Fs(fs)) => write_file(fs, &key, &body).await,
            None => Err("no such store".to_string()),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not share a transformed image");
            let _ = db.forget_shared_variant(self.store_name(), &key).await;
            return;
        }
        self.evict(&db).await;
    }

    /// Removes the least recently used variants while the store is over its cap.
    async fn evict(&self, db: &crate::store::Store) {
        let store = self.store_name().to_string();
        let cap = self.settings.max_size as i64;
        loop {
            let over = match db.variants_size(&store).await {
                Ok(size) => size - cap,
                Err(e) => {
                    tracing::warn!(error = %e, "could not size the shared variants");
                    return;
                }
            };
            if over <= 0 {
                return;
            }
            let Ok(oldest) = db.oldest_variants(&store, EVICT_BATCH).await else {
                return;
            };
            let mut freed = 0;
            for (key, size) in oldest {
                if freed >= over {
                    break;
                }
                let removed = match self.objects.get(self.settings.store) {
                    Some(ObjectStore::S3(s3)) => s3.client.delete(&key).await.is_ok(),
                    Some(ObjectStore::Fs(fs)) => fs.delete(&key).await.is_ok(),
                    None => false,
                };
                if !removed {
                    tracing::warn!(%key, "could not remove a shared variant; trying the next");
                    continue;
                }
                if db.forget_shared_variant(&store, &key).await.is_err() {
                    return;
                }
                freed += size;
            }
            if freed == 0 {
                return;
            }
        }
    }
}

/// Writes `body` to `key` in a filesystem store: a temporary file, synced, renamed into place
/// (another instance that got there first wins).
async fn write_file(fs: &crate::objects::FsStore, key: &str, body: &[u8]) -> Result<(), String> {
    let (temp, mut file) = fs.create_temp().await.map_err(|e| e.to_string())?;
    let written = async {
        file.write_all(body).await?;
        file.sync_all().await
    }
    .await;
    drop(file);
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e.to_string());
    }
    match fs.commit_temp(temp.clone(), key).await {
        Ok(_) => Ok(()),
        Err(crate::objects::fs::FsError::Exists) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Ok(())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_carry_their_type_and_refuse_anything_else() {
        let rendered = Rendered {
            bytes: Bytes::from_static(b"\x89PNG..."),
            content_type: "image/png",
            etag: "\"i-x\"".into(),
        };
        let object = encode(&rendered);
        let (content_type, bytes) = decode(&object).unwrap();
        assert_eq!(content_type, "image/png");
        assert_eq!(&bytes[..], b"\x89PNG...");
        assert!(decode(&Bytes::from_static(b"\x89PNG...")).is_none());
        assert!(
            decode(&Bytes::from_static(
                b"postern-variant 1\ntext/html\n<script>"
            ))
            .is_none()
        );
    }
}
