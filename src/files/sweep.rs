//! Cleans up after uploads that never finished (a crash, a store that failed while cleaning up):
//! stale claims get their multipart upload aborted and, when no record names the key, their
//! object removed; stale temporary files in filesystem stores are deleted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::Files;
use crate::objects::ObjectStore;

pub struct UploadSweeper {
    files: Arc<Files>,
    /// A claim or temporary file older than this belongs to no running upload.
    stale_after: Duration,
    every: Duration,
}

impl UploadSweeper {
    pub fn new(files: Arc<Files>, stale_after: Duration, every: Duration) -> Self {
        Self {
            files,
            stale_after,
            every,
        }
    }

    /// One pass; how many claims it cleared.
    pub async fn sweep(&self) -> usize {
        let mut cleared = 0;
        let Ok(db) = self.files.db() else {
            return 0;
        };
        let before = self.files.now() - self.stale_after.as_secs() as i64;
        let claims = match db.stale_claims(before).await {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stale upload claims");
                return 0;
            }
        };
        for (claim, store_name, key, upload_id) in claims {
            let Some(index) = self.files.objects.index_of(&store_name) else {
                let _ = db.release_claims(&[claim]).await;
                continue;
            };
            if let Some(ObjectStore::S3(s3)) = self.files.objects.get(index) {
                // A crash between starting a multipart upload and noting its id leaves the id
                // unknown here: ask the bucket for the key's uploads.
                let upload_ids = match &upload_id {
                    Some(id) => vec![id.clone()],
                    None => s3.client.multipart_uploads_of(&key).await.unwrap_or_else(|e| {
                        tracing::debug!(error = %e, key, "cannot list a key's multipart uploads");
                        Vec::new()
                    }),
                };
                for id in upload_ids {
                    if let Err(e) = s3.client.abort_multipart(&key, &id).await {
                        // Gone already (completed or aborted) is the usual reason; the delete
                        // below settles the object either way.
                        tracing::debug!(error = %e, key, "aborting a stale multipart upload");
                    }
                }
            }
            match db.key_recorded(&store_name, &key).await {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(e) = self.files.delete_object(index, &key).await {
                        tracing::warn!(error = %e, key, "cannot remove an unrecorded object; will retry");
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check a stale claim");
                    continue;
                }
            }
            if db.release_claims(&[claim]).await.is_ok() {
                cleared += 1;
            }
        }
        for index in 0.. {
            let Some(store) = self.files.objects.get(index) else {
                break;
            };
            if let ObjectStore::Fs(fs) = store {
                match fs.sweep_temp(self.stale_after).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(removed = n, store = fs.name, "stale upload files removed")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, store = fs.name, "cannot sweep upload files")
                    }
                }
            }
        }
        if cleared > 0 {
            tracing::info!(cleared, "stale uploads cleaned up");
        }
        cleared
    }
}

#[async_trait]
impl BackgroundService for UploadSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.sweep().await; }
                _ = shutdown.changed() => return,
            }
        }
    }
}
