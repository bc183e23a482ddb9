//! Keeps S3 credentials from the standard chain fresh: fetched at start and again ahead of their
//! expiry, so that signing never waits on a credential source.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::objects::S3Store;

/// Refresh this long before credentials expire.
const AHEAD_OF_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry (environment, profile keys) are re-read this often.
const REREAD_EVERY: Duration = Duration::from_secs(15 * 60);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

pub struct CredentialRefresher {
    stores: Vec<Arc<S3Store>>,
}

impl CredentialRefresher {
    /// `stores`: those that take their credentials from the chain.
    pub fn new(stores: Vec<Arc<S3Store>>) -> Self {
        Self { stores }
    }
}

fn next_refresh(expiry: Option<SystemTime>) -> Duration {
    match expiry.and_then(|e| e.duration_since(SystemTime::now()).ok()) {
        Some(left) => left
            .saturating_sub(AHEAD_OF_EXPIRY)
            .clamp(Duration::from_secs(5), REREAD_EVERY),
        None if expiry.is_some() => Duration::from_secs(5),
        None => REREAD_EVERY,
    }
}

async fn keep_fresh(store: Arc<S3Store>, mut shutdown: ShutdownWatch) {
    let chain = store.credential_chain().await;
    loop {
        let wait = match store.refresh_credentials(&chain).await {
            Ok(expiry) => {
                tracing::debug!(store = store.name(), "S3 credentials refreshed");
                next_refresh(expiry)
            }
            Err(e) => {
                tracing::warn!(store = store.name(), error = %e, "cannot get S3 credentials; retrying");
                RETRY_AFTER_FAILURE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[async_trait]
impl BackgroundService for CredentialRefresher {
    async fn start(&self, shutdown: ShutdownWatch) {
        let tasks: Vec<_> = self
            .stores
            .iter()
            .map(|s| tokio::spawn(keep_fresh(s.clone(), shutdown.clone())))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_ahead_of_expiry() {
        let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(next_refresh(None), REREAD_EVERY);
        assert_eq!(next_refresh(Some(in_an_hour)), REREAD_EVERY);
        let soon = SystemTime::now() + Duration::from_secs(6 * 60);
        assert!(next_refresh(Some(soon)) <= Duration::from_secs(60));
        let past = SystemTime::now() - Duration::from_secs(1);
        assert_eq!(next_refresh(Some(past)), Duration::from_secs(5));
    }
}
