//! Opens the serving database pool inside Pingora's runtime (pools are bound to the runtime that
//! creates them) and keeps trying until it succeeds, so a database that starts after postern is
//! picked up without a restart; `/readyz` says not ready until then.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::DatabaseSettings;
use crate::store::Store;

/// The database once connected; `None` before that.
pub type StoreHandle = Arc<ArcSwapOption<Store>>;

pub struct DatabaseConnector {
    settings: DatabaseSettings,
    handle: StoreHandle,
}

impl DatabaseConnector {
    pub fn new(settings: DatabaseSettings, handle: StoreHandle) -> Self {
        Self { settings, handle }
    }
}

#[async_trait]
impl BackgroundService for DatabaseConnector {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut delay = Duration::from_millis(200);
        loop {
            match Store::connect(&self.settings.url, self.settings.max_connections).await {
                Ok(store) => {
                    self.handle.store(Some(Arc::new(store)));
                    break;
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "database not reachable"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        let _ = shutdown.changed().await;
        if let Some(store) = self.handle.swap(None) {
            store.close().await;
        }
    }
}
